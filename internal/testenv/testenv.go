// Package testenv connects tests to the real Redis, PostgreSQL and Kafka
// that `make test` starts (deploy/local/up.sh). Addresses come from the same
// environment variables the services use, with the local defaults; a missing
// service fails the test with a hint, it is never skipped.
package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/migrations"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
)

const hint = " (start the local services with `make services`, or run `make test`)"

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// RedisAddr is REDIS_ADDR or 127.0.0.1:6379.
func RedisAddr() string { return env("REDIS_ADDR", "127.0.0.1:6379") }

// PostgresDSN is POSTGRES_DSN or the local test database.
func PostgresDSN() string {
	return env("POSTGRES_DSN", "postgres://rain:rain@127.0.0.1:5432/rain_test?sslmode=disable")
}

// Brokers is KAFKA_BROKERS or 127.0.0.1:9092.
func Brokers() []string { return strings.Split(env("KAFKA_BROKERS", "127.0.0.1:9092"), ",") }

// Redis returns a client of the test Redis, closed when the test ends.
func Redis(tb testing.TB) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{RedisAddr()}, DisableCache: true})
	if err != nil {
		tb.Fatalf("redis %s: %v"+hint, RedisAddr(), err)
	}
	tb.Cleanup(c.Close)
	return c
}

var migrateOnce sync.Once

// Postgres returns a pool on the migrated test database, closed when the
// test ends. Tests share the database; each works in campaigns of its own.
func Postgres(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	var err error
	migrateOnce.Do(func() {
		if err = migrations.Migrate(ctx, PostgresDSN()); err != nil {
			return
		}
		err = separateIDs(ctx)
	})
	if err != nil {
		tb.Fatalf("postgres %s: %v"+hint, PostgresDSN(), err)
	}
	db, err := pgxpool.New(ctx, PostgresDSN())
	if err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	tb.Cleanup(db.Close)
	return db
}

// PostgresHostPort is the host:port of the test database (for a Proxy).
func PostgresHostPort(tb testing.TB) string {
	cfg, err := pgxpool.ParseConfig(PostgresDSN())
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort(cfg.ConnConfig.Host, strconv.Itoa(int(cfg.ConnConfig.Port)))
}

// PostgresAt returns a pool on the test database reached through addr (a
// Proxy), with a short connect timeout so outages show quickly.
func PostgresAt(tb testing.TB, addr string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(PostgresDSN())
	if err != nil {
		tb.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = host, uint16(n)
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	db, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return db
}

// TestCampaignIDs is where the test database numbers its campaigns. Tests
// share the local Redis with `make run` and `make bench`, whose database
// counts from 1; campaign keys are named by id, so the test ids live far
// above any a developer will reach.
const TestCampaignIDs = 1_000_000_000_000

func separateIDs(ctx context.Context) error {
	db, err := pgxpool.New(ctx, PostgresDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(ctx, `SELECT setval(pg_get_serial_sequence('campaign', 'id'),
		GREATEST($1, (SELECT last_value FROM campaign_id_seq)))`, TestCampaignIDs)
	return err
}

// Topic returns the name of a new topic for this test alone (so tests never
// read each other's events), created with the given partitions.
func Topic(tb testing.TB, partitions int32) string {
	tb.Helper()
	name := fmt.Sprintf("test_%s_%d_%d", sanitize(tb.Name()), time.Now().UnixNano()%1e9, rand.IntN(1e6))
	cl := Kafka(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(ctx, cl, partitions, name, name+".dlq"); err != nil {
		tb.Fatalf("kafka %v: create topic: %v"+hint, Brokers(), err)
	}
	return name
}

// Kafka returns a plain client of the test broker, closed when the test ends.
func Kafka(tb testing.TB, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(Brokers()...)}, opts...)...)
	if err != nil {
		tb.Fatalf("kafka: %v", err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}

// RedisAt returns a client of the Redis at addr (a Proxy, say), with short
// timeouts so outages show quickly.
func RedisAt(tb testing.TB, addr string) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true,
		ConnWriteTimeout: time.Second, Dialer: net.Dialer{Timeout: time.Second}})
	if err != nil {
		tb.Fatalf("redis %s: %v", addr, err)
	}
	tb.Cleanup(c.Close)
	return c
}
