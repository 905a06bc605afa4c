// Command api serves the red packet rain HTTP API: campaign admin and the
// open hot path (Redis claim.lua → ring buffer → Kafka).
//
// Configuration is by environment; see README.md ("Configuration").
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on PPROF_ADDR
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/edge"
	"github.com/redpacket/rain/migrations"
	"github.com/redpacket/rain/pipeline"
)

type config struct {
	addr            string
	pprofAddr       string
	redisAddr       string
	redisConns      int
	postgresDSN     string
	brokers         []string
	topic           string
	dlqTopic        string
	partitions      int
	ringSize        int
	shutdownTimeout time.Duration
	bootTimeout     time.Duration
	edge            edge.Config
	producer        pipeline.ProducerConfig
}

func loadConfig() (config, error) {
	var e rain.Env
	var c config
	c.addr = e.Addr("LISTEN_ADDR", ":"+e.String("PORT", "8080"))
	if e.String("PPROF_ADDR", "") != "" {
		c.pprofAddr = e.Addr("PPROF_ADDR", "")
	}
	c.redisAddr = e.Addr("REDIS_ADDR", "127.0.0.1:6379")
	c.redisConns = e.Int("REDIS_CONNS", 1, 1, 64)
	c.postgresDSN = e.String("POSTGRES_DSN", "postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable")
	c.brokers = e.List("KAFKA_BROKERS", "127.0.0.1:9092")
	c.topic = e.String("KAFKA_TOPIC", "claim_events")
	c.dlqTopic = e.String("KAFKA_DLQ_TOPIC", c.topic+".dlq")
	c.partitions = e.Int("KAFKA_PARTITIONS", 6, 1, 10_000)
	c.ringSize = e.Int("RING_SIZE", 65_536, 1, 1<<24)
	c.shutdownTimeout = e.Duration("SHUTDOWN_TIMEOUT", 15*time.Second, time.Second, 10*time.Minute)
	c.bootTimeout = e.Duration("BOOT_TIMEOUT", 60*time.Second, time.Second, 10*time.Minute)
	c.edge.AdminTokens = e.List("ADMIN_TOKEN", "")
	if len(c.edge.AdminTokens) == 0 {
		e.Required("ADMIN_TOKEN", "the merchant bearer token(s), comma-separated")
	}
	c.edge.MaxInflight = int64(e.Int("MAX_INFLIGHT", 4096, 1, 1<<20))
	// 0 in the environment turns these off (edge.Config takes negative for off).
	if c.edge.ClaimMemo = e.Int("CLAIM_MEMO_SIZE", 262_144, 0, 1<<26); c.edge.ClaimMemo == 0 {
		c.edge.ClaimMemo = -1
	}
	if c.edge.SoldOutTTL = e.Duration("SOLD_OUT_TTL", time.Second, 0, time.Minute); c.edge.SoldOutTTL == 0 {
		c.edge.SoldOutTTL = -1
	}
	c.producer = pipeline.ProducerConfig{
		Brokers:     c.brokers,
		Topic:       c.topic,
		Linger:      e.Duration("PRODUCER_LINGER", 50*time.Millisecond, 0, 10*time.Second),
		MaxBuffered: e.Int("PRODUCER_MAX_BUFFERED", 100_000, 1, 10_000_000),
	}
	return c, e.Err()
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(log)
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "api: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	if err := run(cfg, log); err != nil {
		log.Error("api stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	boot, cancel := context.WithTimeout(ctx, cfg.bootTimeout)
	defer cancel()

	db, err := migrations.Boot(boot, log, cfg.postgresDSN)
	if err != nil {
		return err
	}
	defer db.Close()

	rdb, err := rain.Retry(boot, log, "connect redis", func() (rueidis.Client, error) {
		return rueidis.NewClient(rueidis.ClientOption{
			InitAddress:       []string{cfg.redisAddr},
			DisableCache:      true,
			PipelineMultiplex: multiplex(cfg.redisConns),
			ConnWriteTimeout:  2 * time.Second,
			Dialer:            net.Dialer{Timeout: time.Second},
		})
	})
	if err != nil {
		return err
	}
	defer rdb.Close()

	ring := pipeline.NewRing(cfg.ringSize)
	producer, err := pipeline.NewProducer(cfg.producer, ring)
	if err != nil {
		return fmt.Errorf("KAFKA_BROKERS: %w", err)
	}
	tctx, tcancel := context.WithTimeout(boot, 10*time.Second)
	if err := pipeline.EnsureTopics(tctx, producer.Client(), int32(cfg.partitions), cfg.topic, cfg.dlqTopic); err != nil {
		// Not fatal: opens are served and buffered while Kafka is away.
		log.Warn("kafka topics not ensured; continuing", "err", err)
	}
	tcancel()
	go producer.Run()

	if cfg.pprofAddr != "" {
		// Profiles for `go tool pprof` under load; keep it on loopback.
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(cfg.pprofAddr, nil)) }()
		log.Info("pprof listening", "addr", cfg.pprofAddr)
	}
	srv := edge.New(cfg.edge, rdb, db, ring, producer, log)
	if err := srv.Loader().LoadLive(boot); err != nil {
		log.Warn("loading live campaigns into redis", "err", err)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("PORT/LISTEN_ADDR %s: %w", cfg.addr, err)
	}
	log.Info("api listening", "addr", ln.Addr().String(), "redis", cfg.redisAddr, "kafka", cfg.brokers, "topic", cfg.topic, "ring", cfg.ringSize)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err = <-served:
	case <-ctx.Done():
	}
	log.Info("shutting down: stop HTTP, drain ring, flush kafka")
	sctx, scancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer scancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		log.Warn("http shutdown", "err", serr)
	}
	if perr := producer.Close(sctx); perr != nil {
		log.Error("producer close: unacknowledged claims are left to the reconciler", "err", perr)
	}
	return err
}

// multiplex turns a connection count into rueidis's PipelineMultiplex
// (log2 of the count; -1 for one connection).
func multiplex(conns int) int {
	if conns <= 1 {
		return -1
	}
	n := 0
	for 1<<(n+1) <= conns {
		n++
	}
	return n
}
