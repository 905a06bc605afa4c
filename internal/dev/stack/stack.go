// Package stack starts, stops, finds and health-checks the local services
// the project runs on (Redis with AOF, PostgreSQL, Kafka) and the
// project's own binaries, for `make run`, `make test`, the benchmark, the
// fault-injection suite and the deployment checks.
//
// Everything it starts or sends traffic to is on a loopback address
// (127.0.0.0/8, ::1, localhost); anything else is refused (CheckAddr).
//
// What it started is recorded under the repository's .local/ directory
// (pidfiles, the Kafka broker's kind, PostgreSQL's "started here" marker,
// logs, data). Only this package reads or writes those files: others ask
// it (Stack.Status, Stack.Outage). A service that already answers is
// reused, never restarted; Stop stops only what this package started.
//
// Services:
//
//   - Redis: redis-server on 127.0.0.1:6379 (REDIS_ADDR) with appendonly
//     yes and appendfsync everysec, data and log in .local/redis; with
//     REDIS_MODE=cluster instead a Redis Cluster of 3 masters and 3
//     replicas on 127.0.0.1:7001-7006, data and logs in
//     .local/redis-cluster/<port> (cluster.go).
//   - PostgreSQL: the Debian cluster (pg_lsclusters, pg_ctlcluster) on
//     port 5432 (PGPORT), with role rain (password rain) and databases rain
//     and rain_test.
//   - Kafka on 127.0.0.1:9092 (KAFKA_PORT): real Apache Kafka (single-node
//     KRaft, from the Maven Central jars, config rendered from
//     deploy/local/kafka), or the embedded kfake broker (cmd/devkafka);
//     KafkaMode auto takes real when it starts, else embedded, unless
//     KAFKA_REQUIRE_REAL=1.
//
// Packages (redis-server, postgresql, Java, Maven) are installed by
// deploy/local/install.sh, not here.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/pipeline"
)

// Config says where the local services listen and which Kafka to run.
// The zero value of a field means its default (see FromEnv).
type Config struct {
	Root         string // repository root (holding go.mod); "": found from the working directory
	State        string // pidfiles, logs, data, locks; "": Root/.local
	Cache        string // downloads (the Kafka jars); "": Root/.cache
	RedisAddr    string // 127.0.0.1:6379; cluster: the nodes, comma-separated (127.0.0.1:7001,…,127.0.0.1:7006)
	RedisMode    string // standalone (""), or cluster: a Redis Cluster of 3 masters and 3 replicas (cluster.go)
	PostgresPort int    // 5432
	// PostgresCluster names the Debian cluster Start creates when none
	// listens on PostgresPort ("": main on 5432, else rain<port>); one that exists is used whatever
	// its name.
	PostgresCluster string
	KafkaAddr       string // 127.0.0.1:9092; the KRaft controller listens on the next port
	KafkaMode       KafkaMode
	// KafkaRequireReal forbids the embedded broker: mode auto becomes
	// real, and an embedded broker found running is an error.
	KafkaRequireReal bool
	KafkaVersion     string // Apache Kafka release: 4.1.1
	KafkaHeap        string // JVM heap options: -Xms512m -Xmx1g
	// Logf prints progress; nil prints lines to standard output.
	Logf func(format string, args ...any)
}

// FromEnv is the Config the environment gives: REDIS_ADDR, REDIS_MODE, PGPORT,
// KAFKA_PORT, KAFKA_MODE, KAFKA_REQUIRE_REAL=1, KAFKA_VERSION and
// KAFKA_HEAP_OPTS; unset ones keep the defaults.
func FromEnv() (Config, error) {
	c := Config{
		RedisAddr:        os.Getenv("REDIS_ADDR"),
		RedisMode:        os.Getenv("REDIS_MODE"),
		KafkaMode:        KafkaMode(os.Getenv("KAFKA_MODE")),
		KafkaRequireReal: os.Getenv("KAFKA_REQUIRE_REAL") == "1",
		KafkaVersion:     os.Getenv("KAFKA_VERSION"),
		KafkaHeap:        os.Getenv("KAFKA_HEAP_OPTS"),
	}
	var errs []error
	if v := os.Getenv("PGPORT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("PGPORT=%q: not a port", v))
		}
		c.PostgresPort = n
	}
	if v := os.Getenv("KAFKA_PORT"); v != "" {
		c.KafkaAddr = "127.0.0.1:" + v
	}
	return c, errors.Join(errs...)
}

