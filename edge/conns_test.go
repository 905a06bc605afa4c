package edge

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestBodyLimit(t *testing.T) {
	for req, want := range map[string]int{
		"POST /campaign HTTP/1.1":                     64 << 10,
		"POST /campaign?x=1 HTTP/1.1":                 64 << 10,
		"POST http://api:8080/campaign HTTP/1.1":      64 << 10,
		"POST /campaign/ HTTP/1.1":                    4 << 10,
		"POST /campaign/1/open HTTP/1.1":              4 << 10,
		"POST /campaign/1/stock HTTP/1.1":             4 << 10,
		"GET /campaign HTTP/1.1":                      4 << 10,
		"PUT /campaign HTTP/1.1":                      4 << 10,
		"POST /x?next=/campaign HTTP/1.1":             4 << 10,
		"POST http://api/campaign/1/open HTTP/1.1":    4 << 10,
		"POST http://api HTTP/1.1":                    4 << 10,
		"POST /campaign#frag HTTP/1.1":                64 << 10,
		"POST /CAMPAIGN HTTP/1.1":                     4 << 10,
		"POST /a/http://x/campaign HTTP/1.1":          4 << 10,
		"POST //campaign HTTP/1.1":                    4 << 10,
		"POST https://api.example/campaign HTTP/1.1":  64 << 10,
		"POST /campaign/../campaign HTTP/1.1":         4 << 10,
		"POST /campaign%2F HTTP/1.1":                  4 << 10,
		"POST /campaign?a=http://x/ HTTP/1.1":         64 << 10,
		"POST http:/campaign HTTP/1.1":                4 << 10,
		"POST /campaignx HTTP/1.1":                    4 << 10,
		"DELETE http://api/campaign?x=y#z HTTP/1.1":   4 << 10,
		"POST http://api/campaign?x=y#z HTTP/1.1":     64 << 10,
		"POST http://u@api:1/campaign HTTP/1.1":       64 << 10,
		"POST /campaign/1/claims HTTP/1.1":            4 << 10,
		"POST /openapi.json HTTP/1.1":                 4 << 10,
		"POST /metrics HTTP/1.1":                      4 << 10,
		"POST /campaign?/campaign HTTP/1.1":           64 << 10,
		"POST http://api/x/campaign HTTP/1.1":         4 << 10,
		"POST http://api//campaign HTTP/1.1":          4 << 10,
		"POST /campaign/1/end HTTP/1.1":               4 << 10,
		"POST /campaigns HTTP/1.1":                    4 << 10,
		"HEAD /campaign HTTP/1.1":                     4 << 10,
		"OPTIONS /campaign HTTP/1.1":                  4 << 10,
		"POST /campaign HTTP/1.0":                     64 << 10,
		"POST http://api:8080/campaign?q HTTP/1.1":    64 << 10,
		"POST https://[::1]:8080/campaign HTTP/1.1":   64 << 10,
		"POST http://127.0.0.1/campaign/ HTTP/1.1":    4 << 10,
		"POST /%63ampaign HTTP/1.1":                   4 << 10,
		"POST /campaign;x HTTP/1.1":                   4 << 10,
		"POST http://api/campaign;x HTTP/1.1":         4 << 10,
		"POST /campaign/1/open?user=/campaign HTTP/1": 4 << 10,
	} {
		var h fasthttp.RequestHeader
		if err := h.Read(bufio.NewReader(strings.NewReader(req + "\r\nHost: api\r\n\r\n"))); err != nil {
			continue // fasthttp refuses the request line itself
		}
		if got := bodyLimit(&h); got != want {
			t.Errorf("%s: %d, want %d", req, got, want)
		}
	}
}

