package edge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/edge/engine"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
)

// Merchant tokens (docs/security.md, "Merchants and operators"). An
// operator makes them over HTTP (operator.go); PostgreSQL keeps the SHA-256
// of each secret (merchant_token), never the secret. Every api holds the
// active ones in memory, by digest, and reads them again when their version
// moves: one tiny query every TokenRefresh, so a token added or revoked
// through any replica takes effect on every replica within about
// TokenRefresh, with no restart, and checking a token never touches
// PostgreSQL.
//
// Why SHA-256 and not a slow password hash: a secret is 32 random bytes
// (256 bits) from crypto/rand, not something a person chose, so no
// dictionary or brute force can find it from its digest; a slow hash would
// only make every request pay for nothing.

// tokenPrefix starts every merchant token: it says what the secret is (to
// people and to secret scanners) and keeps it apart from ADMIN_TOKEN entries.
const tokenPrefix = "rpm_"

// newTokenSecret returns a new merchant token and the digest stored for it.
func newTokenSecret() (string, [sha256.Size]byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return secret, sha256.Sum256([]byte(secret))
}

// TokenConfig tunes the merchant tokens in memory.
type TokenConfig struct {
	// Refresh is how often each api asks PostgreSQL whether the tokens
	// changed: the bound, with a query's time, on how long an added or
	// revoked token takes to reach every replica.
	Refresh time.Duration
	// MaxStale is how long the tokens in memory are trusted without a
	// successful read; past it merchant tokens are answered 503 (a
	// revocation might be unseen), ADMIN_TOKEN entries keep working.
	MaxStale time.Duration
}

// Bind declares the token variables.
func (c *TokenConfig) Bind(s *config.Set) {
	s.Duration(&c.Refresh, "MERCHANT_TOKEN_REFRESH", 500*time.Millisecond, 50*time.Millisecond, 10*time.Second,
		"how often each api reads the merchant tokens' version from PostgreSQL (one small query; the tokens themselves only when it moved): a token added or revoked on any replica works, or stops, on every replica within about this")
	s.Duration(&c.MaxStale, "MERCHANT_TOKEN_MAX_STALE", 10*time.Second, time.Second, 10*time.Minute,
		"how long merchant tokens are checked from memory while PostgreSQL cannot be read; past it merchant tokens get 503 BUSY until a read succeeds (a revocation might be unseen); `ADMIN_TOKEN` keeps working")
	if c.MaxStale < 2*c.Refresh {
		s.Errorf("MERCHANT_TOKEN_MAX_STALE", "%s is under twice MERCHANT_TOKEN_REFRESH (%s): one slow read would refuse every merchant", c.MaxStale, c.Refresh)
	}
}

var (
	tokenReadErrors = metrics.NewCounter(`rain_merchant_token_read_errors_total`)
	tokenChanges    = metrics.NewCounter(`rain_merchant_token_reloads_total`)
	// authRefused counts refused tokens by the answer's code.
	authRefused = map[string]*metrics.Counter{
		rain.EUNAUTHORIZED: metrics.NewCounter(`rain_auth_refused_total{reason="unauthorized"}`),
		rain.EFORBIDDEN:    metrics.NewCounter(`rain_auth_refused_total{reason="forbidden"}`),
		rain.EBUSY:         metrics.NewCounter(`rain_auth_refused_total{reason="tokens_stale"}`),
	}
)

// tokenSet is one version of the active merchant tokens, never changed
// once published.
type tokenSet struct {
	version int64
	byHash  map[[sha256.Size]byte]postgres.ActiveToken
}

// tokenCache holds the active merchant tokens of PostgreSQL in memory.
type tokenCache struct {
	cfg   TokenConfig
	store *postgres.Store
	log   *slog.Logger
	set   atomic.Pointer[tokenSet]
	read  atomic.Int64 // unix ns of the last successful read; 0: never
	now   func() time.Time

	firstRead sync.Once
	loop      engine.Loop

	mu      sync.Mutex // one refresh at a time (the loop's, and one after a change)
	failing bool       // the last read failed (logged once per run of failures)
}

func (c *tokenCache) init(cfg TokenConfig, store *postgres.Store, log *slog.Logger) {
	c.cfg, c.store, c.log, c.now = cfg, store, log, time.Now
}

// lookup returns the active merchant token whose secret has digest d: a
// rain.EUNAUTHORIZED error when there is none, rain.EBUSY when the set in
// memory is older than MaxStale (or was never read).
//
// The map is keyed by the digest, not the secret: how long a lookup takes
// can depend only on the digest of what the caller sent, which the caller
// knows already, and learning anything of a stored digest would not give
// its secret. The digests are then compared again in constant time.
func (c *tokenCache) lookup(d [sha256.Size]byte) (postgres.ActiveToken, error) {
	set := c.set.Load()
	read := c.read.Load()
	if set == nil || read == 0 || c.now().Sub(time.Unix(0, read)) > c.cfg.MaxStale {
		return postgres.ActiveToken{}, errTokensStale
	}
	t, ok := set.byHash[d]
	if !ok || subtle.ConstantTimeCompare(t.Hash[:], d[:]) != 1 {
		return postgres.ActiveToken{}, errUnauthorized
	}
	return t, nil
}

// refresh reads the tokens' version, and the tokens when it moved.
func (c *tokenCache) refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var known int64
	if set := c.set.Load(); set != nil {
		known = set.version
	}
	version, tokens, changed, err := c.store.ActiveTokens(ctx, known)
	if err != nil {
		tokenReadErrors.Inc()
		if !c.failing {
			c.log.Warn("merchant tokens: read failed; the last set read stays in use up to MERCHANT_TOKEN_MAX_STALE", "err", err)
		}
		c.failing = true
		return err
	}
	if c.failing {
		c.log.Info("merchant tokens: read again")
	}
	c.failing = false
	if changed {
		set := &tokenSet{version: version, byHash: make(map[[sha256.Size]byte]postgres.ActiveToken, len(tokens))}
		for _, t := range tokens {
			set.byHash[t.Hash] = t
		}
		c.set.Store(set)
		tokenChanges.Inc()
	}
	c.read.Store(c.now().UnixNano())
	return nil
}

// start reads the tokens once (waiting up to timeout), then every Refresh
// until close.
func (c *tokenCache) start(timeout time.Duration) {
	if c.store == nil { // no PostgreSQL (tests of the HTTP side alone): ADMIN_TOKEN only
		return
	}
	c.firstRead.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_ = c.refresh(ctx)
		cancel()
	})
	c.loop.Start(c.cfg.Refresh, false, c.log, "merchant tokens", func() {
		// A read may take up to MaxStale: past that the set is refused anyway.
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.MaxStale)
		defer cancel()
		_ = c.refresh(ctx)
	})
}

// close stops the loop (if it was started) and waits for it.
func (c *tokenCache) close() { c.loop.Stop() }

// size is the number of active merchant tokens in memory.
func (c *tokenCache) size() int {
	if set := c.set.Load(); set != nil {
		return len(set.byHash)
	}
	return 0
}

// ageSeconds is the time since the last successful read, in seconds
// (+Inf: never read).
func (c *tokenCache) ageSeconds() float64 {
	read := c.read.Load()
	if read == 0 || c.now == nil {
		return math.Inf(1)
	}
	return c.now().Sub(time.Unix(0, read)).Seconds()
}
