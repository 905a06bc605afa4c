package edge

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
)

// TestOpenStatusTable walks every row of the README's table for POST /open.
func TestOpenStatusTable(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	id := h.live(`{"20":1}`)

	check := func(what string, status int, m map[string]any, wantStatus int, wantBody string, wantAmount float64) {
		t.Helper()
		if status != wantStatus || m["status"] != wantBody {
			t.Errorf("%s: %d %v, want %d %s", what, status, m, wantStatus, wantBody)
		}
		if wantAmount != 0 && m["amount"] != wantAmount {
			t.Errorf("%s: amount %v, want %v", what, m["amount"], wantAmount)
		}
	}
	status, m := h.open(id, "alice")
	check("claim", status, m, 200, "OK", 20)
	status, m = h.open(id, "alice")
	check("repeat", status, m, 409, "ALREADY_OPENED", 20)
	status, m = h.open(id, "bob")
	check("sold out", status, m, 410, "SOLD_OUT", 0)
	status, m = h.open(1<<62, "bob")
	check("no such campaign", status, m, 404, "NOT_FOUND", 0)
	future := h.create(time.Now().Add(time.Hour), time.Now().Add(2*time.Hour), `{"5":10}`)
	status, m = h.open(future, "bob")
	check("not started", status, m, 400, "NOT_STARTED", 0)
	past := h.create(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour), `{"5":10}`)
	status, m = h.open(past, "bob")
	check("ended", status, m, 400, "ENDED", 0)

	status, m = h.do("POST", fmt.Sprintf("/campaign/%d/open", id), "", `{"user_id":`)
	check("bad json", status, m, 400, "INVALID_REQUEST", 0)
	status, m = h.do("POST", "/campaign/abc/open", "", `{"user_id":"x"}`)
	check("bad id", status, m, 400, "INVALID_REQUEST", 0)
	status, m = h.oversized(fmt.Sprintf("/campaign/%d/open", id), "", 5000)
	check("body over 4 KiB", status, m, 413, "INVALID_REQUEST", 0)
	if m["error"] == "" {
		t.Errorf("error bodies carry a message: %v", m)
	}
}

// TestBadOpensChangeNothing: every malformed open is a 4xx and leaves Redis
// and the ring untouched.
func TestBadOpensChangeNothing(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	id := h.live(`{"5":100}`)
	path := fmt.Sprintf("/campaign/%d/open", id)
	cases := []struct{ path, body string }{
		{path, ``},
		{path, `null`},
		{path, `[]`},
		{path, `"alice"`},
		{path, `{}`},
		{path, `{"user_id":""}`},
		{path, `{"user_id":42}`},
		{path, `{"user_id":null}`},
		{path, `{"user_id":"has space"}`},
		{path, `{"user_id":"tab\there"}`},
		{path, `{"user_id":"nul\u0000"}`},
		{path, `{"user_id":"nbsp\u00a0"}`},
		{path, `{"user_id":"` + strings.Repeat("u", 129) + `"}`},
		{path, `{"user_id":"alice","extra":1}`},
		{path, `{"user_id":"alice","user_id":"bob"}`},
		{path, `{"user_id":"alice"} trailing`},
		{path, `{"user_id":"alice"`},
		{"/campaign/0/open", `{"user_id":"alice"}`},
		{"/campaign/-1/open", `{"user_id":"alice"}`},
		{"/campaign/007/open", `{"user_id":"alice"}`},
		{"/campaign/99999999999999999999/open", `{"user_id":"alice"}`},
	}
	for _, c := range cases {
		status, m := h.do("POST", c.path, "", c.body)
		if status != 400 || m["status"] != "INVALID_REQUEST" || m["error"] == "" {
			t.Errorf("POST %s %q: %d %v, want 400 INVALID_REQUEST with a message", c.path, c.body, status, m)
		}
	}
	if n := h.claims(id); n != 0 {
		t.Errorf("bad opens claimed %d packets", n)
	}
	if n := h.ring.Len(); n != 0 {
		t.Errorf("bad opens left %d ring slots taken", n)
	}
	// The longest valid user id is fine (128 bytes).
	if status, m := h.open(id, strings.Repeat("u", 128)); status != 200 {
		t.Errorf("128-byte user id: %d %v", status, m)
	}
}

