package testenv

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a real service, for outage
// tests: Cut closes every connection and refuses new ones until Restore;
// LoseReplies lets requests through and loses what comes back.
type Proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	mute   bool
	conns  map[net.Conn]struct{}
}

// NewProxy listens on 127.0.0.1 and forwards to target until the test ends.
// A list of targets (a Redis Cluster's nodes) skips the test: a proxy
// stands in front of one server, and cluster clients go around it to the
// nodes CLUSTER SLOTS names.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	if strings.Contains(target, ",") {
		tb.Skipf("needs one Redis behind a proxy; %s is a cluster (its clients follow CLUSTER SLOTS around a proxy)", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	tb.Cleanup(func() { ln.Close(); p.Cut() })
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut drops every open connection and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

// LoseReplies lets requests reach the service but loses the replies to
// Redis script calls: once a request holding EVAL or EVALSHA has gone
// through a connection, the next reply on it closes it instead (the script
// ran; the client never hears of it), until Restore. Other replies pass, so
// the client's reconnect handshakes and pings work and every script call
// reaches Redis: losing those too would let a reconnecting client fail
// before it sends anything, and a test could not tell a lost reply from a
// call that never left.
func (p *Proxy) LoseReplies() {
	p.mu.Lock()
	p.mute = true
	p.mu.Unlock()
}

// Restore accepts connections and passes replies again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down, p.mute = false, false
	p.mu.Unlock()
}

func (p *Proxy) muted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mute
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.Unlock()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down { // cut while dialing
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var armed atomic.Bool // a script call went up while muted: lose the next reply
	go func() {
		buf := make([]byte, 32<<10)
		var tail []byte // a command name split over two reads
		for {
			n, err := c.Read(buf)
			if n > 0 {
				seen := append(tail, buf[:n]...)
				if p.muted() && bytes.Contains(seen, []byte("EVAL")) {
					armed.Store(true) // before the write: its reply may come at once
				}
				tail = append(tail[:0], seen[max(0, len(seen)-3):]...)
				if _, werr := up.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		up.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 && armed.Load() && p.muted() {
			// Close the client's side only: the request goroutine may still
			// be writing the script call up, and Redis runs what reached it
			// before the connection ends.
			c.Close()
			io.Copy(io.Discard, up)
			break
		}
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}
