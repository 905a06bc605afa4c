package edge

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestKeyedLimiter: a key gets its burst at once, then exactly its rate
// (not less): with the clock stopped, burst allowed and the next refused;
// one period later, one more.
func TestKeyedLimiter(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	for _, c := range []struct{ rate, burst int }{{1, 1}, {1, 2}, {5, 10}, {100, 200}} {
		l := newKeyedLimiter(c.rate, c.burst, 1000)
		for i := range c.burst {
			if !l.allow([]byte("alice"), now) {
				t.Fatalf("%d/s burst %d: request %d of the burst refused", c.rate, c.burst, i+1)
			}
		}
		if l.allow([]byte("alice"), now) {
			t.Errorf("%d/s burst %d: allowed past the burst", c.rate, c.burst)
		}
		if !l.allow([]byte("bob"), now) {
			t.Errorf("%d/s: another key shares the bucket", c.rate)
		}
		later := now.Add(time.Second / time.Duration(c.rate))
		if !l.allow([]byte("alice"), later) {
			t.Errorf("%d/s: refused one period later (below the rate)", c.rate)
		}
		if l.allow([]byte("alice"), later) {
			t.Errorf("%d/s: two allowed in one period (above the rate)", c.rate)
		}
		// Over a second at the rate exactly: all allowed.
		start := later.Add(10 * time.Second) // refilled
		for range c.burst {
			l.allow([]byte("carol"), start)
		}
		for i := 1; i <= c.rate; i++ {
			if !l.allow([]byte("carol"), start.Add(time.Duration(i)*time.Second/time.Duration(c.rate))) {
				t.Errorf("%d/s: request %d at the rate refused", c.rate, i)
			}
		}
	}
	if newKeyedLimiter(0, 5, 1000) != nil {
		t.Error("rate 0 is off")
	}
}

// TestKeyedLimiterBounded: however many keys, the caches hold at most
// their size; a forgotten key starts with a full bucket.
func TestKeyedLimiterBounded(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	l := newKeyedLimiter(1, 1, 1600)
	l.allow([]byte("first"), now)
	for i := range 100_000 {
		l.allow(fmt.Appendf(nil, "user-%d", i), now)
	}
	n := 0
	for _, c := range l.shards {
		n += c.Len()
	}
	if n > 1600 {
		t.Errorf("%d buckets kept, bound 1600", n)
	}
	if !l.allow([]byte("first"), now) {
		t.Error("a forgotten key is refused")
	}
}

func ctxFrom(peer string, xff ...string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/campaign/1/open")
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	var ctx fasthttp.RequestCtx
	host, port, _ := net.SplitHostPort(peer)
	var p int
	fmt.Sscan(port, &p)
	ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(host), Port: p}, nil)
	return &ctx
}

// TestClientIP: X-Forwarded-For is believed from trusted proxies only, and
// then only as far as the first address that is not a trusted proxy,
// counted from the right.
func TestClientIP(t *testing.T) {
	l := limits{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for _, c := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"203.0.113.7:1", nil, "203.0.113.7"},
		{"203.0.113.7:1", []string{"198.51.100.1"}, "203.0.113.7"}, // not from a proxy: ignored
		{"10.0.0.2:1", nil, "10.0.0.2"},
		{"10.0.0.2:1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"10.0.0.2:1", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},      // the client's own claim stays left
		{"10.0.0.2:1", []string{"1.2.3.4", "198.51.100.1"}, "198.51.100.1"},    // two lines: the last is the proxy's
		{"10.0.0.2:1", []string{"198.51.100.1, 10.0.0.9"}, "198.51.100.1"},     // a chain of trusted proxies
		{"10.0.0.2:1", []string{"198.51.100.1", "10.0.0.9"}, "198.51.100.1"},   // across lines
		{"10.0.0.2:1", []string{"garbage, 198.51.100.1"}, "198.51.100.1"},      // garbage left of the client
		{"10.0.0.2:1", []string{"198.51.100.1, garbage"}, "10.0.0.2"},          // garbage where the proxy writes: the proxy
		{"10.0.0.2:1", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},        // mapped IPv4
		{"10.0.0.2:1", []string{"2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2::"},     // IPv6 by its /64
		{"10.0.0.2:1", []string{"2001:db8:1:2:ffff::1"}, "2001:db8:1:2::"},     // the same /64
		{"[fd00::1]:1", []string{"198.51.100.1"}, "198.51.100.1"},              // an IPv6 proxy
		{"[2001:db8::1]:1", []string{"198.51.100.1"}, "2001:db8::"},            // an untrusted IPv6 peer
		{"10.0.0.2:1", []string{""}, "10.0.0.2"},                               // empty header
		{"10.0.0.2:1", []string{"10.0.0.3, 10.0.0.4"}, "10.0.0.3"},             // only proxies
		{"10.0.0.2:1", []string{"198.51.100.1:4711"}, "10.0.0.2"},              // a port is not an address
		{"10.0.0.2:1", []string{" 198.51.100.1 ,  10.0.0.5 "}, "198.51.100.1"}, // spaces
		{"10.0.0.2:1", []string{"1.1.1.1", "2.2.2.2", "3.3.3.3", "198.51.100.9"}, "198.51.100.9"},
	} {
		var buf [16]byte
		got := l.clientIP(ctxFrom(c.peer, c.xff...), &buf)
		want := netip.MustParseAddr(c.want)
		var wantKey []byte
		if want.Is4() {
			a := want.As4()
			wantKey = a[:]
		} else {
			a := want.As16()
			wantKey = a[:8]
		}
		if string(got) != string(wantKey) {
			t.Errorf("peer %s, X-Forwarded-For %q: key %v, want %v (%s)", c.peer, c.xff, got, wantKey, c.want)
		}
	}
}

// BenchmarkAdmitOpen is what the guard adds to an open with tokens and
// both limits on (limits high enough that nothing is refused: the cost of
// the check, over 16k users whose buckets stay cached).
func BenchmarkAdmitOpen(b *testing.B) {
	var g guard
	cfg := DefaultConfig().Security
	cfg.UserTokenSecrets = []string{string(tokenSecret)}
	cfg.RateLimitUser, cfg.RateLimitIP = 1_000_000, 1_000_000_000
	g.init(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	const n = 1 << 14
	users, toks := make([][]byte, n), make([][]byte, n)
	exp := time.Now().Add(time.Hour)
	for i := range n {
		users[i] = fmt.Appendf(nil, "user-%d", i)
		toks[i] = []byte("Bearer " + SignUserToken(tokenSecret, 42, string(users[i]), exp))
	}
	ctx := ctxFrom("203.0.113.7:4711")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ctx.Request.Header.SetBytesV("Authorization", toks[i%n])
		if !g.admitOpen(ctx, 42, users[i%n]) {
			b.Fatalf("refused: %s", ctx.Response.Body())
		}
		i++
	}
}
