// Package edge is the HTTP side of the api: routing, parsing, validation,
// merchant auth, campaign admin and the open hot path, on fasthttp.
package edge

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline/producer"
	"github.com/valyala/fasthttp"
)

// Config tunes the HTTP server.
type Config struct {
	// AdminTokens are the merchant bearer tokens.
	AdminTokens []string
	// MaxInflight caps concurrent opens waiting on Redis (answers from
	// memory do not count); above it opens get 503. rueidis queues at most
	// 1024 commands a connection and waits beyond that ignoring deadlines,
	// so the cap belongs here.
	MaxInflight int
	// ClaimMemo is how many claims the instance remembers to answer repeat
	// opens without Redis (about 100 bytes each); 0 turns it off.
	ClaimMemo int
	// SoldOutTTL is how long a campaign seen sold out is answered 410 from
	// memory before Redis is asked again; 0 turns it off.
	SoldOutTTL time.Duration
	// SoldOutMemory is the memory, in bytes, for the filters of sold-out
	// campaigns' claimants that answer their floods from memory (about
	// 1.8 MB per million claimants); 0 turns them off.
	SoldOutMemory int
	// ClaimBatch turns group commit on: opens of a campaign that arrive
	// while a claim call of it is in flight go out together in the next
	// call (batch.go). ClaimBatchMax is the most opens one call decides.
	ClaimBatch    bool
	ClaimBatchMax int
	// MemoryRefresh is how often the server re-reads the end and the stock
	// generation of the campaigns it answers from memory, so an end or a
	// restock made through another replica reaches its answers (refresh.go).
	MemoryRefresh time.Duration
	// RepairTimeout bounds the PostgreSQL and Redis work of a merchant
	// request or a campaign rebuild.
	RepairTimeout time.Duration
	// ReadTimeout, WriteTimeout and IdleTimeout of connections (fasthttp's
	// own are unlimited).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Security is what the server does against hostile traffic (security.go).
	Security SecurityConfig
	// Rebalance is how the rebalancer moves a bucketed campaign's stock
	// (boot's REDIS_WAIT_REPLICAS); nil: the defaults.
	Rebalance *lua.RebalanceOptions
}

// Bind declares the HTTP server's variables.
func (c *Config) Bind(s *config.Set) {
	var tokens string
	s.Secret(&tokens, "ADMIN_TOKEN", "merchant bearer tokens, comma-separated `name:secret` entries (the audit records the name; a bare secret is named `token-N`)")
	c.AdminTokens = nil
	for _, t := range strings.Split(tokens, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.AdminTokens = append(c.AdminTokens, t)
		}
	}
	checkTokens(s, c.AdminTokens)
	s.Int(&c.MaxInflight, "MAX_INFLIGHT", 4096, 1, 1<<20,
		"concurrent opens waiting on Redis (answers from memory do not count); above it, 503")
	s.Int(&c.ClaimMemo, "CLAIM_MEMO_SIZE", 262_144, 0, 1<<26,
		"claims remembered to answer repeat opens without Redis (`0` = off)")
	s.Duration(&c.SoldOutTTL, "SOLD_OUT_TTL", time.Second, 0, time.Minute,
		"how long a sold-out campaign is answered 410 from memory before asking Redis again (`0` = off)")
	s.Int(&c.SoldOutMemory, "SOLD_OUT_MEMORY", 64<<20, 0, 1<<36,
		"bytes (64 MiB) for filters of sold-out campaigns' claimants, which answer their floods 410 from memory: about 1.8 MB per million claimants, the least recently used campaign's evicted first (`0` = off)")
	s.Bool(&c.ClaimBatch, "CLAIM_BATCH", true,
		"group commit: opens of a campaign that arrive while its claim call is in flight share the next call (`false` = one call per open)")
	s.Int(&c.ClaimBatchMax, "CLAIM_BATCH_MAX", 64, 1, 1024, "most opens one claim call decides")
	s.Duration(&c.MemoryRefresh, "MEMORY_REFRESH", 250*time.Millisecond, 10*time.Millisecond, time.Second,
		"how often each api re-reads the end and stock generation of the campaigns it answers from memory: an end or added stock reaches every replica's answers within about twice this")
	c.RepairTimeout = 5 * time.Second
	c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = 10*time.Second, 10*time.Second, 15*time.Second
	c.Security.Bind(s)
}

