package edge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const userSecret = "a user token secret of 32 bytes!"

// openAs sends an open with the Authorization header auth ("" for none).
func (h *harness) openAs(id int64, user, auth string) (int, map[string]any, *fasthttp.ResponseHeader) {
	h.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(fmt.Sprintf("http://api/campaign/%d/open", id))
	req.Header.SetMethod("POST")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.SetBodyString(fmt.Sprintf(`{"user_id":%q}`, user))
	if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		h.t.Fatal(err)
	}
	var hdr fasthttp.ResponseHeader
	resp.Header.CopyTo(&hdr)
	return resp.StatusCode(), decodeJSON(h.t, resp.Body()), &hdr
}

// TestUserTokensOnOpen: with USER_TOKEN_SECRET set, an open without a
// valid token of its own user for its own campaign is 401 and claims
// nothing; with one, it opens for that user.
func TestUserTokensOnOpen(t *testing.T) {
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.Security.UserTokenSecrets = []string{userSecret} }})
	id := h.live(`{"7":10}`)
	other := h.live(`{"7":10}`)
	exp := time.Now().Add(5 * time.Minute)
	tok := func(campaign int64, user string) string {
		return "Bearer " + SignUserToken([]byte(userSecret), campaign, user, exp)
	}
	for name, auth := range map[string]string{
		"no token":                "",
		"another user's token":    tok(id, "mallory"),
		"another campaign's":      tok(other, "alice"),
		"expired":                 "Bearer " + SignUserToken([]byte(userSecret), id, "alice", time.Now().Add(-time.Second)),
		"too far ahead":           "Bearer " + SignUserToken([]byte(userSecret), id, "alice", time.Now().Add(48*time.Hour)),
		"signed with another key": "Bearer " + SignUserToken([]byte("not the secret, 32 bytes or more"), id, "alice", exp),
		"the merchant's token":    "Bearer " + testToken,
		"no scheme":               SignUserToken([]byte(userSecret), id, "alice", exp),
		"basic scheme":            "Basic " + SignUserToken([]byte(userSecret), id, "alice", exp),
	} {
		status, m, _ := h.openAs(id, "alice", auth)
		if status != 401 || m["status"] != "UNAUTHORIZED" || m["error"] == "" {
			t.Errorf("%s: %d %v", name, status, m)
		}
	}
	if n := h.claims(id); n != 0 {
		t.Fatalf("refused opens claimed %d packets", n)
	}
	if status, m, _ := h.openAs(id, "alice", tok(id, "alice")); status != 200 || m["amount"] != float64(7) {
		t.Errorf("alice with her token: %d %v", status, m)
	}
	if status, m, _ := h.openAs(id, "alice", "bearer "+SignUserToken([]byte(userSecret), id, "alice", exp)); status != 409 || m["amount"] != float64(7) {
		t.Errorf("alice again (scheme in lower case): %d %v", status, m)
	}
	// Her amount is hers: mallory's token does not show it.
	if status, m, _ := h.openAs(id, "alice", tok(id, "mallory")); status != 401 || m["amount"] != nil {
		t.Errorf("alice's id with mallory's token: %d %v", status, m)
	}
	if n := h.claims(id); n != 1 {
		t.Errorf("%d claims, want alice's 1", n)
	}
}

// TestRateLimits: 429 RATE_LIMITED with Retry-After exactly past the
// configured rate and burst (clock stopped), not below it; a limited open
// claims nothing; the per-IP limit covers the merchant routes too.
func TestRateLimits(t *testing.T) {
	h := newHarness(t, harnessOpt{set: func(c *Config) {
		c.Security.RateLimitUser, c.Security.RateLimitIP, c.Security.RateLimitBurst = 1, 5, 2
	}})
	id := h.live(`{"7":100}`)
	now := time.Now()
	h.srv.guard.now = func() time.Time { return now }
	// alice: burst 2 (1/s × 2 s), then 429.
	want := []int{200, 409, 429}
	for i, w := range want {
		status, m, hdr := h.openAs(id, "alice", "")
		if status != w {
			t.Fatalf("alice's open %d: %d %v, want %d", i+1, status, m, w)
		}
		if w == 429 {
			ra := string(hdr.Peek("Retry-After"))
			if m["status"] != "RATE_LIMITED" || (ra != "1" && ra != "2" && ra != "3") {
				t.Errorf("429: %v, Retry-After %q", m, ra)
			}
		}
	}
	claims := h.claims(id)
	// One second later alice has one more (the rate, 1/s).
	now = now.Add(time.Second)
	if status, m, _ := h.openAs(id, "alice", ""); status != 409 {
		t.Errorf("alice one second later: %d %v", status, m)
	}
	if status, _, _ := h.openAs(id, "alice", ""); status != 429 {
		t.Errorf("alice twice in that second: %d", status)
	}
	// The IP: 5/s × 2 s = a bucket of 10, full again after 2 s.
	now = now.Add(10 * time.Second)
	for i := range 10 {
		if status, m, _ := h.openAs(id, fmt.Sprintf("user-%d", i), ""); status != 200 {
			t.Fatalf("IP's request %d of 10: %d %v", i+1, status, m)
		}
	}
	if status, m, _ := h.openAs(id, "zoe", ""); status != 429 || m["status"] != "RATE_LIMITED" {
		t.Errorf("past the IP's burst: %d %v", status, m)
	}
	if status, m := h.do("GET", fmt.Sprintf("/campaign/%d", id), testToken, ""); status != 429 || m["status"] != "RATE_LIMITED" {
		t.Errorf("merchant route past the IP's burst: %d %v", status, m)
	}
	if status, _ := h.doRaw("GET", "/healthz", "", ""); status != 200 {
		t.Errorf("health is not limited: %d", status)
	}
	if got := h.claims(id); got != claims+10 {
		t.Errorf("claims %d, want %d: a limited open claimed", got, claims+10)
	}
	now = now.Add(time.Second / 5)
	if status, m, _ := h.openAs(id, "zoe", ""); status != 200 {
		t.Errorf("zoe one period later: %d %v", status, m)
	}
}

// decodeJSON decodes a JSON object body, failing the test if it is not one.
func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", b, err)
	}
	return m
}

// oversized sends a request whose body of n bytes is over its route's
// limit, writing the body while it reads the answer: the server answers
// 413 as soon as the headers are in and closes, without reading the body,
// so a client that wrote the whole body before reading could see the
// connection close instead.
func (h *harness) oversized(path, token string, n int) (int, map[string]any) {
	h.t.Helper()
	c, err := h.dial()
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: api\r\nContent-Length: %d\r\n", path, n)
	if token != "" {
		head += "Authorization: Bearer " + token + "\r\n"
	}
	go func() {
		io.WriteString(c, head+"\r\n")
		c.Write(bytes.Repeat([]byte("x"), n))
	}()
	r, err := readRawReply(bufio.NewReader(c), false)
	if err != nil {
		h.t.Fatalf("POST %s with %d bytes: %v", path, n, err)
	}
	return r.status, r.json
}
