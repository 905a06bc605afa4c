package engine

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
)

// deliberatePanics counts the panics this package's tests cause on purpose;
// TestMain fails the run on any other that RecoverGoroutine recovered.
var deliberatePanics atomic.Uint64

func TestMain(m *testing.M) {
	code := m.Run()
	if n, want := BackgroundPanics(), deliberatePanics.Load(); n != want {
		fmt.Fprintf(os.Stderr, "FAIL: %d panics recovered in background goroutines, %d of them caused by the tests: see the log\n", n, want)
		code = 1
	}
	os.Exit(code)
}

// TestRecoverGoroutine: a panic in a background goroutine is counted and
// the goroutine returns.
func TestRecoverGoroutine(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	before := panicsBackground.Get()
	done := make(chan struct{})
	go func() {
		defer RecoverGoroutine(log, "test")
		defer close(done)
		deliberatePanics.Add(1)
		panic("a bug")
	}()
	<-done
	for panicsBackground.Get() != before+1 { // counted after the deferred close
		runtime.Gosched()
	}
}
