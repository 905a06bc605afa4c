package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tcpServer serves a server with no dependencies on a loopback TCP port:
// enough for what is answered before a handler runs.
func tcpServer(t *testing.T) string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{testToken}
	s := New(cfg, Deps{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// sendWhole writes head and then body on a fresh TCP connection and only
// then reads the answer, as most clients do (curl, a plain HTTP client):
// a write that fails (a broken pipe, a reset: the server closed first)
// fails the test, and so does an answer that cannot be read.
func sendWhole(t *testing.T, addr, head string, body []byte) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatalf("writing the headers: %v", err)
	}
	// A client on a slower network: the body comes a little later.
	time.Sleep(20 * time.Millisecond)
	for b := body; len(b) > 0; b = b[min(len(b), 4<<10):] { // in segments, as a socket would
		if _, err := conn.Write(b[:min(len(b), 4<<10)]); err != nil {
			t.Fatalf("writing the body: %v (the server closed the connection before reading it)", err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the client cannot read the answer: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the client cannot read the answer's body: %v", err)
	}
	return resp, b
}

// TestRefusalReadableByClient: a request refused before its handler runs
// while the client is still sending (headers over the buffer: an 8 KiB
// bearer token on a create; a request line over it; a body declared over
// the route's limit) gets an answer the client can read: the server
// answers, stops writing, and reads and discards a bounded amount of what
// the client sends before closing, so the close does not reset the
// connection under the answer (a broken pipe or a reset instead of a 431).
func TestRefusalReadableByClient(t *testing.T) {
	addr := tcpServer(t)
	token := strings.Repeat("t", 8<<10)
	create := []byte(`{"name":"x","start_time":"2025-01-01T00:00:00Z","end_time":"2025-01-02T00:00:00Z","inventory":{"5":1}}`)
	big := make([]byte, 60<<10) // a create body under 64 KiB
	copy(big, create)
	for i := len(create); i < len(big); i++ {
		big[i] = ' '
	}
	for _, c := range []struct {
		name string
		head string
		body []byte
		want int
	}{
		{"8 KiB bearer token, create", "POST /campaign HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer " + token +
			"\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(big)) + "\r\n\r\n", big, 431},
		{"8 KiB bearer token, small body", "POST /campaign HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer " + token +
			"\r\nContent-Length: " + fmt.Sprint(len(create)) + "\r\n\r\n", create, 431},
		{"request line over 4 KiB", "POST /campaign?" + strings.Repeat("a", 6<<10) + " HTTP/1.1\r\nHost: api\r\nContent-Length: " +
			fmt.Sprint(len(big)) + "\r\n\r\n", big, 414},
		{"body over the route's limit", "POST /campaign/1/open HTTP/1.1\r\nHost: api\r\nContent-Length: " +
			fmt.Sprint(len(big)) + "\r\n\r\n", big, 413},
	} {
		for range 5 {
			resp, body := sendWhole(t, addr, c.head, c.body)
			if resp.StatusCode != c.want {
				t.Fatalf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.want)
			}
			var e struct{ Status, Error string }
			if err := json.Unmarshal(body, &e); err != nil || e.Status != "INVALID_REQUEST" || e.Error == "" {
				t.Fatalf("%s: body %q (%v)", c.name, body, err)
			}
		}
	}
}