func (c *Config) defaults() {
	if c.RedisAddr == "" {
		c.RedisAddr = app.DefaultRedisAddr
		if c.RedisMode == RedisCluster {
			c.RedisAddr = DefaultClusterAddrs
		}
	}
	if c.PostgresPort == 0 {
		c.PostgresPort = defaultPostgresPort()
	}
	if c.PostgresCluster == "" {
		c.PostgresCluster = clusterName(c.PostgresPort)
	}
	if c.KafkaAddr == "" {
		c.KafkaAddr = pipeline.DefaultBrokers
	}
	if c.KafkaMode == "" {
		c.KafkaMode = KafkaAuto
	}
	if c.KafkaVersion == "" {
		c.KafkaVersion = "4.1.1"
	}
	if c.KafkaHeap == "" {
		c.KafkaHeap = "-Xms512m -Xmx1g"
	}
	if c.Logf == nil {
		c.Logf = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	}
}

// Stack is the set of local services and the place their state lives.
type Stack struct {
	Root  string // the repository
	State string // Root/.local: pidfiles, logs, data, locks
	Cache string // Root/.cache: downloads (the Kafka jars)
	Bin   string // Root/bin: the binaries Build makes

	cfg      Config
	redis    *Redis
	postgres *Postgres
	kafka    *Kafka
}

