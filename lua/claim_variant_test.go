package lua

import (
	"strings"
	"testing"
)

// TestBucketClaimIsClaimWithTheSwitchOn: the bucket copy of claim.lua
// differs from it in the BUCKET line only, and a source without that line
// is refused at start rather than run as the wrong script.
func TestBucketClaimIsClaimWithTheSwitchOn(t *testing.T) {
	b := bucketClaim(claimSrc)
	if strings.Count(b, "\nlocal BUCKET = true\n") != 1 || strings.Replace(b, "BUCKET = true", "BUCKET = false", 1) != claimSrc {
		t.Error("the bucket copy is not claim.lua with BUCKET set")
	}
	defer func() {
		if recover() == nil {
			t.Error("a source without the BUCKET line was accepted")
		}
	}()
	bucketClaim("#!lua\nreturn 1\n")
}
