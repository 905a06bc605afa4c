package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI answers opens as the api would, and misbehaves on purpose on the
// first open of some users: every 5th user's claim is made but the
// connection is closed before the answer (the driver must retry and get
// 409), every 7th gets 503 BUSY with nothing claimed.
type fakeAPI struct {
	mu     sync.Mutex
	claims map[int64]map[string]int64
	seen   map[string]int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(r.URL.Path, "/") // "", "campaign", id, "open"
	id, _ := strconv.ParseInt(parts[2], 10, 64)
	var body struct {
		UserID string `json:"user_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	user := body.UserID
	n, _ := strconv.Atoi(user[strings.LastIndexByte(user, '-')+1:])
	f.mu.Lock()
	first := f.seen[user] == 0
	f.seen[user]++
	amount, claimed := f.claims[id][user]
	if first && n%7 == 3 {
		f.mu.Unlock()
		w.WriteHeader(503)
		fmt.Fprint(w, `{"status":"BUSY","error":"claim pipeline is full"}`)
		return
	}
	if !claimed {
		amount = int64(5 + 15*(n%2))
		f.claims[id][user] = amount
	}
	f.mu.Unlock()
	switch {
	case first && n%5 == 0:
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	case claimed:
		w.WriteHeader(409)
		fmt.Fprintf(w, `{"status":"ALREADY_OPENED","amount":%d}`, amount)
	default:
		fmt.Fprintf(w, `{"status":"OK","amount":%d}`, amount)
	}
}

func TestDriverAgainstFakeAPI(t *testing.T) {
	fake := &fakeAPI{claims: map[int64]map[string]int64{1: {}, 2: {}}, seen: map[string]int{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	var out bytes.Buffer
	var observed atomic.Int64
	d, err := NewDriver(DriverConfig{BaseURL: srv.URL, Targets: []Target{{1, 3}, {2, 1}}, Rate: 400,
		Duration: 1500 * time.Millisecond, Tail: 5 * time.Second, Prefix: "t", Verify: 20, RepeatShare: 0.2, Out: &out,
		Observe: func(*Record) { observed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "records.jsonl")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := readRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != st.Attempts || st.Users < 300 || st.Retries == 0 || st.Verified != 40 || st.Abandoned != 0 || st.GaveUp != 0 {
		t.Fatalf("stats %+v, %d records", st, len(recs))
	}
	if n := observed.Load(); n != int64(len(recs)) {
		t.Errorf("Observe saw %d records of %d", n, len(recs))
	}

	var states []*CampaignState
	for _, id := range []int64{1, 2} {
		s := &CampaignState{ID: id, Loaded: true, Total: map[int64]int64{5: 10000, 20: 10000},
			Opened: map[int64]int64{}, Log: map[string]int64{}, Redis: map[string]int64{}, Remaining: map[int64]int64{}}
		for u, a := range fake.claims[id] {
			s.Log[u], s.Redis[u] = a, a
			s.Opened[a]++
			s.LogRows++
		}
		for a, n := range s.Total {
			s.Remaining[a] = n - s.Opened[a]
		}
		states = append(states, s)
	}
	for _, v := range Check(recs, states, CheckOptions{NoAnswerOK: true}) {
		if !v.OK {
			t.Errorf("%s: %s %v", v.Name, v.Detail, v.Examples)
		}
		if v.Name == InvRetries && !strings.Contains(v.Detail, "had claimed (409 later)") {
			t.Errorf("retries: %s", v.Detail)
		}
	}
	// Every lost answer was retried and came back as the original claim.
	lost, timed := 0, 0
	for _, r := range recs {
		if r.LatMs > 0 {
			timed++
		}
		if !r.Answered() {
			lost++
			if r.Err != "eof" && r.Err != "reset" {
				t.Errorf("lost answer classed %q", r.Err)
			}
		}
	}
	if lost == 0 {
		t.Error("no answer was lost: the fake did not misbehave")
	}
	if timed == 0 {
		t.Error("no latency recorded")
	}
}

func TestDriverRefusesOtherHosts(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8080", "https://127.0.0.1:8080", "127.0.0.1:8080"} {
		if _, err := NewDriver(DriverConfig{BaseURL: u, Targets: []Target{{1, 1}}, Out: &bytes.Buffer{}}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	recs := []Record{{Campaign: 1, User: "a", Kind: KindFirst, Attempt: 1, Status: 200, Code: "OK", Amount: 5},
		{Campaign: 1, User: "b", Kind: KindRetry, Attempt: 2, Err: "refused"}}
	path := filepath.Join(t.TempDir(), "r.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeRecords(f, recs); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := readRecords(path)
	if err != nil || len(got) != 2 || got[0] != recs[0] || got[1] != recs[1] {
		t.Fatalf("got %+v, %v", got, err)
	}
}
