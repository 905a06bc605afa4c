package edge

import (
	"bytes"
	"hash/maphash"
	"net"
	"net/netip"
	"time"

	"github.com/VictoriaMetrics/metrics"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redpacket/rain"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"
)

// Per-user and per-IP limits: a token bucket per user id and per client
// IP (golang.org/x/time/rate), kept in size-bounded LRU caches
// (hashicorp/golang-lru), so memory stays bounded however many ids or
// addresses a flood makes up. A bucket the cache forgot starts full again:
// forgetting only ever lets a client through, so the bound costs accuracy
// under a flood of new keys, never a real user's open.

var (
	limitedUser = metrics.NewCounter(`rain_rate_limited_total{limit="user"}`)
	limitedIP   = metrics.NewCounter(`rain_rate_limited_total{limit="ip"}`)
	errLimited  = rain.Errorf(rain.ERATELIMITED, "too many requests; retry after the time Retry-After gives")
)

// limitShards spreads the buckets over caches with locks of their own.
const limitShards = 16

// keyedLimiter is one limit: a bucket per key.
type keyedLimiter struct {
	every  rate.Limit
	burst  int
	seed   maphash.Seed
	shards [limitShards]*lru.Cache[uint64, *rate.Limiter]
}

// newKeyedLimiter allows perSecond per key with bursts of burst, for up
// to size keys; nil when perSecond is 0 (off).
func newKeyedLimiter(perSecond, burst, size int) *keyedLimiter {
	if perSecond == 0 {
		return nil
	}
	l := &keyedLimiter{every: rate.Limit(perSecond), burst: max(1, burst), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i], _ = lru.New[uint64, *rate.Limiter](max(1, size/limitShards))
	}
	return l
}

// allow takes one token from key's bucket at now. Keys are hashed (a
// 64-bit keyed hash: no allocation for the key, and no chosen collisions).
func (l *keyedLimiter) allow(key []byte, now time.Time) bool {
	h := maphash.Bytes(l.seed, key)
	c := l.shards[h%limitShards]
	b, ok := c.Get(h)
	if !ok {
		b = rate.NewLimiter(l.every, l.burst)
		if prev, found, _ := c.PeekOrAdd(h, b); found {
			b = prev
		}
	}
	return b.AllowN(now, 1)
}

// limits are the server's limits and what they need to find the client.
type limits struct {
	users, ips *keyedLimiter // nil: off
	trusted    []netip.Prefix
}

// clientIP is the address of the request's client, as the key of its
// bucket: an IPv4 address, or the /64 of an IPv6 one (a host gets a whole
// /64, so one address each would let it take 2^64 buckets). The peer is
// the client unless it is a trusted proxy; then the rightmost address of
// the last X-Forwarded-For header that is not itself a trusted proxy is
// (what a client writes in the header stays to the left of what the
// proxies append, so it is never believed).
func (l *limits) clientIP(ctx *fasthttp.RequestCtx, buf *[16]byte) []byte {
	peer := addrOf(ctx.RemoteIP())
	if l.isTrusted(peer) {
		// Several header lines are one list, in order (RFC 9110, 5.3).
		var lines [maxXFFLines][]byte
		n := 0
		for k, v := range ctx.Request.Header.All() {
			if bytes.EqualFold(k, headerXFF) {
				if n == len(lines) { // keep the last ones: the proxies' own
					copy(lines[:], lines[1:])
					n--
				}
				lines[n] = v
				n++
			}
		}
	walk:
		for n > 0 {
			xff := lines[n-1]
			n--
			for len(xff) > 0 {
				i := bytes.LastIndexByte(xff, ',')
				item := bytes.TrimSpace(xff[i+1:])
				xff = xff[:max(i, 0)]
				a, ok := parseAddr(item)
				if !ok {
					break walk // a malformed entry: the proxies' own part ends here
				}
				peer = a
				if !l.isTrusted(a) {
					break walk
				}
			}
		}
	}
	if peer.Is4() {
		a := peer.As4()
		return append(buf[:0], a[:]...)
	}
	a := peer.As16()
	return append(buf[:0], a[:8]...)
}

var headerXFF = []byte("X-Forwarded-For")

// maxXFFLines is how many X-Forwarded-For lines are read, the last ones.
const maxXFFLines = 8

func (l *limits) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// parseAddr parses an address of X-Forwarded-For.
func parseAddr(b []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	return a.Unmap(), err == nil
}

// allowIP takes a token of the client IP's bucket.
func (l *limits) allowIP(ctx *fasthttp.RequestCtx, now time.Time) bool {
	if l.ips == nil {
		return true
	}
	var buf [16]byte
	if l.ips.allow(l.clientIP(ctx, &buf), now) {
		return true
	}
	limitedIP.Inc()
	return false
}

// allowUser takes a token of the user id's bucket.
func (l *limits) allowUser(user []byte, now time.Time) bool {
	if l.users == nil || l.users.allow(user, now) {
		return true
	}
	limitedUser.Inc()
	return false
}
