package lua

import (
	"strings"
	"testing"
)

// TestPreludeAfterTheShebang: Redis reads a script's flags only on its
// first line, so a shebang moved below the prelude would be a syntax error;
// claim.lua, the hot path, is sent as it is written.
func TestPreludeAfterTheShebang(t *testing.T) {
	for _, s := range []*script{bucketTakeScript, bucketCreditScript, bucketLockScript, bucketStateScript, bucketFinalScript, bucketBurnScript, endScript} {
		if !strings.HasPrefix(s.src, "#!lua\n"+preludeSrc) {
			t.Errorf("script %s: want its shebang, then the prelude", s.sha)
		}
	}
	if readdScript.src != preludeSrc+readdSrc {
		t.Error("readd.lua has no shebang: want the prelude first")
	}
	if claimScript.src != claimSrc {
		t.Error("claim.lua sent with more than its own text")
	}
}