// Health is what /readyz asks of the producer.
type Health interface{ Healthy() bool }

// Server is the api's HTTP server.
type Server struct {
	cfg      Config
	redis    rueidis.Client
	keys     lua.Keyspace
	store    *postgres.Store
	loader   *Loader
	ring     *producer.Ring
	producer Health
	log      *slog.Logger
	tokens   [][sha256.Size]byte // digests of the merchant tokens
	hot      hotCampaigns
	batch    batcher
	catalog  catalog // every campaign's window, for opens Redis cannot answer (catalog.go)
	inflight atomic.Int64
	guard    guard // against hostile traffic (security.go)
	gauges   *metrics.Set
	stock    stockGauges
	srv      *fasthttp.Server
	names    tokenNames // the merchant tokens' names (auth.go)
	refresh  refresher  // keeps answers from memory exact (refresh.go)
}

// Deps are what the server works with.
type Deps struct {
	Redis    rueidis.Client
	Keys     lua.Keyspace
	DB       *postgres.Store
	Ring     *producer.Ring
	Producer Health // nil: /readyz asks Redis only
	Log      *slog.Logger
}

// New returns a server over its dependencies.
func New(cfg Config, d Deps) *Server {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, redis: d.Redis, keys: d.Keys, store: d.DB, ring: d.Ring, producer: d.Producer, log: log,
		gauges: metrics.NewSet()}
	s.hot.maxClaims = int64(cfg.ClaimMemo)
	s.hot.soldOutMs = cfg.SoldOutTTL.Milliseconds()
	s.hot.soldOutBudget = int64(cfg.SoldOutMemory)
	s.hot.redis, s.hot.keys, s.hot.log, s.hot.rebalance = d.Redis, d.Keys, log, cfg.Rebalance
	s.stock.s = s
	s.batch = batcher{redis: d.Redis, max: cfg.ClaimBatchMax}
	if !cfg.ClaimBatch {
		s.batch.max = 1
	}
	s.loader = &Loader{Store: d.DB, Redis: d.Redis, Keys: d.Keys, Log: log}
	s.tokens = tokenDigests(cfg.AdminTokens)
	ring := d.Ring
	s.gauges.NewGauge(`rain_ring_length`, func() float64 { return float64(ring.Len()) })
	s.gauges.NewGauge(`rain_ring_capacity`, func() float64 { return float64(ring.Cap()) })
	s.gauges.NewGauge(`rain_open_inflight`, func() float64 { return float64(s.inflight.Load()) })
	s.srv = &fasthttp.Server{
		Handler:            s.Handler(),
		Name:               "rain",
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		MaxRequestBodySize: maxReadBody,
		CloseOnShutdown:    true,
		ErrorHandler:       requestError,
	}
	s.guard.init(cfg.Security, log)
	s.srv.HeaderReceived, s.srv.ExpectHandler = headerReceived, expectRefused
	s.srv.DisablePreParseMultipartForm = true
	s.srv.Logger = connLogger{s.guard.failLog}
	s.loader.KeyTTL = cfg.Security.CampaignKeyTTL
	return s
}

// Loader returns the server's campaign loader (boot-time load, tests).
func (s *Server) Loader() *Loader { return s.loader }

