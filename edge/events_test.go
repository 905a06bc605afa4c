package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestEveryClaimIsOneEvent: every 200 yields exactly one record on the
// topic, keyed by the user, with the documented fields; no other open does.
func TestEveryClaimIsOneEvent(t *testing.T) {
	topic := testenv.Topic(t, 3)
	h := newHarness(t, harnessOpt{topic: topic})
	id := h.live(`{"20":40,"5":60}`)

	var (
		mu  sync.Mutex
		oks = map[string]float64{}
		wg  sync.WaitGroup
	)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				u := fmt.Sprintf("u-%d-%d", g, i)
				for try := 0; try < 2; try++ { // the repeat is a 409, no event
					status, m := h.open(id, u)
					if status == 200 {
						mu.Lock()
						oks[u] = m["amount"].(float64)
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(oks) != 100 {
		t.Fatalf("%d opens got 200, want 100 (stock)", len(oks))
	}

	cl := testenv.Kafka(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n := 0; n < len(oks) && ctx.Err() == nil; {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			n++
			var e map[string]any
			if err := json.Unmarshal(r.Value, &e); err != nil {
				t.Errorf("record %q: %v", r.Value, err)
				return
			}
			u, _ := e["user_id"].(string)
			got[u]++
			if string(r.Key) != u {
				t.Errorf("key %q, user %q", r.Key, u)
			}
			ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(e["claimed_at"]))
			if e["v"] != float64(1) || e["campaign_id"] != float64(id) || e["amount"] != oks[u] ||
				err != nil || time.Since(ts) > time.Minute || len(e) != 5 {
				t.Errorf("event %s: want v 1, campaign %d, amount %v, claimed_at now, 5 fields", r.Value, id, oks[u])
			}
		})
	}
	// Anything more would arrive with the records above; give it a moment.
	extra, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	cl.PollFetches(extra).EachRecord(func(r *kgo.Record) { t.Errorf("extra record %s", r.Value) })
	for u := range oks {
		if got[u] != 1 {
			t.Errorf("user %s: %d records, want 1", u, got[u])
		}
	}
	if len(got) != len(oks) {
		t.Errorf("records for %d users, want %d", len(got), len(oks))
	}
}
