// Package app is the process wiring both binaries share: read the
// configuration (answering -help), log as JSON, stop on SIGINT/SIGTERM,
// and connect to PostgreSQL (migrating it) and Redis with the same options.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/lua"
)

// The local services' addresses: the defaults of REDIS_ADDR and
// POSTGRES_DSN, written here once and read by the development tooling
// (internal/dev), the benchmark and the fault suite. KAFKA_BROKERS's is
// pipeline.DefaultBrokers.
const (
	DefaultRedisAddr   = "127.0.0.1:6379"
	DefaultPostgresDSN = "postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable"
)

// Config is what every process needs to reach its stores and to start and
// stop.
type Config struct {
	// RedisAddr is one Redis, or seed nodes of a Redis Cluster (host:port
	// each); the client finds out which it talks to.
	RedisAddr  []string
	RedisConns int
	// RedisAck is what a write that records a claim or moves stock waits
	// for (lua.Ack): AckMaster, AckReplica, or AckAuto (replica when every
	// master has a replica at start). RedisAckTimeout bounds the wait.
	RedisAck        string
	RedisAckTimeout time.Duration
	KeyPrefix       string
	PostgresDSN     string
	BootTimeout     time.Duration
	ShutdownTimeout time.Duration
}

// The values of REDIS_ACK.
const (
	AckMaster  = "master"
	AckReplica = "replica"
	AckAuto    = "auto"
)

// Bind declares the variables shared by the api and the consumer.
func (c *Config) Bind(s *config.Set) {
	s.List(&c.RedisAddr, "REDIS_ADDR", DefaultRedisAddr,
		"Redis: one host:port, or a comma-separated list of Redis Cluster nodes (any few; the client learns the rest)")
	for _, a := range c.RedisAddr {
		if err := checkAddr(a); err != nil {
			s.Errorf("REDIS_ADDR", "%q: want host:port with a port in [1, 65535]", a)
		}
	}
	s.Int(&c.RedisConns, "REDIS_CONNS", 1, 1, 64,
		"Redis connections (rueidis pipelines every command over them; one was fastest on 2 cores)")
	s.String(&c.RedisAck, "REDIS_ACK", AckAuto,
		"what an OK waits for: `master` (the claim is in the master's memory), `replica` (also on a replica: WAIT on the claim's connection; a wait past REDIS_ACK_TIMEOUT answers 503 and the claim stands), or `auto` (replica when every master has a replica at start, else master). The same for every write that moves stock (docs/durability.md)")
	if c.RedisAck != AckMaster && c.RedisAck != AckReplica && c.RedisAck != AckAuto {
		s.Errorf("REDIS_ACK", "%q: want master, replica or auto", c.RedisAck)
	}
	s.Duration(&c.RedisAckTimeout, "REDIS_ACK_TIMEOUT", 50*time.Millisecond, time.Millisecond, 10*time.Second,
		"replica mode: how long a write waits for its replica (WAIT's timeout) before it is answered 503")
	s.String(&c.KeyPrefix, "REDIS_KEY_PREFIX", lua.DefaultPrefix, "prefix of every Redis key (`<prefix>:{<campaign id>}:…`)")
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		// A brace would move the hash tag: every campaign on one cluster slot.
		s.Errorf("REDIS_KEY_PREFIX", "%q: no { or } (the campaign id is the key's hash tag)", c.KeyPrefix)
	}
	s.String(&c.PostgresDSN, "POSTGRES_DSN", DefaultPostgresDSN, "PostgreSQL")
	s.Duration(&c.BootTimeout, "BOOT_TIMEOUT", 60*time.Second, time.Second, 10*time.Minute,
		"how long to wait for PostgreSQL (and the migrations) at start")
	s.Duration(&c.ShutdownTimeout, "SHUTDOWN_TIMEOUT", 15*time.Second, time.Second, 10*time.Minute,
		"time to finish the work in flight after SIGTERM")
}

