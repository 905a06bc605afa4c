package edge

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/ratelog"
	"github.com/valyala/fasthttp"
)

// SecurityConfig bounds what hostile traffic can make the api do (docs/security.md): who may open (signed user tokens), how often (per-user and
// per-IP limits), how many connections it may hold, and how long a
// campaign's Redis keys outlive it.
type SecurityConfig struct {
	// UserTokenSecrets are the HMAC-SHA256 keys of user tokens, the first
	// current, the others still accepted (rotation). Empty: opens carry no
	// token and the user id is the body's.
	UserTokenSecrets []string
	// UserTokenMaxTTL is the longest a token may be valid ahead of now.
	UserTokenMaxTTL time.Duration
	// RateLimitUser and RateLimitIP are the opens per second allowed to
	// one user id and to one client IP; 0 turns the limit off. Each bucket
	// holds RateLimitBurst seconds of its rate.
	RateLimitUser, RateLimitIP, RateLimitBurst int
	// RateLimitKeys is how many user ids and how many IPs the limits
	// track; the least recently seen are forgotten first.
	RateLimitKeys int
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// MaxConns caps the open connections; past it a new one gets a JSON
	// 503 and is closed.
	MaxConns int
	// CampaignKeyTTL is how long after a campaign's end its Redis keys
	// expire; 0 keeps them.
	CampaignKeyTTL time.Duration
}

// minSecretLen is the shortest user token secret accepted: 256 bits.
const minSecretLen = 32

// Bind declares the security variables.
func (c *SecurityConfig) Bind(s *config.Set) {
	s.List(&c.UserTokenSecrets, "USER_TOKEN_SECRET", "",
		"HMAC-SHA256 key(s) of user tokens, comma-separated, each at least 32 bytes: when set, every open carries `Authorization: Bearer <token>` signed by the merchant's app and the user id is the token's (401 without a valid one); the first key is current, the others are still accepted (rotation); empty = off, the body's user id is believed")
	for _, k := range c.UserTokenSecrets {
		if len(k) < minSecretLen {
			s.Errorf("USER_TOKEN_SECRET", "a key of %d bytes; each must have at least %d", len(k), minSecretLen)
		}
	}
	s.Duration(&c.UserTokenMaxTTL, "USER_TOKEN_MAX_TTL", 24*time.Hour, time.Minute, 30*24*time.Hour,
		"longest a user token may be valid ahead of now; one that expires later is refused")
	s.Int(&c.RateLimitUser, "RATE_LIMIT_USER", 0, 0, 1_000_000,
		"opens per second allowed to one user id, then 429 RATE_LIMITED (`0` = off)")
	s.Int(&c.RateLimitIP, "RATE_LIMIT_IP", 0, 0, 10_000_000,
		"requests per second allowed to one client IP on the open and merchant routes, then 429 (`0` = off)")
	s.Int(&c.RateLimitBurst, "RATE_LIMIT_BURST", 2, 1, 3600,
		"seconds of its rate each limit's bucket holds: a client may send that many at once (burst = rate × this)")
	s.Int(&c.RateLimitKeys, "RATE_LIMIT_KEYS", 100_000, 1_000, 10_000_000,
		"user ids, and IPs, each limit tracks (about 250 bytes each; the least recently seen forgotten first)")
	var proxies []string
	s.List(&proxies, "TRUSTED_PROXIES", "",
		"CIDRs (or IPs) of the load balancers whose `X-Forwarded-For` names the client IP; from anyone else the header is ignored and the peer is the client")
	c.TrustedProxies = nil
	for _, p := range proxies {
		pfx, err := parsePrefix(p)
		if err != nil {
			s.Errorf("TRUSTED_PROXIES", "%q is not a CIDR or an IP", p)
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, pfx)
	}
	s.Int(&c.MaxConns, "MAX_CONNS", 16_384, 1, 1<<20,
		"open connections (about 20 KiB each when busy); past it a new connection gets a JSON 503 and is closed")
	s.Duration(&c.CampaignKeyTTL, "CAMPAIGN_KEY_TTL", 7*24*time.Hour, 0, 10*365*24*time.Hour,
		"how long after a campaign's end (its creation, for one created already ended) its Redis keys expire (opens of it are then answered ENDED from its row); keep it above RECONCILE_LOOKBACK (`0` = never)")
}

// parsePrefix reads a CIDR, or an IP as the prefix of that one address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// guard is the server's state against hostile traffic.
type guard struct {
	cfg     SecurityConfig
	failLog *slog.Logger // warnings and errors of repeating failures, rate-limited
	now     func() time.Time
	conns   connLimit
	tokens  *userTokens // nil: off
	limits  limits
}

func (g *guard) init(cfg SecurityConfig, log *slog.Logger) {
	g.cfg = cfg
	g.failLog = ratelog.Logger(log, ratelog.Every)
	g.now = time.Now
	g.conns.max = int64(cfg.MaxConns)
	g.tokens = newUserTokens(cfg.UserTokenSecrets, cfg.UserTokenMaxTTL)
	g.limits = limits{
		users:   newKeyedLimiter(cfg.RateLimitUser, cfg.RateLimitUser*cfg.RateLimitBurst, cfg.RateLimitKeys),
		ips:     newKeyedLimiter(cfg.RateLimitIP, cfg.RateLimitIP*cfg.RateLimitBurst, cfg.RateLimitKeys),
		trusted: cfg.TrustedProxies,
	}
}

// admitOpen decides, after the body is read and before anything else, who
// is opening and whether they may: the client IP's limit, then the user
// token (when on: the body's user id must be the token's), then the user
// id's limit. It answers the request itself (429 or 401) when not.
func (g *guard) admitOpen(ctx *fasthttp.RequestCtx, campaign int64, user []byte) bool {
	if g.tokens == nil && g.limits.users == nil && g.limits.ips == nil {
		return true
	}
	now := g.now()
	if !g.limits.allowIP(ctx, now) {
		writeError(ctx, errLimited)
		return false
	}
	if g.tokens != nil {
		tok, ok := bearer(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
		if !ok || !g.tokens.verify(tok, campaign, user, now) {
			userTokensRefused.Inc()
			writeError(ctx, errUserToken)
			return false
		}
	}
	if !g.limits.allowUser(user, now) {
		writeError(ctx, errLimited)
		return false
	}
	return true
}

var pathMerchants = []byte("/merchants")

// admitRouted applies the client IP's limit to the merchant and operator routes.
func (g *guard) admitRouted(ctx *fasthttp.RequestCtx) bool {
	if g.limits.ips == nil || !bytes.HasPrefix(ctx.Path(), pathCampaign) && !bytes.HasPrefix(ctx.Path(), pathMerchants) ||
		g.limits.allowIP(ctx, g.now()) {
		return true
	}
	writeError(ctx, errLimited)
	return false
}
