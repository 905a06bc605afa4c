// Package apiproc is the api process assembled once: PostgreSQL (migrated),
// Redis, the ring and its Kafka producer, the claim engine and the HTTP
// server, for cmd/api and the tests that need a whole api.
package apiproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/edge"
	"github.com/redpacket/rain/edge/engine"
	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/producer"
)

// MainConfig is the whole api process's configuration.
type MainConfig struct {
	Listen   string // host:port of the HTTP API
	Pprof    string // host:port of net/http/pprof; "" for none
	Boot     app.Config
	Kafka    pipeline.KafkaConfig
	Producer producer.Config
	Server   edge.Config
	Engine   engine.Config
}

// Bind declares every variable of the api, in the order docs/configuration.md lists them.
func (c *MainConfig) Bind(s *config.Set) {
	var port string
	s.String(&port, "PORT", "8080", "HTTP port (all interfaces); `LISTEN_ADDR` overrides it")
	s.Addr(&c.Listen, "LISTEN_ADDR", "", "HTTP `host:port` (overrides `PORT`)")
	if c.Listen == "" {
		c.Listen = ":" + port
	}
	c.Server.Bind(s)
	c.Engine.Bind(s)
	c.Boot.Bind(s)
	c.Kafka.Bind(s)
	c.Producer.Bind(s)
	s.Addr(&c.Pprof, "PPROF_ADDR", "", "serve `net/http/pprof` here (loopback only, e.g. `127.0.0.1:6060`)")
	if c.Pprof != "" && !loopbackAddr(c.Pprof) {
		s.Errorf("PPROF_ADDR", "%q is not a loopback address: profiles show the process's memory, so they are served on 127.0.0.1, ::1 or localhost only", c.Pprof)
	}
}

// loopbackAddr reports whether the host of host:port is a loopback
// address or localhost (an empty host means every interface).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// DefaultMainConfig is the configuration of an api with no variable set
// (tests set ADMIN_TOKEN and the addresses they need).
func DefaultMainConfig() MainConfig { return config.Default[MainConfig]() }

// Main is the api process: PostgreSQL (migrated), Redis, the ring and its
// Kafka producer, the claim engine and the HTTP server, assembled once for cmd/api and the
// tests that need a whole api.
type Main struct {
	Config MainConfig
	Log    *slog.Logger

	DB       *postgres.Store
	Redis    rueidis.Client
	Producer *producer.Producer
	Engine   *engine.Engine
	Server   *edge.Server

	ln     net.Listener
	served chan error
	pprof  *http.Server
}

// NewMain returns an api process to Open.
func NewMain(cfg MainConfig, log *slog.Logger) *Main {
	if log == nil {
		log = slog.Default()
	}
	return &Main{Config: cfg, Log: log}
}

// Open connects everything (waiting up to BOOT_TIMEOUT for PostgreSQL and
// Redis), loads the live campaigns Redis lacks and starts serving. On an
// error, what was opened is closed.
func (m *Main) Open(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			m.Close(context.Background())
		}
	}()
	cfg := &m.Config
	boot, cancel := context.WithTimeout(ctx, cfg.Boot.BootTimeout)
	defer cancel()
	if m.DB, err = cfg.Boot.Postgres(boot, m.Log); err != nil {
		return err
	}
	if m.Redis, err = cfg.Boot.Redis(boot, m.Log); err != nil {
		return err
	}
	if m.Producer, err = producer.New(cfg.Producer, cfg.Kafka, m.Log); err != nil {
		return fmt.Errorf("KAFKA_BROKERS: %w", err)
	}
	tctx, tcancel := context.WithTimeout(boot, 10*time.Second)
	if err := pipeline.EnsureTopics(tctx, m.Producer.Client(), int32(cfg.Kafka.Partitions), cfg.Kafka.Topic, cfg.Kafka.DLQTopic); err != nil {
		// Not fatal: opens are served and buffered while Kafka is away.
		m.Log.Warn("kafka topics not ensured; continuing", "err", err)
	}
	tcancel()
	go m.Producer.Run()

	ks, err := cfg.Boot.Keys(boot, m.Redis, m.Log)
	if err != nil {
		return err
	}
	m.Engine = engine.New(cfg.Engine, engine.Deps{Redis: m.Redis, Keys: ks, Store: m.DB,
		Ring: m.Producer.Ring(), Log: m.Log})
	if err := m.Engine.Loader().LoadLive(boot); err != nil {
		m.Log.Warn("loading live campaigns into redis", "err", err)
	}
	m.Engine.Start()
	m.Server = edge.New(cfg.Server, edge.Deps{Engine: m.Engine, DB: m.DB, Producer: m.Producer, Log: m.Log})
	m.Server.Start() // the merchant tokens, read now and kept fresh
	if cfg.Pprof != "" {
		if err := m.servePprof(cfg.Pprof); err != nil {
			return err
		}
	}
	if m.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("PORT/LISTEN_ADDR %s: %w", cfg.Listen, err)
	}
	m.served = make(chan error, 1)
	go func() { m.served <- m.Server.Serve(m.ln) }()
	m.Log.Info("api listening", "addr", m.Addr(), "redis", cfg.Boot.RedisAddr, "key_prefix", cfg.Boot.KeyPrefix,
		"kafka", cfg.Kafka.Brokers, "topic", cfg.Kafka.Topic, "ring", cfg.Producer.RingSize)
	return nil
}

// servePprof serves profiles for `go tool pprof` on a loopback address.
func (m *Main) servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("PPROF_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	// A CPU profile or trace takes ?seconds= (30 by default) to write.
	m.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() { _ = m.pprof.Serve(ln) }()
	m.Log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the API listens on (after Open).
func (m *Main) Addr() string { return m.ln.Addr().String() }

// Done is closed, with the error, if the HTTP server stops by itself.
func (m *Main) Done() <-chan error { return m.served }

// Close stops the process in order: stop HTTP (requests in flight finish),
// drain the ring into Kafka and flush it, then close the clients, all
// within ctx. Claims Kafka did not acknowledge by then are left to the
// reconciler (they are in Redis).
func (m *Main) Close(ctx context.Context) error {
	var errs []error
	if m.pprof != nil {
		_ = m.pprof.Close()
	}
	if m.Server != nil { // also when it never served: its token refresh stops
		if err := m.Server.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
	}
	if m.Engine != nil {
		m.Engine.Stop()
	}
	if m.Producer != nil {
		if err := m.Producer.Close(ctx); err != nil {
			m.Log.Error("producer close: unacknowledged claims are left to the reconciler", "err", err)
			errs = append(errs, err)
		}
	}
	if m.Redis != nil {
		m.Redis.Close()
	}
	if m.DB != nil {
		m.DB.Close()
	}
	return errors.Join(errs...)
}
