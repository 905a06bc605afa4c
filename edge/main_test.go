package edge

import (
	"fmt"
	"os"
	"testing"

	"github.com/redpacket/rain/edge/engine"
)

// TestMain fails the run on a panic recovered in a background goroutine
// (the engine's loops, the token refresh, the live poller): recovered, it
// would otherwise be only a log line while a test passes.
func TestMain(m *testing.M) {
	code := m.Run()
	if n := engine.BackgroundPanics(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d panics recovered in background goroutines: see the log\n", n)
		code = 1
	}
	os.Exit(code)
}
