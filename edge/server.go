// Package edge is the HTTP side of the api, on fasthttp: routing, parsing
// and validation (internal/strictjson), merchant auth, limits against
// hostile clients, the one mapping of errors to statuses (http.go), the
// merchant routes and /openapi.json. Every decision about a campaign's
// packets is the claim engine's (edge/engine): edge neither speaks Redis
// nor knows the key scheme.
package edge

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/fasthttp/router"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/edge/engine"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/valyala/fasthttp"
)

// Config tunes the HTTP server.
type Config struct {
	// AdminTokens are the operator's bearer tokens (every campaign, every
	// merchant); merchants' tokens live in PostgreSQL (tokens.go).
	AdminTokens []string
	// Tokens tunes the merchant tokens in memory.
	Tokens TokenConfig
	// RequestTimeout bounds the PostgreSQL and Redis work of a merchant
	// request.
	RequestTimeout time.Duration
	// LiveStreamMax is how long one live view stream stays open before it
	// ends with event "end" and the client reconnects.
	LiveStreamMax time.Duration
	// ReadTimeout, WriteTimeout and IdleTimeout of connections (fasthttp's
	// own are unlimited).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Security is what the server does against hostile traffic (security.go).
	Security SecurityConfig
}

// Bind declares the HTTP server's variables.
func (c *Config) Bind(s *config.Set) {
	var tokens string
	s.Secret(&tokens, "ADMIN_TOKEN", "the operator's bearer tokens (every campaign, and the merchants' routes), comma-separated `name:secret` entries (the audit records the name; a bare secret is named `token-N`); merchants get theirs from `POST /merchants`")
	c.AdminTokens = nil
	for _, t := range strings.Split(tokens, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.AdminTokens = append(c.AdminTokens, t)
		}
	}
	checkTokens(s, c.AdminTokens)
	c.Tokens.Bind(s)
	s.Duration(&c.LiveStreamMax, "LIVE_STREAM_MAX", 30*time.Minute, time.Second, 24*time.Hour,
		"how long one live view stream (`GET /campaign/{id}/live`) stays open; then it ends with event `end` (BUSY) and the console reconnects: a forgotten tab holds a connection this long at most, and viewers spread over the replicas again")
	c.RequestTimeout = 5 * time.Second
	c.ReadTimeout, c.WriteTimeout, c.IdleTimeout = 10*time.Second, 10*time.Second, 15*time.Second
	c.Security.Bind(s)
}

// DefaultConfig is the configuration of a server with no variable set.
func DefaultConfig() Config { return config.Default[Config]() }

// Health is what /readyz asks of the producer.
type Health interface{ Healthy() bool }

// Server is the api's HTTP server.
type Server struct {
	cfg       Config
	eng       *engine.Engine
	store     *postgres.Store
	producer  Health
	log       *slog.Logger
	tokens    [][sha256.Size]byte // digests of the operator's tokens (ADMIN_TOKEN)
	guard     guard               // against hostile traffic (security.go)
	srv       *fasthttp.Server
	names     tokenNames // the operator's tokens' names (auth.go)
	merchants tokenCache // the merchants' tokens, from PostgreSQL (tokens.go)
	live      liveHub    // the live views' pollers (live.go)
}

// Deps are what the server works with.
type Deps struct {
	Engine   *engine.Engine  // the claim engine: opens and merchant actions
	DB       *postgres.Store // reads of the merchant routes (lists, claims, history)
	Producer Health          // nil: /readyz asks Redis only
	Log      *slog.Logger
}

// New returns a server over its dependencies.
func New(cfg Config, d Deps) *Server {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Server{cfg: cfg, eng: d.Engine, store: d.DB, producer: d.Producer, log: log}
	s.tokens = tokenDigests(cfg.AdminTokens)
	s.merchants.init(cfg.Tokens, d.DB, log)
	s.live.init()
	s.srv = &fasthttp.Server{
		Handler:            s.Handler(),
		Name:               "rain",
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		MaxRequestBodySize: maxReadBody,
		ReadBufferSize:     readBuffer,
		CloseOnShutdown:    true,
		ErrorHandler:       requestError,
	}
	s.guard.init(cfg.Security, log)
	s.srv.HeaderReceived, s.srv.ExpectHandler = headerReceived, expectRefused
	s.srv.DisablePreParseMultipartForm = true
	s.srv.Logger = connLogger{s.guard.failLog}
	return s
}

