// Command consumer writes the claim events of Kafka into PostgreSQL with
// exactly-once effect, dead-letters what cannot be written, and reconciles
// the claims Redis holds with claim_log.
//
//	consumer                                   consume; reconcile every RECONCILE_INTERVAL
//	consumer reconcile [-campaign ID] [-grace D] [-timeout D]
//	                                           one full reconcile now; exit status 1 if it
//	                                           could not finish or a claim cannot be written
//
// Configuration is by environment (invalid values fail at start, naming the
// variable; exit status 2):
//
//	POSTGRES_DSN             postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable
//	REDIS_ADDR               127.0.0.1:6379 (the reconciler only; consuming never waits for Redis)
//	KAFKA_BROKERS            127.0.0.1:9092, comma-separated
//	KAFKA_TOPIC              claim_events
//	KAFKA_DLQ_TOPIC          KAFKA_TOPIC + ".dlq"
//	KAFKA_GROUP              consumer
//	KAFKA_PARTITIONS         6: partitions of the topics created at start if missing
//	KAFKA_SESSION_TIMEOUT    15s: a replica silent this long loses its partitions
//	KAFKA_REBALANCE_TIMEOUT  60s: how long a rebalance waits for the batch in flight
//	METRICS_ADDR             :9091: /metrics and /healthz
//	BATCH_SIZE               5000: most records per PostgreSQL transaction
//	BATCH_WAIT               50ms: how long a batch not full waits for more records
//	PG_RETRY_MAX             5s: backoff cap while PostgreSQL writes fail
//	SHUTDOWN_TIMEOUT         15s: to finish and commit the batch in flight after SIGTERM
//	BOOT_TIMEOUT             60s: to reach PostgreSQL and migrate at start
//	RECONCILE_INTERVAL       30s between reconciler passes; 0 turns the periodic pass off
//	RECONCILE_LOOKBACK       24h: campaigns ended longer ago are not reconciled
//	RECONCILE_GRACE          30s: periodic passes leave younger claims to the pipeline; 0: none
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/migrations"
	"github.com/redpacket/rain/pipeline"
)

type config struct {
	postgresDSN     string
	redisAddr       string
	metricsAddr     string
	partitions      int
	shutdownTimeout time.Duration
	bootTimeout     time.Duration
	reconcileEvery  time.Duration // 0: no periodic reconciler
	consumer        pipeline.ConsumerConfig
	reconciler      pipeline.ReconcilerConfig
}

// loadConfig reads the environment through lookup (os.LookupEnv). Every
// invalid variable is reported, by name, in the error.
func loadConfig(lookup func(string) (string, bool)) (config, error) {
	e := rain.Env{Lookup: lookup}
	var c config
	var errs []error
	c.postgresDSN = e.String("POSTGRES_DSN", "postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable")
	if _, err := pgxpool.ParseConfig(c.postgresDSN); err != nil {
		errs = append(errs, fmt.Errorf("POSTGRES_DSN: want a PostgreSQL URL or DSN: %v", err))
	}
	c.redisAddr = e.Addr("REDIS_ADDR", "127.0.0.1:6379")
	c.metricsAddr = e.Addr("METRICS_ADDR", ":9091")
	c.partitions = e.Int("KAFKA_PARTITIONS", 6, 1, 10_000)
	c.shutdownTimeout = e.Duration("SHUTDOWN_TIMEOUT", 15*time.Second, time.Second, 10*time.Minute)
	c.bootTimeout = e.Duration("BOOT_TIMEOUT", 60*time.Second, time.Second, 10*time.Minute)
	topic := e.String("KAFKA_TOPIC", "claim_events")
	c.consumer = pipeline.ConsumerConfig{
		Brokers:          e.List("KAFKA_BROKERS", "127.0.0.1:9092"),
		Topic:            topic,
		DLQTopic:         e.String("KAFKA_DLQ_TOPIC", topic+".dlq"),
		Group:            e.String("KAFKA_GROUP", "consumer"),
		BatchSize:        e.Int("BATCH_SIZE", 5000, 1, 100_000),
		BatchWait:        e.Duration("BATCH_WAIT", 50*time.Millisecond, 0, 10*time.Second),
		SessionTimeout:   e.Duration("KAFKA_SESSION_TIMEOUT", 15*time.Second, time.Second, 30*time.Minute),
		RebalanceTimeout: e.Duration("KAFKA_REBALANCE_TIMEOUT", 60*time.Second, time.Second, 30*time.Minute),
		RetryMax:         e.Duration("PG_RETRY_MAX", 5*time.Second, 100*time.Millisecond, 5*time.Minute),
	}
	if len(c.consumer.Brokers) == 0 {
		e.Required("KAFKA_BROKERS", "comma-separated host:port list")
	}
	if c.consumer.DLQTopic == c.consumer.Topic {
		errs = append(errs, fmt.Errorf("KAFKA_DLQ_TOPIC=%q: want a topic other than KAFKA_TOPIC", c.consumer.DLQTopic))
	}
	c.consumer.StopTimeout = c.shutdownTimeout
	c.reconcileEvery = e.Duration("RECONCILE_INTERVAL", 30*time.Second, 0, 24*time.Hour)
	grace := e.Duration("RECONCILE_GRACE", 30*time.Second, 0, 24*time.Hour)
	if grace == 0 {
		grace = -1 // none (ReconcilerConfig reads 0 as its default)
	}
	c.reconciler = pipeline.ReconcilerConfig{
		Interval: c.reconcileEvery,
		Lookback: e.Duration("RECONCILE_LOOKBACK", 24*time.Hour, time.Minute, 24*365*time.Hour),
		Grace:    grace,
		Chunk:    c.consumer.BatchSize,
	}
	return c, errors.Join(append([]error{e.Err()}, errs...)...)
}

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	slog.SetDefault(log)
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "consumer: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	cfg.consumer.Logger, cfg.reconciler.Logger = log, log
	args := os.Args[1:]
	switch {
	case len(args) > 0 && args[0] == "reconcile":
		os.Exit(reconcile(cfg, args[1:], os.Stdout, log))
	case len(args) > 0:
		fmt.Fprintf(os.Stderr, "usage: consumer [reconcile [-campaign ID] [-grace D]]\n")
		os.Exit(2)
	}
	if err := run(cfg, log); err != nil {
		log.Error("consumer stopped", "err", err)
		os.Exit(1)
	}
}

