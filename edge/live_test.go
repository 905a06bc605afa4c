package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
)

// GET /campaign/{id}/live: the console's live view.

// liveStream is an open stream's reader.
type liveStream struct {
	resp *http.Response
	r    *bufio.Reader
}

// openLive opens campaign id's stream with token through the harness.
func (h *harness) openLive(t *testing.T, id int64, token string) (*http.Response, *liveStream) {
	t.Helper()
	cl := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return h.dial() }}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://api/campaign/%d/live", id), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		return resp, nil
	}
	return resp, &liveStream{resp: resp, r: bufio.NewReader(resp.Body)}
}

// next reads the stream's next event: its type and data.
func (s *liveStream) next(t *testing.T) (string, []byte) {
	t.Helper()
	typ, data := "message", []byte(nil)
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != nil:
			return typ, data
		case strings.HasPrefix(line, "event: "):
			typ = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = []byte(line[len("data: "):])
		}
	}
}

// event reads the next live event.
func (s *liveStream) event(t *testing.T) liveEvent {
	t.Helper()
	typ, data := s.next(t)
	var ev liveEvent
	if typ != "live" {
		t.Fatalf("event %q: %s", typ, data)
	}
	if err := validateLiveEvent(data); err != nil {
		t.Fatalf("event %s: %v", data, err)
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// validateLiveEvent checks an event's data against the document's
// LiveEvent schema.
func validateLiveEvent(data []byte) error {
	if err := loadContract(); err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	return contract.doc.Components.Schemas["LiveEvent"].Value.VisitJSON(v)
}

func TestLiveRoute(t *testing.T) {
	testenv.Need(t, "Redis and PostgreSQL")
	h := newHarness(t, harnessOpt{})
	_, acme := h.newMerchant("live-a")
	_, other := h.newMerchant("live-b")
	id := h.liveAs(acme, `{"20":3,"5":100}`)

	// The gate: no token 401; another merchant's campaign is 404 exactly
	// as an id that does not exist; a bad id 400; no query parameter.
	if st, _ := h.openLive(t, id, ""); st.StatusCode != 401 {
		t.Fatalf("no token: %d", st.StatusCode)
	}
	for _, c := range []struct {
		uri, token string
		want       int
	}{{fmt.Sprintf("/campaign/%d/live", id), other, 404}, {fmt.Sprintf("/campaign/%d/live", missingLike(t, h.srv.store, id)), acme, 404},
		{"/campaign/0/live", acme, 400}, {fmt.Sprintf("/campaign/%d/live?x=1", id), acme, 400}} {
		st, m := h.do("GET", c.uri, c.token, "")
		if st != c.want {
			t.Errorf("%s: %d %v, want %d", c.uri, st, m, c.want)
		}
	}
	_, theirs := h.do("GET", fmt.Sprintf("/campaign/%d/live", id), other, "")
	if theirs["status"] != "NOT_FOUND" {
		t.Errorf("another merchant's campaign: %v", theirs)
	}

	resp, s := h.openLive(t, id, acme)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	ev := s.event(t)
	if ev.State != "live" || ev.Total != 103 || ev.Remaining != 103 || ev.Claims != 0 || len(ev.Inventory) != 2 || ev.Replica == "" {
		t.Fatalf("first event: %+v", ev)
	}
	// Opens move the counters: 3 OK of 20 and 2 of 5 (5 users), 1 repeat.
	for i := range 5 {
		if st, m := h.open(id, fmt.Sprintf("u%d", i)); st != 200 {
			t.Fatalf("open: %d %v", st, m)
		}
	}
	h.open(id, "u0")
	deadline := time.Now().Add(5 * time.Second)
	for ev.Answers.OK < 5 || ev.Answers.AlreadyOpened < 1 || ev.Claims < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the counters did not move: %+v", ev)
		}
		ev = s.event(t)
	}
	if ev.Answers.OK != 5 || ev.Answers.AlreadyOpened != 1 || ev.Remaining != 98 || ev.Claims != 5 {
		t.Fatalf("after the opens: %+v", ev)
	}
	// Events come every liveEvery.
	t0 := time.Now()
	for range 3 {
		s.event(t)
	}
	if d := time.Since(t0); d > 4*liveEvery {
		t.Errorf("3 events in %v", d)
	}

	// Ten more viewers of the campaign share its one poller.
	polls := counter(`rain_live_polls_total`)
	for range 10 {
		_, v := h.openLive(t, id, acme)
		v.event(t)
	}
	h.srv.live.mu.Lock()
	feeds, streams := len(h.srv.live.feeds), h.srv.live.streams
	h.srv.live.mu.Unlock()
	if feeds != 1 || streams != 11 {
		t.Errorf("%d pollers for %d streams", feeds, streams)
	}
	time.Sleep(2 * time.Second)
	if n := counter(`rain_live_polls_total`) - polls; n > uint64(5*time.Second/liveEvery) {
		t.Errorf("%d polls in about 2.5 s with 11 viewers", n)
	}

	// An end shows in the stream.
	if st, m := h.do("POST", fmt.Sprintf("/campaign/%d/end", id), acme, ""); st != 200 {
		t.Fatalf("end: %d %v", st, m)
	}
	for ev = s.event(t); ev.State != "ended"; ev = s.event(t) {
	}

	// Shutdown ends every stream with an end event, and the pollers stop.
	h.srv.live.shutdown()
	typ, data := s.next(t)
	if typ == "live" {
		typ, data = s.next(t)
	}
	if typ != "end" || !strings.Contains(string(data), "BUSY") {
		t.Fatalf("after shutdown: %s %s", typ, data)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		h.srv.live.mu.Lock()
		defer h.srv.live.mu.Unlock()
		return len(h.srv.live.feeds) == 0 && h.srv.live.streams == 0, fmt.Sprintf("%d pollers, %d streams", len(h.srv.live.feeds), h.srv.live.streams)
	})
}

