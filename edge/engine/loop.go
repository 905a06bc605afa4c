package engine

import (
	"log/slog"
	"sync"
	"time"
)

// Loop is a background loop of the api: one pass every period until Stop.
// The api has several (the memory refresh, the catalog, the answer counts,
// the merchant tokens) and each must start once, stop once, wait for the
// pass in progress on Stop, and outlive a pass that panics; Loop is that
// machinery, written once. The zero Loop is ready to use.
type Loop struct {
	startOnce, stopOnce sync.Once
	stop, done          chan struct{}
}

// Start runs pass in a goroutine of its own every period, the first time at
// once if now is set (else after one period). Later calls do nothing, and
// so does a call after Stop. A panic in a pass is logged and counted as
// where (RecoverGoroutine), and the next pass runs on time.
func (l *Loop) Start(period time.Duration, now bool, log *slog.Logger, where string, pass func()) {
	l.startOnce.Do(func() {
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(l.done)
			t := time.NewTicker(period)
			defer t.Stop()
			for first := now; ; first = false {
				if !first {
					select {
					case <-l.stop:
						return
					case <-t.C:
					}
				}
				func() {
					defer RecoverGoroutine(log, where)
					pass()
				}()
			}
		}()
	})
}

// Stop stops the loop and waits for the pass in progress. A loop never
// started never will be.
func (l *Loop) Stop() {
	l.startOnce.Do(func() {})
	l.stopOnce.Do(func() {
		if l.stop != nil {
			close(l.stop)
			<-l.done
		}
	})
}
