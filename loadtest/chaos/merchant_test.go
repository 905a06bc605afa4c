package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/loadtest/harness"
)

// fakeMerchant answers the merchant routes as the api would under a fault:
// the first request of each route gets 503, the second loses its answer
// (the connection is closed after the action took effect), then 200; a
// restock with a key it has seen is answered as a replay.
type fakeMerchant struct {
	mu    sync.Mutex
	seen  map[string]int // requests per path
	keys  map[string]bool
	added int // packets added
	auth  []string
}

func (f *fakeMerchant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.seen[r.URL.Path]++
	switch f.seen[r.URL.Path] {
	case 1:
		w.WriteHeader(503)
		fmt.Fprint(w, `{"status":"BUSY","error":"database unavailable; nothing was changed"}`)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/stock") {
		key := r.Header.Get("Idempotency-Key")
		if f.keys[key] {
			w.Header().Set("Idempotent-Replayed", "true")
		} else {
			f.keys[key] = true
			f.added += 7
		}
		if f.seen[r.URL.Path] == 2 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		fmt.Fprintf(w, `{"campaign_id":3,"amount":5,"count":7,"total":%d,"applied":true}`, 3+f.added)
		return
	}
	if f.seen[r.URL.Path] == 2 {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	fmt.Fprint(w, `{"id":4}`)
}

func newTestRun(t *testing.T, h http.Handler) *run {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &run{Runner: &Runner{APIAddr: srv.Listener.Addr().String(), Token: "tok", Logf: t.Logf,
		Profile: Profile{Duration: 3 * time.Second, Tail: 5 * time.Second, FaultAt: time.Second}},
		sc: &Scenario{Name: "test"}, res: &ScenarioResult{}, start: time.Now(), faulted: make(chan struct{})}
}

func TestMerchantStep(t *testing.T) {
	fake := &fakeMerchant{seen: map[string]int{}, keys: map[string]bool{}}
	r := newTestRun(t, fake)
	m := &merchantPlan{refill: 3, ended: 4, amount: 5, count: 7, base: 3, key: "k-1", soldOut: make(chan struct{})}
	m.observe(&harness.Record{Campaign: 3, Status: 200})
	m.observe(&harness.Record{Campaign: 4, Status: 410})
	select {
	case <-m.soldOut:
		t.Fatal("sold out on a 200, or on another campaign's 410")
	default:
	}
	m.observe(&harness.Record{Campaign: 3, Status: 410})
	m.observe(&harness.Record{Campaign: 3, Status: 410}) // twice: closed once
	r.inEffect()
	r.inEffect()
	acts := r.merchant(context.Background(), m, r.faulted)
	if len(acts) != 2 {
		t.Fatalf("%d actions", len(acts))
	}
	restock, end := acts[0], acts[1]
	if got := restock.Answers(); got != "503 BUSY none 200r 200r" {
		t.Errorf("restock attempts %q, want 503, none, then 200 replayed, and the replay on purpose", got)
	}
	if at := restock.Ack(); at == nil || at.Total != 10 || restock.Attempts[3].Total != 10 || !restock.Attempts[3].Replay {
		t.Errorf("restock: %+v", restock.Attempts)
	}
	if fake.added != 7 {
		t.Errorf("the fake added %d packets: the key changed between attempts", fake.added)
	}
	if got := end.Answers(); got != "503 BUSY none 200" || end.Ack() == nil {
		t.Errorf("end attempts %q", got)
	}
	for _, a := range fake.auth {
		if a != "Bearer tok" {
			t.Errorf("Authorization %q", a)
		}
	}
	if at := restock.Attempts[0].AtMs; at < restockAfterFault.Milliseconds() {
		t.Errorf("restock sent at %dms, before the fault was in effect", at)
	}
	if !strings.Contains(restock.String(), "amount 5: 3 + 7, key k-1") {
		t.Errorf("String: %s", restock)
	}
}

// An answer other than 503 ends an action's attempts; no answer until the
// deadline gives up.
func TestMerchantActStops(t *testing.T) {
	r := newTestRun(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(409)
		fmt.Fprint(w, `{"status":"ENDED","error":"campaign 4 has ended; stock can be added only before its end"}`)
	}))
	a := &harness.Action{Kind: harness.ActionRestock, Campaign: 4, Amount: 5, Count: 1, Key: "k"}
	r.act(context.Background(), a, false, time.Now().Add(time.Minute))
	if got := a.Answers(); got != "409 ENDED" || a.Ack() != nil {
		t.Errorf("attempts %q", got)
	}

	r.APIAddr = "127.0.0.1:1" // nothing listens: refused
	a = &harness.Action{Kind: harness.ActionEnd, Campaign: 4}
	r.act(context.Background(), a, false, time.Now().Add(time.Second))
	if len(a.Attempts) < 2 || a.Attempts[0].Err != "refused" || a.Ack() != nil {
		t.Errorf("attempts %+v", a.Attempts)
	}
	if !strings.Contains(strings.Join(r.res.Events, "\n"), "given up") {
		t.Errorf("events %q", r.res.Events)
	}
}