// New checks cfg (every address must be loopback) and returns the stack.
// It starts nothing.
func New(cfg Config) (*Stack, error) {
	cfg.defaults()
	var errs []error
	if err := checkRedis(cfg.RedisMode, cfg.RedisAddr); err != nil {
		errs = append(errs, err)
	}
	if err := CheckAddr(cfg.KafkaAddr); err != nil {
		errs = append(errs, fmt.Errorf("KAFKA_PORT: %w", err))
	}
	if cfg.PostgresPort < 1 || cfg.PostgresPort > 65535 {
		errs = append(errs, fmt.Errorf("PGPORT=%d: port must be 1-65535", cfg.PostgresPort))
	}
	if !pgClusterName.MatchString(cfg.PostgresCluster) {
		errs = append(errs, fmt.Errorf("PostgreSQL cluster name %q: want letters, digits, _ or -", cfg.PostgresCluster))
	}
	if _, err := ParseKafkaMode(string(cfg.KafkaMode)); err != nil {
		errs = append(errs, err)
	}
	if cfg.Root == "" {
		root, err := FindRoot()
		if err != nil {
			errs = append(errs, err)
		}
		cfg.Root = root
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.State == "" {
		cfg.State = filepath.Join(cfg.Root, ".local")
	}
	if cfg.Cache == "" {
		cfg.Cache = filepath.Join(cfg.Root, ".cache")
	}
	s := &Stack{
		Root:  cfg.Root,
		State: cfg.State,
		Cache: cfg.Cache,
		Bin:   filepath.Join(cfg.Root, "bin"),
		cfg:   cfg,
	}
	s.redis = newRedis(s, cfg)
	s.postgres = &Postgres{s: s, port: cfg.PostgresPort, name: cfg.PostgresCluster}
	s.kafka = newKafka(s, cfg)
	return s, nil
}

// FindRoot is the nearest directory at or above the working directory
// that holds go.mod.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

func (s *Stack) logf(format string, args ...any) { s.cfg.Logf(format, args...) }

// Redis is the Redis service.
func (s *Stack) Redis() *Redis { return s.redis }

// Postgres is the PostgreSQL service.
func (s *Stack) Postgres() *Postgres { return s.postgres }

// Kafka is the Kafka service.
func (s *Stack) Kafka() *Kafka { return s.kafka }

// Services are Redis, PostgreSQL and Kafka, in start order.
func (s *Stack) Services() []Service { return []Service{s.redis, s.postgres, s.kafka} }

// Service is one local service.
type Service interface {
	Name() string // redis, postgres or kafka
	Addr() string // where clients connect (host:port)
	// Check says whether the service answers as it should (nil: it does).
	Check(ctx context.Context) error
	// Start starts the service unless one already answers at Addr.
	Start(ctx context.Context) error
	// Stop stops the service if this package started it, and reports
	// whether it did.
	Stop(ctx context.Context) (bool, error)
	// Status says whether the service runs, who started it, and where its
	// log is.
	Status(ctx context.Context) Status

	// start and down are Start and a forced stop with the service's lock
	// already held (see Outage).
	start(ctx context.Context) error
	down(ctx context.Context, sig syscall.Signal) error
}

// Status describes one service.
type Status struct {
	Name  string
	Addr  string
	Up    bool   // answers its health check
	Owned bool   // started by this package: Stop (make stop) stops it
	Pid   int    // its process, when this package started it (0: not known)
	What  string // e.g. "redis 7.0.15, appendonly yes", "Apache Kafka 4.1.1 (real)"
	Log   string // its log file
	Stop  string // how to stop it by hand
	Err   error  // why it is not up
}

// String is one line: name, address, state.
func (st Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s %-16s ", st.Name, st.Addr)
	switch {
	case !st.Up:
		b.WriteString("down")
		if st.Err != nil {
			b.WriteString(": " + st.Err.Error())
		}
		return b.String()
	case st.Owned:
		fmt.Fprintf(&b, "up, started here")
		if st.Pid > 0 {
			fmt.Fprintf(&b, " (pid %d)", st.Pid)
		}
	default:
		b.WriteString("up, not started here (left alone by stop)")
	}
	if st.What != "" {
		b.WriteString("; " + st.What)
	}
	return b.String()
}

// Up starts every service that does not answer yet, in order, and stops
// at the first that fails to start.
func (s *Stack) Up(ctx context.Context) error {
	for _, svc := range s.Services() {
		if err := svc.Start(ctx); err != nil {
			return fmt.Errorf("%s: %w", svc.Name(), err)
		}
	}
	return nil
}

// Stop stops the services this package started (Kafka first) and leaves
// the others alone. It returns the names of those it stopped.
func (s *Stack) Stop(ctx context.Context) ([]string, error) {
	var stopped []string
	var errs []error
	for _, svc := range []Service{s.kafka, s.redis, s.postgres} {
		ok, err := svc.Stop(ctx)
		if ok {
			stopped = append(stopped, svc.Name())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", svc.Name(), err))
		}
	}
	return stopped, errors.Join(errs...)
}

// Status is the status of every service.
func (s *Stack) Status(ctx context.Context) []Status {
	var out []Status
	for _, svc := range s.Services() {
		out = append(out, svc.Status(ctx))
	}
	return out
}

// Down lists the services that do not answer their health check.
func (s *Stack) Down(ctx context.Context) []string {
	var down []string
	for _, svc := range s.Services() {
		if svc.Check(ctx) != nil {
			down = append(down, svc.Name())
		}
	}
	return down
}

// Restore starts again a service an Outage stopped.
type Restore func(ctx context.Context) error

// Outage takes a service down for fault injection and returns the function
// that brings it back. sig says how: SIGTERM is a clean stop (Redis flushes
// its AOF, Kafka shuts down in a controlled way, PostgreSQL stops in fast
// mode); SIGKILL is a crash (PostgreSQL: immediate mode). The service's
// lock is held from the stop until Restore has started it again, so that
// nothing else (make services) starts it meanwhile. Redis and Kafka must
// have been started by this package; PostgreSQL is the cluster on its
// port, whoever started it. Kafka comes back as the kind it was.
func (s *Stack) Outage(ctx context.Context, svc Service, sig syscall.Signal) (Restore, error) {
	unlock, err := lock(ctx, s.State, svc.Name())
	if err != nil {
		return nil, err
	}
	if err := svc.down(ctx, sig); err != nil {
		unlock()
		return nil, fmt.Errorf("%s: %w", svc.Name(), err)
	}
	return func(ctx context.Context) error {
		defer unlock()
		if err := svc.start(ctx); err != nil {
			return fmt.Errorf("%s: %w", svc.Name(), err)
		}
		return nil
	}, nil
}

// startLocked runs start with the service's lock held.
func (s *Stack) startLocked(ctx context.Context, svc Service) error {
	unlock, err := lock(ctx, s.State, svc.Name())
	if err != nil {
		return err
	}
	defer unlock()
	return svc.start(ctx)
}

// TestEnv is the environment `make test` runs go test with: the local
// services' addresses (POSTGRES_DSN names the test database) and
// KAFKA_KIND, the kind of broker that answers (real or embedded).
func (s *Stack) TestEnv(ctx context.Context) ([]string, error) {
	kind, _, err := s.kafka.Probe(ctx)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return []string{
		"REDIS_ADDR=" + s.redis.addr,
		"POSTGRES_DSN=" + s.postgres.DSN("rain_test"),
		"KAFKA_BROKERS=" + s.kafka.Addr(),
		"KAFKA_KIND=" + kind,
	}, nil
}

// Build builds the main packages ./cmd/NAME of the repository into
// Root/bin and returns their paths by name (api → Root/bin/api).
func (s *Stack) Build(ctx context.Context, names ...string) (map[string]string, error) {
	return build(ctx, s.Root, s.Bin, names...)
}

func build(ctx context.Context, root, dir string, names ...string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, errors.New("build: no binaries named")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("build: the go command is not on PATH: %w", err)
	}
	argv := []string{goBin, "build", "-o", dir + string(filepath.Separator)}
	paths := map[string]string{}
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, `/\.`) {
			return nil, fmt.Errorf("build: %q is not a command name", n)
		}
		argv = append(argv, "./cmd/"+n)
		paths[n] = filepath.Join(dir, n)
	}
	if _, err := command(ctx, 10*time.Minute, root, argv...); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return paths, nil
}

// defaultPostgresPort is the port of the product's default POSTGRES_DSN.
func defaultPostgresPort() int {
	u, err := url.Parse(app.DefaultPostgresDSN)
	if err != nil {
		panic(err)
	}
	n, err := strconv.Atoi(u.Port())
	if err != nil {
		panic(err)
	}
	return n
}