// Handler routes every endpoint.
func (s *Server) Handler() fasthttp.RequestHandler {
	r := router.New()
	r.POST("/campaign", instrument("POST", "/campaign", s.merchant(s.createCampaign)))
	r.GET("/campaign/{id}", instrument("GET", "/campaign/{id}", s.merchant(s.getCampaign)))
	open := instrument("POST", "/campaign/{id}/open", s.open)
	r.POST("/campaign/{id}/open", open)
	r.GET("/metrics", s.metrics)
	r.GET("/healthz", instrument("GET", "/healthz", healthz))
	r.GET("/readyz", instrument("GET", "/readyz", s.readyz))
	r.GET("/openapi.json", instrument("GET", "/openapi.json", serveOpenAPI))
	r.GET("/campaigns", instrument("GET", "/campaigns", s.merchant(s.listCampaigns)))
	r.POST("/campaign/{id}/end", instrument("POST", "/campaign/{id}/end", s.merchant(s.endCampaign)))
	r.POST("/campaign/{id}/stock", instrument("POST", "/campaign/{id}/stock", s.merchant(s.addStock)))
	r.GET("/campaign/{id}/claims", instrument("GET", "/campaign/{id}/claims", s.merchant(s.listClaims)))
	r.GET("/campaign/{id}/claims/{user_id}", instrument("GET", "/campaign/{id}/claims/{user_id}", s.merchant(s.userClaim)))
	r.NotFound = func(ctx *fasthttp.RequestCtx) { writeError(ctx, errUnknownPath) }
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, errMethod)
	}
	r.PanicHandler = s.requestPanicked
	// A JSON 404, never a redirect (built from the Host header) to a path
	// with or without a trailing slash or in another case.
	r.RedirectTrailingSlash, r.RedirectFixedPath = false, false
	r.GlobalOPTIONS = options
	// The open route skips the router: its path parameter would be boxed
	// into the request's user values, two allocations per open (pprof).
	routed := r.Handler
	return func(ctx *fasthttp.RequestCtx) {
		defer s.recoverRequest(ctx)
		if ctx.IsPost() && isOpenPath(ctx.Path()) {
			open(ctx)
			return
		}
		if !s.guard.admitRouted(ctx) {
			return
		}
		if ctx.IsHead() {
			headAsGet(ctx, routed)
			return
		}
		routed(ctx)
	}
}

// requestError answers requests fasthttp could not read: a body over the
// server's limit is 413 with the API's error body. A connection that sent
// nothing within ReadTimeout gets 408 and is closed: a 400 there would be
// an unsolicited response on an idle keep-alive connection, which a client
// could take for the answer to the request it sends next.
func requestError(ctx *fasthttp.RequestCtx, err error) {
	var te interface{ Timeout() bool } // net.Error's, and fasthttputil's pipes'
	if errors.As(err, &te) && te.Timeout() {
		ctx.SetConnectionClose()
		writeError(ctx, errTimeout)
		return
	}
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		writeError(ctx, errHeaders)
		return
	}
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(ctx, tooLarge(&ctx.Request.Header))
		return
	}
	writeError(ctx, rain.Errorf(rain.EINVALID, "malformed HTTP request"))
}

func healthz(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusOK, []byte(`{"status":"OK"}`))
}

// readyz is ready when Redis answers and the producer is delivering.
func (s *Server) readyz(ctx *fasthttp.RequestCtx) {
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// One Redis: PING. A cluster: every master answers and says
	// cluster_state:ok, and every slot has a master.
	if err := rediscluster.Ready(rctx, s.redis); err != nil {
		writeBusy(ctx, "redis not ready")
		return
	}
	if s.producer != nil && !s.producer.Healthy() {
		writeBusy(ctx, "kafka producer not delivering")
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, []byte(`{"status":"OK"}`))
}

func (s *Server) metrics(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; version=0.0.4")
	metrics.WritePrometheus(ctx, true)
	s.gauges.WritePrometheus(ctx)
	s.stock.write(ctx)
}

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.startRefresh()
	s.catalog.start(s)
	return s.srv.Serve(s.guard.conns.listener(ln))
}

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.stopRefresh()
	defer s.catalog.stop()
	return s.srv.ShutdownWithContext(ctx)
}

// DefaultConfig is the configuration of a server with no variable set.
func DefaultConfig() Config { return config.Default[Config]() }