// Handler routes every endpoint.
func (s *Server) Handler() fasthttp.RequestHandler {
	r := router.New()
	r.POST("/campaign", instrument("POST", "/campaign", s.merchantWrite(s.createCampaign)))
	r.GET("/campaign/{id}", instrument("GET", "/campaign/{id}", s.merchant(s.getCampaign)))
	open := instrument("POST", "/campaign/{id}/open", s.open)
	r.POST("/campaign/{id}/open", open)
	r.GET("/metrics", s.metrics)
	r.GET("/healthz", instrument("GET", "/healthz", healthz))
	r.GET("/readyz", instrument("GET", "/readyz", s.readyz))
	r.GET("/openapi.json", instrument("GET", "/openapi.json", serveOpenAPI))
	r.GET("/campaigns", instrument("GET", "/campaigns", s.merchant(s.listCampaigns)))
	r.POST("/campaign/{id}/end", instrument("POST", "/campaign/{id}/end", s.merchantWrite(s.endCampaign)))
	r.POST("/campaign/{id}/stock", instrument("POST", "/campaign/{id}/stock", s.merchantWrite(s.addStock)))
	r.GET("/campaign/{id}/claims", instrument("GET", "/campaign/{id}/claims", s.merchant(s.listClaims)))
	r.GET("/campaign/{id}/claims/{user_id}", instrument("GET", "/campaign/{id}/claims/{user_id}", s.merchant(s.userClaim)))
	r.GET("/campaign/{id}/live", instrument("GET", "/campaign/{id}/live", s.merchant(s.liveCampaign)))
	// The merchant console (console.go).
	r.GET("/console", instrument("GET", "/console", serveConsole))
	r.GET("/console/assets/{version}/{file}", instrument("GET", "/console/assets", serveConsoleAsset))
	// The operator's (operator.go).
	r.POST("/merchants", instrument("POST", "/merchants", s.operator(s.createMerchant)))
	r.GET("/merchants", instrument("GET", "/merchants", s.operator(s.listMerchants)))
	r.POST("/merchants/{name}/tokens", instrument("POST", "/merchants/{name}/tokens", s.operator(s.addToken)))
	r.DELETE("/merchants/{name}/tokens/{token_id}", instrument("DELETE", "/merchants/{name}/tokens/{token_id}", s.operator(s.revokeToken)))
	r.GET("/merchants/{name}/actions", instrument("GET", "/merchants/{name}/actions", s.operator(s.merchantActions)))
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
// route's limit is 413, a request line over the read buffer 414, other
// headers over it 431, with the API's error body. A connection that sent
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
	// The client may still be sending: what it sends is read and
	// discarded before the close, so it can read this answer (conns.go).
	c := lingerOnClose(ctx)
	var small *fasthttp.ErrSmallBuffer
	if errors.As(err, &small) {
		// The read buffer is full and holds the start of the request: with
		// no line feed in it, the request line alone is over the limit.
		if c != nil && c.sinceLF >= readBuffer {
			writeError(ctx, errURI)
			return
		}
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
	if err := s.eng.Ready(rctx); err != nil {
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
	s.eng.WriteMetrics(ctx)
	metrics.WriteGaugeUint64(ctx, "rain_merchant_tokens", uint64(s.merchants.size()))
	metrics.WriteGaugeFloat64(ctx, "rain_merchant_tokens_age_seconds", s.merchants.ageSeconds())
	if s.live.gauge != nil {
		s.live.gauge.WritePrometheus(ctx)
	}
}

// Start reads the merchant tokens (waiting up to RequestTimeout) and keeps
// them fresh until Shutdown. Until a read succeeds merchant tokens are
// answered 503; ADMIN_TOKEN works from the start.
func (s *Server) Start() { s.merchants.start(s.cfg.RequestTimeout) }

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(s.guard.conns.listener(ln))
}

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	s.live.shutdown() // live streams end, so their connections can close
	err := s.srv.ShutdownWithContext(ctx)
	s.merchants.close()
	return err
}
