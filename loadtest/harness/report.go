package harness

import (
	"fmt"
	"sync"
	"time"
)

// NoteEvent adds to a run's events what happened, timed from the load's
// start ("setup" before it), and returns the entry for the run's log. mu
// guards events: the fault, the load and the merchant step note events
// from their own goroutines.
func NoteEvent(mu *sync.Mutex, events *[]string, start time.Time, format string, args ...any) string {
	t := "setup"
	if !start.IsZero() {
		t = fmt.Sprintf("t=%.1fs", time.Since(start).Seconds())
	}
	msg := t + " " + fmt.Sprintf(format, args...)
	mu.Lock()
	*events = append(*events, msg)
	mu.Unlock()
	return msg
}
