package engine

import (
	"io"
	"log/slog"
	"runtime"
	"testing"
)

// TestRecoverGoroutine: a panic in a background goroutine is counted and
// the goroutine returns.
func TestRecoverGoroutine(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	before := panicsBackground.Get()
	done := make(chan struct{})
	go func() {
		defer RecoverGoroutine(log, "test")
		defer close(done)
		panic("a bug")
	}()
	<-done
	for panicsBackground.Get() != before+1 { // counted after the deferred close
		runtime.Gosched()
	}
}