// run consumes until SIGINT/SIGTERM, then finishes the batch in flight,
// commits it and stops.
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

	consumer, err := pipeline.NewConsumer(cfg.consumer, db)
	if err != nil {
		return fmt.Errorf("KAFKA_BROKERS: %w", err)
	}
	tctx, tcancel := context.WithTimeout(boot, 10*time.Second)
	if err := pipeline.EnsureTopics(tctx, consumer.Client(), int32(cfg.partitions), cfg.consumer.Topic, cfg.consumer.DLQTopic); err != nil {
		// Not fatal: the client waits for the topic and reconnects.
		log.Warn("kafka topics not ensured; continuing", "err", err)
	}
	tcancel()

	ln, err := net.Listen("tcp", cfg.metricsAddr)
	if err != nil {
		return fmt.Errorf("METRICS_ADDR %s: %w", cfg.metricsAddr, err)
	}
	srv := &http.Server{Handler: handler(consumer.Health), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("consumer serving /metrics and /healthz", "addr", ln.Addr().String())

	var wg sync.WaitGroup
	if cfg.reconcileEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runReconciler(ctx, cfg, db, log)
		}()
	}

	err = consumer.Run(ctx)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	return err
}

// runReconciler connects to Redis (waiting for it: consuming does not need
// Redis, so the consumer never waits on it) and runs periodic passes.
func runReconciler(ctx context.Context, cfg config, db *pgxpool.Pool, log *slog.Logger) {
	rdb, err := rain.Retry(ctx, log, "connect redis (reconciler)", func() (rueidis.Client, error) {
		return newRedis(cfg.redisAddr)
	})
	if err != nil {
		return // ctx ended
	}
	defer rdb.Close()
	pipeline.NewReconciler(cfg.reconciler, db, rdb).Run(ctx)
}

func newRedis(addr string) (rueidis.Client, error) {
	return rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      []string{addr},
		DisableCache:     true,
		ConnWriteTimeout: 5 * time.Second,
		Dialer:           net.Dialer{Timeout: 2 * time.Second},
	})
}

// handler serves /metrics (Prometheus text) and /healthz: 200
// {"status":"OK"}, or 503 {"status":"DEGRADED","error":"..."} while health
// reports a failure (PostgreSQL writes failing, Kafka fetches failing).
func handler(health func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metrics.WritePrometheus(w, true)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			}{"DEGRADED", err.Error()})
			return
		}
		_, _ = io.WriteString(w, `{"status":"OK"}`+"\n")
	})
	return mux
}

// reconcile is `consumer reconcile`: one full pass now (every active
// campaign, or -campaign), waiting for a periodic pass of another process
// to finish first. It prints the report as JSON on out and returns the exit
// status: 0 done, 1 could not finish (or claims that cannot be written), 2
// bad usage.
func reconcile(cfg config, args []string, out io.Writer, log *slog.Logger) int {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	campaign := fs.Int64("campaign", 0, "reconcile this campaign only (default: every campaign active within RECONCILE_LOOKBACK)")
	grace := fs.Duration("grace", 0, "leave alone the claims younger than this (they may still be on their way through Kafka)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *campaign < 0 || *grace < 0 {
		fmt.Fprintf(os.Stderr, "usage: consumer reconcile [-campaign ID] [-grace D] [-timeout D]\n")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	db, err := pgxpool.New(ctx, cfg.postgresDSN)
	if err != nil {
		log.Error("reconcile: POSTGRES_DSN", "err", err)
		return 1
	}
	defer db.Close()
	rdb, err := newRedis(cfg.redisAddr)
	if err != nil {
		log.Error("reconcile: redis", "addr", cfg.redisAddr, "err", err)
		return 1
	}
	defer rdb.Close()

	rec := pipeline.NewReconciler(cfg.reconciler, db, rdb)
	var ids []int64
	if *campaign > 0 {
		ids = []int64{*campaign}
	}
	var rep pipeline.ReconcileReport
	_, err = rec.WithLock(ctx, true, func(ctx context.Context) error {
		var err error
		rep, err = rec.Reconcile(ctx, pipeline.ReconcileOptions{Grace: *grace, Full: true}, ids...)
		return err
	})
	_ = json.NewEncoder(out).Encode(rep)
	switch {
	case err != nil:
		log.Error("reconcile could not finish", "err", err, "repaired", rep.Repaired)
		return 1
	case rep.Rejected > 0:
		log.Error("reconcile finished, but claims in redis cannot be written (see the logs above)", "rejected", rep.Rejected)
		return 1
	}
	log.Info("reconcile done", "campaigns", rep.Campaigns, "scanned", rep.Scanned, "repaired", rep.Repaired, "young", rep.Young)
	return 0
}
