// Package testenv connects tests to the real Redis, PostgreSQL and Kafka
// that `make test` starts. Addresses come from the same environment
// variables the services use, with the local defaults.
//
// Two tiers: under `go test -short` every test that needs a service skips,
// saying which (so the pure tests run anywhere in seconds); otherwise a
// missing service fails the test with a hint, it is never skipped.
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
	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/migrations"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
)

const hint = " (start the local services with `make services`, or run `make test`; `go test -short` skips the tests that need them)"

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// RedisAddr is REDIS_ADDR or 127.0.0.1:6379: one Redis, or a
// comma-separated list of Redis Cluster nodes (REDIS_MODE=cluster make test).
func RedisAddr() string { return env("REDIS_ADDR", app.DefaultRedisAddr) }

// RedisAddrs is RedisAddr as a list.
func RedisAddrs() []string {
	var out []string
	for a := range strings.SplitSeq(RedisAddr(), ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// PostgresDSN is POSTGRES_DSN or the local test database.
func PostgresDSN() string {
	return env("POSTGRES_DSN", strings.Replace(app.DefaultPostgresDSN, "/rain?", "/rain_test?", 1))
}

// Brokers is KAFKA_BROKERS or the local broker.
func Brokers() []string { return strings.Split(env("KAFKA_BROKERS", pipeline.DefaultBrokers), ",") }

// Need skips the test under -short: it needs what (a service or a tool).
func Need(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("-short: needs %s", what)
	}
}

// KeyPrefix is the Redis key prefix of the tests: apart from `make run`'s
// (rp), `make bench`'s and `make chaos`'s in a shared Redis.
const KeyPrefix = "rptest"

// Keys is the tests' Redis keyspace.
func Keys() lua.Keyspace { return lua.NewKeyspace(KeyPrefix) }

// Boot is the shared process configuration pointed at the test services.
func Boot() app.Config {
	var c app.Config
	c.Bind(config.Defaults())
	c.RedisAddr, c.PostgresDSN, c.KeyPrefix = RedisAddrs(), PostgresDSN(), KeyPrefix
	c.BootTimeout, c.ShutdownTimeout = 30*time.Second, 15*time.Second
	return c
}

// Redis returns a client of the test Redis (with the processes' options,
// app.Config.RedisOptions), closed when the test ends. It refuses, by a
// panic, a script call whose keys lie in different hash slots, on one
// Redis as on a cluster.
func Redis(tb testing.TB) rueidis.Client {
	tb.Helper()
	Need(tb, "Redis at "+RedisAddr())
	b := Boot()
	c, err := rueidis.NewClient(b.RedisOptions())
	if err != nil {
		tb.Fatalf("redis %s: %v"+hint, RedisAddr(), err)
	}
	tb.Cleanup(c.Close)
	return slotChecked{c}
}

// RedisCluster is Redis when it is a Redis Cluster (REDIS_MODE=cluster);
// otherwise the test is skipped, saying so.
func RedisCluster(tb testing.TB) rueidis.Client {
	tb.Helper()
	c := Redis(tb)
	if !rediscluster.IsCluster(c) {
		tb.Skip("needs a Redis Cluster (REDIS_MODE=cluster make test)")
	}
	return c
}

var migrateOnce sync.Once

// Postgres returns a pool on the migrated test database, closed when the
// test ends. Tests share the database; each works in campaigns of its own.
func Postgres(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	Need(tb, "PostgreSQL at "+PostgresDSN())
	ctx := context.Background()
	var err error
	migrateOnce.Do(func() {
		err = migrations.Migrate(ctx, PostgresDSN())
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

// Store is Postgres as the service's store.
func Store(tb testing.TB) *postgres.Store { return &postgres.Store{DB: Postgres(tb)} }

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
	Need(tb, "PostgreSQL")
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
	Need(tb, fmt.Sprintf("Kafka at %v", Brokers()))
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

// RedisAt returns a client of the Redis at addr (a Proxy, say), with the
// processes' options but shorter timeouts, so outages show quickly.
func RedisAt(tb testing.TB, addr string) rueidis.Client {
	tb.Helper()
	Need(tb, "Redis")
	b := Boot()
	b.RedisAddr = []string{addr}
	opt := b.RedisOptions()
	opt.ConnWriteTimeout, opt.Dialer.Timeout = time.Second, time.Second
	c, err := rueidis.NewClient(opt)
	if err != nil {
		tb.Fatalf("redis %s: %v", addr, err)
	}
	tb.Cleanup(c.Close)
	if c.Mode() == rueidis.ClientModeCluster {
		tb.Skipf("needs one Redis at %s; it is a cluster node (its clients follow CLUSTER SLOTS around a proxy)", addr)
	}
	return slotChecked{c}
}
