package engine

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoop(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// now: the first pass runs at once, not after the period.
	var l Loop
	first := make(chan struct{}, 1)
	l.Start(time.Hour, true, quiet, "test", func() { first <- struct{}{} })
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the first pass did not run at once")
	}
	l.Stop()
	l.Stop() // a second Stop does nothing

	// A pass that panics is recovered; the next passes run.
	var l2 Loop
	var passes atomic.Int32
	l2.Start(time.Millisecond, false, quiet, "test", func() {
		if passes.Add(1) == 1 {
			deliberatePanics.Add(1)
			panic("boom")
		}
	})
	for deadline := time.Now().Add(10 * time.Second); passes.Load() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d passes after a panic, want 3", passes.Load())
		}
	}
	l2.Stop()
	n := passes.Load()
	time.Sleep(20 * time.Millisecond)
	if passes.Load() != n {
		t.Fatal("a pass ran after Stop returned")
	}

	// Stop before Start: Start does nothing after.
	var l3 Loop
	l3.Stop()
	ran := make(chan struct{}, 1)
	l3.Start(time.Millisecond, true, quiet, "test", func() { ran <- struct{}{} })
	select {
	case <-ran:
		t.Fatal("a stopped loop started")
	case <-time.After(20 * time.Millisecond):
	}
}
