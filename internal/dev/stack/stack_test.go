package stack

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNewRefusesOtherHosts(t *testing.T) {
	for _, cfg := range []Config{
		{RedisAddr: "10.0.0.1:6379"},
		{KafkaAddr: "kafka:9092"},
		{KafkaMode: "cloud"},
		{PostgresPort: 70000},
		{PostgresCluster: "../main"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): want an error", cfg)
		}
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "go.mod")); err != nil {
		t.Errorf("Root %s holds no go.mod", s.Root)
	}
	if s.State != filepath.Join(s.Root, ".local") || s.Redis().Addr() != "127.0.0.1:6379" ||
		s.Postgres().Addr() != "127.0.0.1:5432" || s.Kafka().Addr() != "127.0.0.1:9092" {
		t.Errorf("defaults: state %s redis %s postgres %s kafka %s", s.State, s.Redis().Addr(), s.Postgres().Addr(), s.Kafka().Addr())
	}
	if s.postgres.name != "main" {
		t.Errorf("PostgreSQL cluster name %q, want main", s.postgres.name)
	}
	if got := s.Postgres().DSN("rain_test"); got != "postgres://rain:rain@127.0.0.1:5432/rain_test?sslmode=disable" {
		t.Errorf("DSN = %s", got)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("REDIS_MODE", "") // a one-address Redis even under REDIS_MODE=cluster make test
	t.Setenv("REDIS_ADDR", "127.0.0.2:7000")
	t.Setenv("KAFKA_PORT", "19092")
	t.Setenv("KAFKA_MODE", "embedded")
	t.Setenv("KAFKA_REQUIRE_REAL", "1")
	t.Setenv("PGPORT", "5433")
	cfg, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RedisAddr != "127.0.0.2:7000" || cfg.KafkaAddr != "127.0.0.1:19092" || cfg.KafkaMode != KafkaEmbedded ||
		!cfg.KafkaRequireReal || cfg.PostgresPort != 5433 {
		t.Errorf("FromEnv = %+v", cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.kafka.ctrlPort != 19093 {
		t.Errorf("controller port %d, want the broker's + 1", s.kafka.ctrlPort)
	}
	t.Setenv("PGPORT", "x")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "PGPORT") {
		t.Errorf("PGPORT=x: %v", err)
	}
}

func TestBuildRefusesPaths(t *testing.T) {
	for _, names := range [][]string{nil, {"../x"}, {"cmd/api"}, {""}} {
		if _, err := build(context.Background(), t.TempDir(), t.TempDir(), names...); err == nil {
			t.Errorf("build %q: want an error", names)
		}
	}
}

func TestParseClusters(t *testing.T) {
	out := "15  main 5432 online postgres /var/lib/postgresql/15/main /var/log/postgresql/postgresql-15-main.log\n" +
		"16  test 5433 down   postgres /var/lib/postgresql/16/test /var/log/postgresql/postgresql-16-test.log\n"
	if c := parseClusters(out, 5433); c != (pgCluster{"16", "test", "down", "/var/log/postgresql/postgresql-16-test.log"}) {
		t.Errorf("port 5433: %+v", c)
	}
	if c := parseClusters(out, 5434); c.name != "" {
		t.Errorf("port 5434: %+v", c)
	}
}

// testStack is a stack whose state lives in a temporary directory, with
// Redis and Kafka on free ports, so that starting and stopping it leaves
// the shared local services alone.
func testStack(t *testing.T, cfg Config) *Stack {
	t.Helper()
	if cfg.RedisAddr == "" {
		cfg.RedisAddr = freeAddr(t)
	}
	if cfg.KafkaAddr == "" {
		cfg.KafkaAddr = freeAddr(t)
	}
	if cfg.State == "" {
		cfg.State = t.TempDir()
	}
	cfg.Logf = t.Logf
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, svc := range []Service{s.kafka, s.redis} { // never postgres: it is the shared cluster
			if _, err := svc.Stop(context.Background()); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	a, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRedisLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs redis-server")
	}
	ctx := context.Background()
	s := testStack(t, Config{})
	r := s.Redis()
	if st := r.Status(ctx); st.Up || st.Owned {
		t.Fatalf("before start: %v", st)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.Status(ctx)
	if !st.Up || !st.Owned || st.Pid == 0 || !strings.Contains(st.What, "appendonly yes") || !strings.Contains(st.What, "appendfsync everysec") {
		t.Fatalf("after start: %v", st)
	}
	if err := r.Start(ctx); err != nil { // idempotent: reused
		t.Fatal(err)
	}
	if again := r.Status(ctx); again.Pid != st.Pid {
		t.Errorf("a second Start replaced pid %d by %d", st.Pid, again.Pid)
	}

	// A crash, then back.
	restore, err := s.Outage(ctx, r, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx); err == nil {
		t.Error("Redis answers during the outage")
	}
	if slices.Contains(s.Down(ctx), "redis") == false {
		t.Errorf("Down = %v, want redis in it", s.Down(ctx))
	}
	if err := restore(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx); err != nil {
		t.Fatalf("after restore: %v", err)
	}

	stopped, err := r.Stop(ctx)
	if err != nil || !stopped {
		t.Fatalf("Stop = %v, %v", stopped, err)
	}
	if r.Check(ctx) == nil {
		t.Error("Redis answers after Stop")
	}
	if stopped, err := r.Stop(ctx); stopped || err != nil {
		t.Errorf("second Stop = %v, %v; want nothing to stop", stopped, err)
	}
	if _, err := s.Outage(ctx, r, syscall.SIGTERM); err == nil {
		t.Error("Outage of a Redis not running: want an error")
	}
}

func TestEmbeddedKafkaLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the go command (builds cmd/devkafka)")
	}
	ctx := context.Background()
	s := testStack(t, Config{KafkaMode: KafkaEmbedded})
	k := s.Kafka()
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	kind, _, err := k.Probe(ctx)
	if err != nil || kind != KindEmbedded {
		t.Fatalf("Probe = %q, %v", kind, err)
	}
	st := k.Status(ctx)
	if !st.Up || !st.Owned || st.What != "kfake (embedded)" {
		t.Errorf("Status = %v", st)
	}

	// A stack that requires a real broker refuses the embedded one it did
	// not start, and mode real never falls back.
	strict := testStack(t, Config{KafkaAddr: k.Addr(), KafkaRequireReal: true})
	if err := strict.Kafka().Start(ctx); err == nil || !strings.Contains(err.Error(), "not started here") {
		t.Errorf("require real with a foreign embedded broker: %v", err)
	}
	embeddedOnly := testStack(t, Config{KafkaAddr: k.Addr(), KafkaMode: KafkaEmbedded, KafkaRequireReal: true})
	if err := embeddedOnly.Kafka().Start(ctx); err == nil {
		t.Error("mode embedded with KAFKA_REQUIRE_REAL: want an error")
	}

	// Outage and restore bring back the same kind.
	restore, err := s.Outage(ctx, k, syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	if k.Check(ctx) == nil {
		t.Error("Kafka answers during the outage")
	}
	if err := restore(ctx); err != nil {
		t.Fatal(err)
	}
	if kind, _, err := k.Probe(ctx); err != nil || kind != KindEmbedded {
		t.Errorf("after restore: %q, %v", kind, err)
	}
	env, err := s.TestEnv(ctx)
	if err != nil || !slices.Contains(env, "KAFKA_KIND=embedded") || !slices.Contains(env, "KAFKA_BROKERS="+k.Addr()) {
		t.Errorf("TestEnv = %v, %v", env, err)
	}
	if stopped, err := k.Stop(ctx); !stopped || err != nil {
		t.Errorf("Stop = %v, %v", stopped, err)
	}
	if _, err := os.Stat(k.kindFile()); err == nil {
		t.Error("kind file left after Stop")
	}
}

func TestKafkaNotABroker(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits for a broker that never answers")
	}
	// Something listens but does not speak Kafka: Start says so.
	s := testStack(t, Config{KafkaMode: KafkaEmbedded})
	r := s.Redis()
	if err := r.Start(context.Background()); err != nil {
		t.Skipf("needs redis-server: %v", err)
	}
	bad := testStack(t, Config{KafkaAddr: r.Addr(), KafkaMode: KafkaEmbedded})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := bad.Kafka().Start(ctx); err == nil || !strings.Contains(err.Error(), "does not answer as a Kafka broker") {
		t.Errorf("Start with Redis on the Kafka port: %v", err)
	}
}