// pureServer serves a Server with no Redis, PostgreSQL or ring behind it
// on a loopback port, for the tests of what happens before a handler
// touches them (and of a handler that panics because they are missing).
func pureServer(t *testing.T, set func(*Config)) (*Server, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{testToken}
	cfg.ReadTimeout, cfg.IdleTimeout = 2*time.Second, 2*time.Second
	if set != nil {
		set(&cfg)
	}
	s := New(cfg, Deps{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.srv.Serve(s.guard.conns.listener(ln))
	t.Cleanup(func() { s.srv.Shutdown() })
	return s, ln.Addr().String()
}

// rawReply is one HTTP answer read off a raw connection.
type rawReply struct {
	status int
	header http.Header
	body   string
	json   map[string]any
	closed bool // Connection: close
}

// rawExchange writes raw on a fresh connection, half-closes it when close is
// set, and reads one answer; every connection has a deadline.
func rawExchange(t *testing.T, addr, raw string, closeWrite bool) (rawReply, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return rawReply{}, err
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	return readRawReply(bufio.NewReader(c), strings.HasPrefix(raw, "HEAD "))
}

func readRawReply(br *bufio.Reader, head bool) (rawReply, error) {
	req := &http.Request{Method: "GET"}
	if head {
		req.Method = "HEAD"
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return rawReply{}, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := rawReply{status: resp.StatusCode, header: resp.Header, body: string(b), closed: resp.Close}
	if len(b) > 0 {
		if jerr := json.Unmarshal(b, &r.json); jerr != nil {
			return r, jerr
		}
	}
	return r, err
}

// TestDeclaredBodyOverLimit: a body declared over its route's limit is
// refused with the JSON 413 as soon as the headers arrive, without waiting
// for (or allocating) the body: 50 such connections held open do not grow
// the heap by their declared 50 MB.
func TestDeclaredBodyOverLimit(t *testing.T) {
	_, addr := pureServer(t, nil)
	for _, path := range []string{"/campaign/1/open", "/campaign", "/campaign/1/stock", "/healthz"} {
		r, err := rawExchange(t, addr, "POST "+path+" HTTP/1.1\r\nHost: api\r\nContent-Length: 1000000\r\n\r\n", false)
		if err != nil || r.status != 413 || r.json["status"] != "INVALID_REQUEST" || !r.closed {
			t.Errorf("%s: %+v %v", path, r, err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 50)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "POST /campaign/1/open HTTP/1.1\r\nHost: api\r\nContent-Length: 1000000\r\n\r\n")
		conns[i] = c
	}
	for _, c := range conns {
		if r, err := readRawReply(bufio.NewReader(c), false); err != nil || r.status != 413 {
			t.Fatalf("%+v %v", r, err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 10<<20 {
		t.Errorf("50 declared bodies of 1 MB grew the heap by %d bytes", grew)
	}
}

// TestExpectContinueRefused: no 100 Continue, a JSON 417, and the
// connection closed.
func TestExpectContinueRefused(t *testing.T) {
	_, addr := pureServer(t, nil)
	r, err := rawExchange(t, addr, "POST /campaign/1/open HTTP/1.1\r\nHost: api\r\nExpect: 100-continue\r\nContent-Length: 20\r\n\r\n", false)
	if err != nil || r.status != 417 || r.json["status"] != "INVALID_REQUEST" || !r.closed {
		t.Errorf("%+v %v", r, err)
	}
}

// TestMaxConns: past MAX_CONNS a connection gets the JSON 503 and is
// closed; once one closes, a new one is served again.
func TestMaxConns(t *testing.T) {
	_, addr := pureServer(t, func(c *Config) { c.Security.MaxConns = 2 })
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
		if r, err := readRawReply(bufio.NewReader(c), false); err != nil || r.status != 200 {
			t.Fatalf("within the cap: %+v %v", r, err)
		}
		held = append(held, c)
	}
	r, err := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n", false)
	if err != nil || r.status != 503 || r.json["status"] != "BUSY" || r.header.Get("Retry-After") == "" {
		t.Errorf("past the cap: %+v %v", r, err)
	}
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n", false)
		if err == nil && r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection never freed its place: %+v %v", r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	held[1].Close()
}

// TestPanicIsA500: a handler that panics (here the open route, on a server
// with no Redis or ring behind it) answers a JSON 500, is counted, and the
// process serves the next request.
func TestPanicIsA500(t *testing.T) {
	_, addr := pureServer(t, nil)
	before := panicsHandler.Get()
	body := `{"user_id":"alice"}`
	r, err := rawExchange(t, addr, "POST /campaign/1/open HTTP/1.1\r\nHost: api\r\nContent-Length: 19\r\n\r\n"+body, false)
	if err != nil || r.status != 500 || r.json["status"] != "INTERNAL" || r.json["error"] != "internal error" {
		t.Errorf("open that panics: %+v %v", r, err)
	}
	if panicsHandler.Get() != before+1 {
		t.Errorf("panics counted %d, want %d", panicsHandler.Get(), before+1)
	}
	// A routed handler too (GET /campaign/{id} reads PostgreSQL, here nil).
	r, err = rawExchange(t, addr, "GET /campaign/1 HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer "+testToken+"\r\n\r\n", false)
	if err != nil || r.status != 500 || r.json["status"] != "INTERNAL" {
		t.Errorf("get that panics: %+v %v", r, err)
	}
	r, err = rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n", false)
	if err != nil || r.status != 200 {
		t.Errorf("after the panics: %+v %v", r, err)
	}
}

// TestRouterAnswers: no redirects (a JSON 404), HEAD on GET routes,
// OPTIONS answered in JSON with Allow.
func TestRouterAnswers(t *testing.T) {
	_, addr := pureServer(t, nil)
	for _, c := range []struct {
		req    string
		status int
		allow  string
	}{
		{"GET /healthz/ HTTP/1.1", 404, ""},
		{"GET /HEALTHZ HTTP/1.1", 404, ""},
		{"POST /campaign/1/open/ HTTP/1.1", 404, ""},
		{"POST /CAMPAIGN/1/OPEN HTTP/1.1", 404, ""},
		{"GET //healthz HTTP/1.1", 404, ""},
		{"HEAD /healthz HTTP/1.1", 200, ""},
		{"HEAD /campaign/1/open HTTP/1.1", 405, "POST"},
		{"OPTIONS /healthz HTTP/1.1", 200, "GET"},
		{"OPTIONS /campaign/1/open HTTP/1.1", 200, "POST"},
		{"OPTIONS /nowhere HTTP/1.1", 404, ""},
		{"DELETE /campaign/1 HTTP/1.1", 405, "GET"},
	} {
		r, err := rawExchange(t, addr, c.req+"\r\nHost: api\r\nContent-Length: 0\r\n\r\n", false)
		if err != nil || r.status != c.status || !strings.Contains(r.header.Get("Allow"), c.allow) ||
			r.header.Get("Location") != "" {
			t.Errorf("%s: %+v %v", c.req, r, err)
			continue
		}
		if strings.HasPrefix(c.req, "HEAD") {
			if r.body != "" || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: body %q, type %q", c.req, r.body, r.header.Get("Content-Type"))
			}
		} else if r.json["status"] == nil {
			t.Errorf("%s: not the JSON body: %+v", c.req, r)
		}
	}
}
