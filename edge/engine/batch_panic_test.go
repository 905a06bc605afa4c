package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/lua"
)

// TestClaimCallPanicAnswersTheBatch: a claim call that panics (here a
// batcher with no Redis client; in make torture, seed 110, the client's
// cluster retry path under a slot migration) answers every open of its
// batch with an error (503) and leaves the campaign's queue free: later
// opens are called again. Before, the panic unwound the leading open
// alone: the other opens of its batch, and every later open of the
// campaign, waited for ever (400 opens unanswered in seed 110).
func TestClaimCallPanicAnswersTheBatch(t *testing.T) {
	b := &batcher{max: 64, log: slog.New(slog.NewTextHandler(io.Discard, nil))} // no Redis: every call panics
	q := &claimQueue{}
	k := lua.NewKeyspace("rptest").Of(1)
	errs := make(chan error, 40)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			defer func() {
				if v := recover(); v != nil {
					errs <- fmt.Errorf("the panic reached the open: %v", v)
				}
			}()
			_, err := b.claim(q, k, fmt.Sprint("u", i))
			errs <- err
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d of 40 opens answered in 10 s after a claim call panicked; the rest wait for ever", len(errs))
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, errCallPanicked) {
			t.Errorf("an open of a batch whose call panicked: %v, want errCallPanicked", err)
		}
	}
	q.mu.Lock()
	busy, pending := q.busy, len(q.pending)
	q.mu.Unlock()
	if busy || pending > 0 {
		t.Errorf("the queue after: busy %v, %d pending", busy, pending)
	}
}
