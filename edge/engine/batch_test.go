package engine

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
)

// openConcurrently has users open campaign id from 64 goroutines (each
// user twice) and returns every answer per user.
func openConcurrently(t *testing.T, h *harness, id int64, users int) map[string][]map[string]any {
	t.Helper()
	type answer struct {
		user   string
		status int
		body   map[string]any
	}
	work := make(chan string)
	answers := make(chan answer, 2*users)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				status, body := h.open(id, u)
				answers <- answer{u, status, body}
			}
		}()
	}
	for i := range 2 * users {
		work <- fmt.Sprintf("batch-user-%d", i%users)
	}
	close(work)
	wg.Wait()
	close(answers)
	got := map[string][]map[string]any{}
	for a := range answers {
		a.body["code"] = float64(a.status)
		got[a.user] = append(got[a.user], a.body)
	}
	return got
}

// TestBatchedOpensAreExact: with group commit, concurrent opens share
// claim calls, and every answer is what a call of its own would give: the
// stock is handed out exactly, nobody twice, a user's repeat carries their
// amount.
func TestBatchedOpensAreExact(t *testing.T) {
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			h := newHarness(t, harnessOpt{set: func(c *Config) { c.ClaimBatch = batch }})
			id := h.live(`{"1":300,"1000":200}`)
			calls, opens := claimCalls.Get(), claimOpens.Get()
			got := openConcurrently(t, h, id, 800)
			won := map[float64]int{}
			for user, answers := range got {
				var amount float64
				oks := 0
				for _, a := range answers {
					switch a["code"].(float64) {
					case 200:
						oks++
						amount = a["amount"].(float64)
					case 409, 410:
					default:
						t.Fatalf("%s: %v", user, a)
					}
				}
				if oks > 1 {
					t.Fatalf("%s claimed twice: %v", user, answers)
				}
				for _, a := range answers {
					if a["code"] == 409.0 && (oks == 0 || a["amount"] != amount) {
						t.Fatalf("%s: 409 without their claim's amount: %v", user, answers)
					}
				}
				if oks == 1 {
					won[amount]++
				}
			}
			if won[1] != 300 || won[1000] != 200 {
				t.Fatalf("claims per amount %v, want the whole stock {1:300 1000:200}", won)
			}
			if n := h.claims(id); n != 500 {
				t.Fatalf("redis holds %d claims, want 500", n)
			}
			callsMade, opensSent := claimCalls.Get()-calls, claimOpens.Get()-opens
			t.Logf("%d opens reached Redis in %d calls", opensSent, callsMade)
			switch {
			case batch && callsMade >= opensSent:
				t.Errorf("batching on: %d calls for %d opens, want fewer calls", callsMade, opensSent)
			case !batch && callsMade != opensSent:
				t.Errorf("batching off: %d calls for %d opens, want one each", callsMade, opensSent)
			}
		})
	}
}

// TestBatchLostReplyIs503ForEach: when the reply to a batch is lost, every
// open of it gets 503 (the outcome is unknown) and gives back its ring
// slot. A retry finds the claim if the call ran (409 with its amount) and
// claims once if it never reached Redis (200): never a second packet.
func TestBatchLostReplyIs503ForEach(t *testing.T) {
	proxy := testenv.NewProxy(t, testenv.RedisAddr())
	rdb := testenv.RedisAt(t, proxy.Addr())
	h := newHarness(t, harnessOpt{redis: rdb})
	id := h.live(`{"5":100}`)
	if status, _ := h.open(id, "warm-up"); status != 200 { // the campaign's state and queue exist
		t.Fatalf("warm-up open: %d", status)
	}
	proxy.LoseReplies()
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _ = h.open(id, fmt.Sprintf("lost-%d", i))
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 503 {
			t.Fatalf("open %d with its reply lost: %d, want 503", i, s)
		}
	}
	if h.ring.Len() != 1 { // the warm-up's event: nothing drains this ring
		t.Fatalf("ring holds %d, want 1: slots of unknown outcomes leaked", h.ring.Len())
	}
	proxy.Restore()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		status, m := h.open(id, "after-restore")
		return status == 200, fmt.Sprintf("open after restore: %d %v", status, m)
	})
	ran := 0
	for i := range statuses {
		status, m := h.open(id, fmt.Sprintf("lost-%d", i))
		switch {
		case status == 409 && m["amount"] == 5.0:
			ran++
		case status == 200:
		default:
			t.Fatalf("retry of open %d: %d %v", i, status, m)
		}
		if status, m := h.open(id, fmt.Sprintf("lost-%d", i)); status != 409 {
			t.Fatalf("second retry of open %d: %d %v, want 409", i, status, m)
		}
	}
	if ran == 0 {
		t.Fatal("no lost reply was of a call that ran: the test did not lose replies")
	}
	if n := h.claims(id); n != int64(len(statuses))+2 {
		t.Fatalf("redis holds %d claims, want %d: one per user", n, len(statuses)+2)
	}
	t.Logf("%d of %d calls ran with their replies lost", ran, len(statuses))
}

// TestDeadlinesShared: calls that start within one span share a context;
// each call's deadline is at least claimTimeout and at most claimTimeout +
// deadlineSpan after it starts; a later span gets a new context.
func TestDeadlinesShared(t *testing.T) {
	var d deadlines
	start := time.Now()
	a, b := d.get(), d.get()
	if a != b {
		t.Error("two calls in one span got two contexts")
	}
	dl, ok := a.Deadline()
	if !ok || dl.Before(start.Add(claimTimeout)) || dl.After(time.Now().Add(claimTimeout+deadlineSpan)) {
		t.Errorf("deadline %v after the call's start, want within [%v, %v]", dl.Sub(start), claimTimeout, claimTimeout+deadlineSpan)
	}
	time.Sleep(deadlineSpan + 10*time.Millisecond)
	late := time.Now()
	c := d.get()
	if c == a {
		t.Fatal("a call after the span got the old context")
	}
	if dl, _ := c.Deadline(); dl.Before(late.Add(claimTimeout)) {
		t.Errorf("a later call's deadline is %v after its start, want at least %v", dl.Sub(late), claimTimeout)
	}
}