// TestLiveRevoked: a stream whose token is revoked ends within liveRecheck.
func TestLiveRevoked(t *testing.T) {
	testenv.Need(t, "Redis and PostgreSQL")
	h := newHarness(t, harnessOpt{})
	name := fmt.Sprintf("live-r-%d", time.Now().UnixNano()%1e12)
	st, m := h.do("POST", "/merchants", testToken, `{"name":"`+name+`"}`)
	if st != 201 {
		t.Fatalf("create merchant: %d %v", st, m)
	}
	acme := m["token"].(string)
	id := h.liveAs(acme, `{"20":3}`)
	_, s := h.openLive(t, id, acme)
	s.event(t)
	if st, m := h.do("DELETE", fmt.Sprintf("/merchants/%s/tokens/%v", name, m["token_id"]), testToken, ""); st != 200 {
		t.Fatalf("revoke: %d %v", st, m)
	}
	deadline := time.Now().Add(liveRecheck + 3*time.Second)
	for time.Now().Before(deadline) {
		typ, data := s.next(t)
		if typ == "end" {
			if !strings.Contains(string(data), "UNAUTHORIZED") {
				t.Fatalf("end: %s", data)
			}
			return
		}
	}
	t.Fatal("the stream went on after its token was revoked")
}

// TestLiveStreamMax: a stream ends with event "end" (BUSY, reconnect) once
// it has been open LIVE_STREAM_MAX, live events until then.
func TestLiveStreamMax(t *testing.T) {
	testenv.Need(t, "Redis and PostgreSQL")
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.LiveStreamMax = 1500 * time.Millisecond }})
	_, acme := h.newMerchant("live-max")
	id := h.liveAs(acme, `{"20":3}`)
	_, s := h.openLive(t, id, acme)
	start := time.Now()
	for {
		typ, data := s.next(t)
		if typ == "live" {
			if time.Since(start) > 30*time.Second {
				t.Fatal("the stream went on past LIVE_STREAM_MAX")
			}
			continue
		}
		if typ != "end" || !strings.Contains(string(data), `"BUSY"`) || !strings.Contains(string(data), "LIVE_STREAM_MAX") {
			t.Fatalf("event %q: %s", typ, data)
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("ended after %v, before LIVE_STREAM_MAX (1.5 s)", d)
		}
		return
	}
}

// TestLiveReplicas: the answers of opens another api replica took reach
// the stream, summed with this one's, within a couple of seconds.
func TestLiveReplicas(t *testing.T) {
	testenv.Need(t, "Redis and PostgreSQL")
	h := newHarness(t, harnessOpt{})
	other := newHarness(t, harnessOpt{})
	id := h.live(`{"20":100}`)
	_, s := h.openLive(t, id, testToken)
	s.event(t)
	for i := range 4 {
		if st, m := other.open(id, fmt.Sprintf("r%d", i)); st != 200 {
			t.Fatalf("open through the other replica: %d %v", st, m)
		}
	}
	h.open(id, "here")
	other.open(id, "r0")
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := s.event(t)
		if ev.Replicas == 2 && ev.Answers.OK == 5 && ev.Answers.AlreadyOpened == 1 {
			if ev.Replica != h.eng.Replica() || ev.Replica == other.eng.Replica() {
				t.Errorf("served by %q; this replica is %q", ev.Replica, h.eng.Replica())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other replica's answers did not arrive: %+v", ev)
		}
	}
}