// TestLocalServices checks the services `make test` started (read only).
func TestLocalServices(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the local Redis, PostgreSQL and Kafka (make services)")
	}
	cfg, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range s.Status(context.Background()) {
		if !st.Up {
			t.Errorf("%v", st)
		}
	}
}

// fakeDaemon runs a process whose command line names the service but
// that never listens, recorded in pf as if this package had started it.
func fakeDaemon(t *testing.T, pf pidfile, name string) int {
	t.Helper()
	c := exec.Command("bash", "-c", `exec -a "$0" sleep 60`, name)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	if err := pf.write(c.Process.Pid); err != nil {
		t.Fatal(err)
	}
	// Wait for the exec: bash's own command line names the daemon too (as
	// its $0), and while the exec replaces it /proc/<pid>/cmdline reads
	// empty, so a Start in that window took the pid for a stranger's and
	// started a second server (seen once in CI). After the exec comm is
	// sleep's.
	if err := Poll(context.Background(), 10*time.Second, func(context.Context) error {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.Process.Pid))
		if err != nil || strings.TrimSpace(string(comm)) != "sleep" {
			return fmt.Errorf("pid %d has not exec'd sleep yet (comm %q)", c.Process.Pid, comm)
		}
		_, err = pf.pid()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// A service this package started that does not answer yet is waited for,
// never started a second time on its port.
func TestStartWaitsForOwnStartingService(t *testing.T) {
	s := testStack(t, Config{KafkaMode: KafkaEmbedded})
	for _, tc := range []struct {
		svc  Service
		pf   pidfile
		name string
	}{
		{s.Redis(), s.Redis().nodes()[0].pidfile(), "redis-server"},
		{s.Kafka(), s.Kafka().pidfile(), "devkafka"},
	} {
		pid := fakeDaemon(t, tc.pf, tc.name)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := tc.svc.Start(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
			t.Errorf("%s: Start while its own process is starting: %v, want an error naming pid %d", tc.svc.Name(), err, pid)
		}
		if PortFree(tc.svc.Addr()) != nil {
			t.Errorf("%s: a second server was started on %s", tc.svc.Name(), tc.svc.Addr())
		}
	}
}

func TestPostgresSettings(t *testing.T) {
	conf := pgConf()
	for _, s := range pgSettings {
		if !strings.Contains(conf, "\n"+s.Name+" = '"+s.Value+"'\n") {
			t.Errorf("%s missing from the conf file:\n%s", s.Name, conf)
		}
		switch s.Name {
		case "fsync", "synchronous_commit", "full_page_writes":
			t.Errorf("%s is a durability setting: the stack leaves it at its default", s.Name)
		}
	}
	if !sameSetting("1GB", "1GB") || sameSetting("128MB", "1GB") || !sameSetting(" LZ4", "lz4") {
		t.Error("sameSetting")
	}
	if clusterName(5432) != "main" || clusterName(5441) != "rain5441" {
		t.Errorf("cluster names: %s %s", clusterName(5432), clusterName(5441))
	}
}
