package edge

import (
	"fmt"
	"testing"
	"time"
)

// TestWindowBefore1970NeverNotFound: a campaign whose window lies just
// before 1970 (1969-12-31T23:59:59.999Z to 1970-01-01T00:00:00.001Z: unix
// milliseconds -1 and 1) is created with 201, and every open of it is the
// closed window's 400 ENDED, never 404: on the replica that created it,
// and on another replica whose catalog has not read it yet and has just
// spent its once-a-second lookup of unknown ids on another id (the keys
// of a campaign created already ended used to expire at once, so Redis
// did not know it either).
func TestWindowBefore1970NeverNotFound(t *testing.T) {
	a := newHarness(t, harnessOpt{})
	b := newHarness(t, harnessOpt{})
	start := time.Date(1969, 12, 31, 23, 59, 59, 999e6, time.UTC)
	end := time.Date(1970, 1, 1, 0, 0, 0, 1e6, time.UTC)
	for i := range 3 {
		// b looks up an id nobody made: its lookup of unknown ids is spent
		// for a second.
		if status, m := b.open(1<<62+int64(i), "nobody"); status != 404 {
			t.Fatalf("a made-up id: %d %v", status, m)
		}
		id := a.create(start, end, `{"5":3,"7":2}`)
		for _, h := range []*harness{a, b, a, b} {
			status, m := h.open(id, fmt.Sprintf("user-%d", i))
			if status != 400 || m["status"] != "ENDED" {
				t.Fatalf("campaign %d (%s to %s), open %d: %d %v; want 400 ENDED", id, start.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano), i, status, m)
			}
		}
		status, m := a.do("GET", fmt.Sprintf("/campaign/%d", id), testToken, "")
		if status != 200 || m["state"] != "ended" {
			t.Fatalf("GET campaign %d: %d %v", id, status, m)
		}
	}
}
