// Package consumerproc is the consumer process assembled once: the consumer
// group writing claims into PostgreSQL, its /metrics and /healthz server and
// the periodic reconciler, for cmd/consumer and the tests that need a whole
// consumer.
package consumerproc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/ratelog"
	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/consumer"
	"github.com/redpacket/rain/pipeline/reconcile"
)

// MainConfig is the whole consumer process's configuration.
type MainConfig struct {
	Boot        app.Config
	Kafka       pipeline.KafkaConfig
	Consumer    consumer.Config
	MetricsAddr string
	Reconcile   reconcile.Config
}

// Bind declares every variable of the consumer, in the order
// docs/configuration.md lists them.
func (c *MainConfig) Bind(s *config.Set) {
	c.Boot.Bind(s)
	c.Kafka.Bind(s)
	c.Consumer.Bind(s)
	s.Addr(&c.MetricsAddr, "METRICS_ADDR", ":9091", "`/metrics` and `/healthz`")
	c.Reconcile.Bind(s)
	c.Consumer.StopTimeout = c.Boot.ShutdownTimeout
	c.Reconcile.Chunk = c.Consumer.BatchSize
}

// DefaultMainConfig is the configuration of a consumer with no variable set.
func DefaultMainConfig() MainConfig { return config.Default[MainConfig]() }

// Main is the consumer process: the consumer group writing claims into
// PostgreSQL, its /metrics and /healthz server, and the periodic
// reconciler, assembled once for cmd/consumer and the tests.
type Main struct {
	Config MainConfig
	Log    *slog.Logger

	DB       *postgres.Store
	Consumer *consumer.Consumer

	ln     net.Listener
	http   *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan error
}

// NewMain returns a consumer process to Open.
func NewMain(cfg MainConfig, log *slog.Logger) *Main {
	if log == nil {
		log = slog.Default()
	}
	return &Main{Config: cfg, Log: log}
}

// Open migrates and connects PostgreSQL (waiting up to BOOT_TIMEOUT),
// starts the metrics server, the consumer and, when RECONCILE_INTERVAL is
// not 0, the reconciler (which waits for Redis by itself: consuming never
// does). On an error, what was opened is closed.
func (m *Main) Open(ctx context.Context) (err error) {
	cfg := &m.Config
	boot, cancel := context.WithTimeout(ctx, cfg.Boot.BootTimeout)
	defer cancel()
	if m.DB, err = cfg.Boot.Postgres(boot, m.Log); err != nil {
		return err
	}
	if m.Consumer, err = consumer.New(cfg.Consumer, cfg.Kafka, m.DB, m.Log); err != nil {
		m.DB.Close()
		return fmt.Errorf("KAFKA_BROKERS: %w", err)
	}
	tctx, tcancel := context.WithTimeout(boot, 10*time.Second)
	if err := pipeline.EnsureTopics(tctx, m.Consumer.Client(), int32(cfg.Kafka.Partitions), cfg.Kafka.Topic, cfg.Kafka.DLQTopic); err != nil {
		// Not fatal: the client waits for the topic and reconnects.
		m.Log.Warn("kafka topics not ensured; continuing", "err", err)
	}
	tcancel()
	if m.ln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
		m.Consumer.Client().Close()
		m.DB.Close()
		return fmt.Errorf("METRICS_ADDR %s: %w", cfg.MetricsAddr, err)
	}
	m.http = consumer.NewMetricsServer(consumer.Handler(m.Consumer.Health))
	go func() {
		if err := m.http.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Log.Error("metrics server", "err", err)
		}
	}()
	m.Log.Info("consumer serving /metrics and /healthz", "addr", m.ln.Addr().String())

	run, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = stop
	if cfg.Reconcile.Interval > 0 {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.runReconciler(run)
		}()
	}
	m.done = make(chan error, 1)
	go func() { m.done <- m.Consumer.Run(run) }()
	return nil
}

// MetricsAddr is the address of /metrics and /healthz (after Open).
func (m *Main) MetricsAddr() string { return m.ln.Addr().String() }

// Done receives Run's result once the consumer has stopped.
func (m *Main) Done() <-chan error { return m.done }

// runReconciler connects to Redis (waiting for it) and runs periodic passes.
func (m *Main) runReconciler(ctx context.Context) {
	rdb, err := retry.Forever(ctx, ratelog.Logger(m.Log, ratelog.Every), "connect redis (reconciler)", func() (rueidis.Client, error) {
		return rueidis.NewClient(m.Config.Boot.RedisOptions())
	})
	if err != nil {
		return // ctx ended
	}
	defer rdb.Close()
	ks, err := retry.Forever(ctx, ratelog.Logger(m.Log, ratelog.Every), "redis acknowledgement mode (reconciler)", func() (lua.Keyspace, error) {
		return m.Config.Boot.Keys(ctx, rdb, m.Log)
	})
	if err != nil {
		return // ctx ended
	}
	reconcile.New(m.Config.Reconcile, m.DB, rdb, ks, m.Log).Run(ctx)
}

// Close stops consuming: the batch in flight is written and committed
// (within SHUTDOWN_TIMEOUT), the group left, the reconciler and the metrics
// server stopped. It returns the consumer's error, if its last batch could
// not be finished (it is redelivered).
func (m *Main) Close(ctx context.Context) error {
	var err error
	if m.cancel != nil {
		m.cancel()
		select {
		case err = <-m.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		m.wg.Wait()
	}
	if m.http != nil {
		_ = m.http.Shutdown(ctx)
	}
	if m.DB != nil {
		m.DB.Close()
	}
	return err
}