// TestOpenBusyWhenRingFull: with the ring full, an open gets 503 BUSY with
// Retry-After and nothing is claimed.
func TestOpenBusyWhenRingFull(t *testing.T) {
	h := newHarness(t, harnessOpt{ringSize: 1}) // no producer: nothing drains it
	id := h.live(`{"5":100}`)
	if status, _ := h.open(id, "first"); status != 200 {
		t.Fatalf("first open: %d", status)
	}
	status, m := h.open(id, "second")
	if status != 503 || m["status"] != "BUSY" {
		t.Fatalf("open with full ring: %d %v, want 503 BUSY", status, m)
	}
	if n := h.claims(id); n != 1 {
		t.Errorf("claims after the 503: %d, want 1 (nothing claimed)", n)
	}
	// A repeat of the first user takes no slot: this instance remembers
	// the claim and answers it from memory, full ring or not.
	if status, m := h.open(id, "first"); status != 409 {
		t.Errorf("repeat with a full ring: %d %v, want 409 from memory", status, m)
	}
	<-h.ring.Events()
	h.ring.Done()
	if status, _ := h.open(id, "second"); status != 200 {
		t.Errorf("after a slot frees: %d, want 200", status)
	}
}

// TestOpenBusyWhenRedisDown: Redis unreachable → 503 BUSY, and the api
// recovers by itself when Redis is back.
func TestOpenBusyWhenRedisDown(t *testing.T) {
	direct := testenv.Redis(t)
	proxy := testenv.NewProxy(t, testenv.RedisAddr())
	rdb := testenv.RedisAt(t, proxy.Addr())
	h := newHarness(t, harnessOpt{redis: rdb})
	id := h.live(`{"5":100}`)
	proxy.Cut()
	status, m := h.open(id, "alice")
	if status != 503 || m["status"] != "BUSY" {
		t.Errorf("open with redis down: %d %v, want 503 BUSY", status, m)
	}
	status, m = h.do("GET", "/readyz", "", "")
	if status != 503 {
		t.Errorf("readyz with redis down: %d %v", status, m)
	}
	if h.ring.Len() != 0 {
		t.Errorf("ring slot leaked: %d", h.ring.Len())
	}
	proxy.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, m = h.open(id, "alice")
		if status == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status != 200 {
		t.Fatalf("open after redis is back: %d %v", status, m)
	}
	n, _ := direct.Do(context.Background(), direct.B().Hlen().Key(testenv.Keys().Of(id).Claims()).Build()).AsInt64()
	if n != 1 {
		t.Errorf("claims: %d, want 1", n)
	}
}

// TestRetriedOpenGetsOriginalResult: a client that retries after a timeout
// gets its first result back (409 with the same amount), never a second packet.
func TestRetriedOpenGetsOriginalResult(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	id := h.live(`{"1":50,"7":50}`)
	_, first := h.open(id, "carol")
	for i := 0; i < 3; i++ {
		status, m := h.open(id, "carol")
		if status != 409 || m["amount"] != first["amount"] {
			t.Fatalf("retry %d: %d %v, want 409 with amount %v", i, status, m, first["amount"])
		}
	}
	if n := h.claims(id); n != 1 {
		t.Errorf("claims: %d, want 1", n)
	}
}

// TestIdleConnectionTimesOut: a connection that sends nothing within the
// read timeout gets 408 and is closed, never a 400 it did not ask for.
func TestIdleConnectionTimesOut(t *testing.T) {
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.ReadTimeout = 200 * time.Millisecond }})
	conn, err := h.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn) // until the server closes it
	if !strings.HasPrefix(string(b), "HTTP/1.1 408") || !strings.Contains(string(b), "Connection: close") {
		t.Errorf("idle connection got %q, want a 408 and close", b)
	}
}

// TestHugeHeadersAre431: headers over the read buffer get 431 with the
// API's JSON error body.
func TestHugeHeadersAre431(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	conn, err := h.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go fmt.Fprintf(conn, "POST /campaign/1/open HTTP/1.1\r\nHost: api\r\nX-Big: %s\r\n\r\n", strings.Repeat("x", 16<<10))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(b), "HTTP/1.1 431") || !strings.Contains(string(b), `"status":"INVALID_REQUEST"`) {
		t.Errorf("huge headers got %.200q, want a JSON 431", b)
	}
}