// Keys is the Redis keyspace of the configured prefix, its writes waiting
// for what REDIS_ACK says; auto asks r whether every master has a replica.
func (c *Config) Keys(ctx context.Context, r rueidis.Client, log *slog.Logger) (lua.Keyspace, error) {
	ks := lua.NewKeyspace(c.KeyPrefix)
	mode := c.RedisAck
	if mode == AckAuto {
		replicated, err := rediscluster.Replicated(ctx, r)
		if err != nil {
			return ks, fmt.Errorf("REDIS_ACK=auto: %w", err)
		}
		mode = AckMaster
		if replicated {
			mode = AckReplica
		}
	}
	if mode == AckReplica {
		ks = ks.WithAck(lua.Ack{Replicas: 1, Timeout: c.RedisAckTimeout})
	}
	log.Info("redis writes acknowledged by the "+mode, "REDIS_ACK", c.RedisAck, "timeout", c.RedisAckTimeout)
	return ks, nil
}

// Postgres migrates the database and opens a pool on it, retrying while
// PostgreSQL is unreachable until ctx ends.
func (c *Config) Postgres(ctx context.Context, log *slog.Logger) (*postgres.Store, error) {
	return postgres.Open(ctx, log, c.PostgresDSN)
}

// Redis connects a client, retrying until ctx ends. rueidis queues at most
// 1024 commands a connection and waits beyond that, so callers cap what
// they send (the api's in-flight cap).
func (c *Config) Redis(ctx context.Context, log *slog.Logger) (rueidis.Client, error) {
	return retry.Forever(ctx, log, "connect redis", func() (rueidis.Client, error) {
		return rueidis.NewClient(c.RedisOptions())
	})
}

// RedisOptions are the client options every process and test uses. One
// address works against one Redis or a cluster node (rueidis asks CLUSTER
// SLOTS and falls back to a plain client when cluster support is
// disabled); a list must be cluster nodes. On a cluster the client follows
// at most MaxRedirects MOVED/ASK redirects of one command, then returns
// the redirect (the command did not run), and refreshes the slot map every
// 10 s besides after each redirect. Dial counts the cluster's error
// replies (rain_redis_errors_total).
func (c *Config) RedisOptions() rueidis.ClientOption {
	return rueidis.ClientOption{
		InitAddress:       slices.Clone(c.RedisAddr),
		DisableCache:      true,
		PipelineMultiplex: multiplex(c.RedisConns),
		ConnWriteTimeout:  2 * time.Second,
		Dialer:            net.Dialer{Timeout: time.Second},
		DialCtxFn:         rediscluster.Dial,
		ClusterOption: rueidis.ClusterOption{
			ShardsRefreshInterval: 10 * time.Second,
			MaxMovedRedirections:  MaxRedirects,
		},
	}
}

// MaxRedirects is the most MOVED/ASK redirects the client follows for one
// command: a slot migration needs two (MOVED to the new owner, or ASK to
// the importing node), a failover one more.
const MaxRedirects = 3

// checkAddr checks host:port.
func checkAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q", port)
	}
	return nil
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

// Main runs a process: it reads the configuration through bind (every
// variable declared there), prints it for -help, and calls run with a JSON
// logger and a context cancelled by SIGINT or SIGTERM, passing on the
// arguments after the flags. It returns the exit status: 2 for a bad
// configuration or usage, 1 when run fails.
func Main(name string, args []string, stderr io.Writer, bind func(*config.Set), run func(ctx context.Context, log *slog.Logger, args []string) error) int {
	set := config.New(nil)
	bind(set)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nConfiguration is by environment:\n\n", name)
		set.Usage(stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := set.Err(); err != nil {
		fmt.Fprintf(stderr, "%s: invalid configuration:\n%v\n", name, err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, log, fs.Args())
	switch code := ExitCode(err); code {
	case 2:
		fmt.Fprintln(stderr, err.Error())
		return 2
	case 1:
		log.Error(name+" stopped", "err", err)
		return 1
	}
	return 0
}

// ExitCode is the exit status for run's error: 0 for none, 2 for a
// UsageError, 1 for any other.
func ExitCode(err error) int {
	var u UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

// UsageError is returned by a run function for bad arguments (exit status 2).
type UsageError string

func (e UsageError) Error() string { return string(e) }
