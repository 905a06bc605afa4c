package testenv

import (
	"io"
	"net"
	"strings"
	"sync"
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

// LoseReplies lets requests reach the service but loses its replies: a
// connection that gets one is closed instead (the service did the work;
// the client never hears of it), until Restore.
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
	go func() { io.Copy(up, c); up.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 && p.muted() {
			break // the reply is lost with the connection
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
