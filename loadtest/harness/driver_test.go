package harness

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
	srv, srv2 := httptest.NewServer(fake), httptest.NewServer(fake) // two api replicas
	defer srv.Close()
	defer srv2.Close()
	var out bytes.Buffer
	var observed atomic.Int64
	d, err := NewDriver(DriverConfig{BaseURLs: []string{srv.URL, srv2.URL}, Targets: []Target{{1, 3}, {2, 1}}, Rate: 400,
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
	recs, err := ReadRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != st.Attempts || st.Users < 300 || st.Retries == 0 || st.Verified != 40 || st.Abandoned != 0 || st.GaveUp != 0 {
		t.Fatalf("stats %+v, %d records", st, len(recs))
	}
	if n := observed.Load(); n != int64(len(recs)) {
		t.Errorf("Observe saw %d records of %d", n, len(recs))
	}

	// Every user told of a claim was told its amount; a retry after a lost
	// answer got the original claim.
	for _, h := range Histories(recs) {
		want, claimed := fake.claims[h[0].Campaign][h[0].User]
		if told := FirstClaim(h); told != nil && (!claimed || told.Amount != want) {
			t.Errorf("%s: told %d amount %d, the fake holds %d (%v)", h[0].User, told.Status, told.Amount, want, claimed)
		}
		if r, unknown, _ := FirstResolution(h); unknown && r != nil && r.Status == 409 && r.Amount != want {
			t.Errorf("%s: retry got 409 amount %d, the claim is %d", h[0].User, r.Amount, want)
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
	apis := map[int]int{}
	for _, h := range Histories(recs) {
		for i, r := range h {
			apis[r.API]++
			if i > 0 && r.Kind == KindRetry && r.API == h[i-1].API {
				t.Errorf("%s: retry #%d sent to the same api %d", r.User, r.Attempt, r.API)
			}
		}
	}
	if apis[0] == 0 || apis[1] == 0 {
		t.Errorf("opens per api %v: want both replicas used", apis)
	}
}

func TestDriverRefusesOtherHosts(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8080", "https://127.0.0.1:8080", "127.0.0.1:8080"} {
		if _, err := NewDriver(DriverConfig{BaseURLs: []string{u}, Targets: []Target{{1, 1}}, Out: &bytes.Buffer{}}); err == nil {
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
	if err := WriteRecords(f, recs); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := ReadRecords(path)
	if err != nil || len(got) != 2 || got[0] != recs[0] || got[1] != recs[1] {
		t.Fatalf("got %+v, %v", got, err)
	}
}
