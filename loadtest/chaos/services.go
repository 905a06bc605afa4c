package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Services stops and starts the local services that deploy/local/*.sh
// run: Redis (by its pidfile), PostgreSQL (pg_ctlcluster) and Kafka (by its
// pidfile). Starting always goes through the deploy/local scripts, so a
// service comes back exactly as `make services` starts it.
type Services struct {
	Root      string // the repository
	RedisPort int
	PGPort    int
	KafkaPort int
	KafkaKind string // real or embedded: what deploy/local/kafka.sh started
	Logf      func(format string, args ...any)

	pgVersion, pgName string
}

// Discover finds what runs: the Kafka kind and the PostgreSQL cluster on
// PGPort. It fails if a service is not one the deploy/local scripts
// control, since the runner could not bring it back.
func (s *Services) Discover(ctx context.Context) error {
	kind, err := os.ReadFile(filepath.Join(s.Root, ".local/kafka/kind"))
	if err != nil {
		return fmt.Errorf("kafka: %w (start the services with deploy/local/up.sh)", err)
	}
	s.KafkaKind = strings.TrimSpace(string(kind))
	if _, err := s.pidOf(".local/kafka/kafka.pid", s.kafkaPattern()); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if _, err := s.pidOf(".local/redis/redis.pid", "redis-server"); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	out, err := exec.CommandContext(ctx, "pg_lsclusters", "-h").Output()
	if err != nil {
		return fmt.Errorf("postgres: pg_lsclusters: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[2] == strconv.Itoa(s.PGPort) {
			s.pgVersion, s.pgName = f[0], f[1]
		}
	}
	if s.pgName == "" {
		return fmt.Errorf("postgres: no cluster on port %d in pg_lsclusters", s.PGPort)
	}
	return nil
}

func (s *Services) kafkaPattern() string {
	if s.KafkaKind == "embedded" {
		return "devkafka"
	}
	return "kafka.Kafka"
}

// pidOf reads a pidfile under Root and checks that the process lives and
// its command line contains pattern (a recycled pid is not ours).
func (s *Services) pidOf(pidfile, pattern string) (int, error) {
	b, err := os.ReadFile(filepath.Join(s.Root, pidfile))
	if err != nil {
		return 0, fmt.Errorf("no pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: bad pid %q", pidfile, b)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d (%s) is not running", pid, pidfile)
	}
	if !bytes.Contains(cmdline, []byte(pattern)) {
		return 0, fmt.Errorf("pid %d (%s) is not %s", pid, pidfile, pattern)
	}
	return pid, nil
}

// signalAndWait sends sig to pid and waits up to wait for it to exit, then
// SIGKILLs it.
func (s *Services) signalAndWait(name string, pid int, sig syscall.Signal, wait time.Duration) error {
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("%s: kill -%d %d: %w", name, sig, pid, err)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if !running(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Logf("%s (pid %d) still running %s after signal %d; SIGKILL", name, pid, wait, sig)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(500 * time.Millisecond)
	return nil
}

// running reports whether pid is a live process: a zombie (exited, not
// yet reaped by its parent, as daemons re-parented to init can be for a
// while) is not.
func running(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// lock holds .local/NAME.lock, the lock the deploy/local scripts take, so
// that none of them starts the service again while the runner has it
// down. The returned func releases it.
func (s *Services) lock(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Root, ".local", name+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%s.lock: another deploy/local script holds it: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run runs a command from Root with a time limit, its output into the log.
func (s *Services) run(ctx context.Context, limit time.Duration, env []string, argv ...string) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	name, args := argv[0], argv[1:]
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.Root
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" {
			s.Logf("  | %s", line)
		}
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// Outage stops a service and returns the function that starts it again.
// The deploy/local lock of the service is held from the stop until the
// start begins.
type Outage func(ctx context.Context) error

// StopRedis stops redis-server with sig (SIGTERM: AOF flushed, nothing
// lost; SIGKILL: a crash, the last second of writes may be lost).
func (s *Services) StopRedis(ctx context.Context, sig syscall.Signal) (Outage, error) {
	unlock, err := s.lock(ctx, "redis")
	if err != nil {
		return nil, err
	}
	pid, err := s.pidOf(".local/redis/redis.pid", "redis-server")
	if err == nil {
		err = s.signalAndWait("redis", pid, sig, 30*time.Second)
	}
	return func(ctx context.Context) error {
		unlock()
		return s.run(ctx, 90*time.Second, []string{"REDIS_PORT=" + strconv.Itoa(s.RedisPort)}, "bash", "deploy/local/redis.sh")
	}, err
}

// StopPostgres stops the cluster (fast mode: sessions are cut).
func (s *Services) StopPostgres(ctx context.Context) (Outage, error) {
	unlock, err := s.lock(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	err = s.run(ctx, 60*time.Second, nil, asRoot("pg_ctlcluster", s.pgVersion, s.pgName, "stop", "-m", "fast")...)
	return func(ctx context.Context) error {
		defer unlock()
		if err := s.run(ctx, 60*time.Second, nil, asRoot("pg_ctlcluster", s.pgVersion, s.pgName, "start")...); err != nil {
			return err
		}
		return waitFor(ctx, 30*time.Second, func() error {
			return exec.CommandContext(ctx, "pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(s.PGPort)).Run()
		})
	}, err
}

// StopKafka stops the broker: SIGTERM (a controlled shutdown), SIGKILL
// after 60 s.
func (s *Services) StopKafka(ctx context.Context) (Outage, error) {
	unlock, err := s.lock(ctx, "kafka")
	if err != nil {
		return nil, err
	}
	pid, err := s.pidOf(".local/kafka/kafka.pid", s.kafkaPattern())
	if err == nil {
		err = s.signalAndWait("kafka", pid, syscall.SIGTERM, 60*time.Second)
	}
	return func(ctx context.Context) error {
		unlock()
		return s.run(ctx, 180*time.Second, []string{"KAFKA_PORT=" + strconv.Itoa(s.KafkaPort)}, "bash", "deploy/local/kafka.sh", s.KafkaKind)
	}, err
}

// Up starts whatever is not running, as `make services` does. The runner
// calls it before it exits, whatever happened.
func (s *Services) Up(ctx context.Context) error {
	return s.run(ctx, 300*time.Second, []string{"KAFKA_PORT=" + strconv.Itoa(s.KafkaPort),
		"REDIS_ADDR=127.0.0.1:" + strconv.Itoa(s.RedisPort)}, "bash", "deploy/local/up.sh", s.KafkaKind)
}

// AllUp reports which services do not accept connections.
func (s *Services) AllUp() []string {
	var down []string
	for name, port := range map[string]int{"redis": s.RedisPort, "postgres": s.PGPort, "kafka": s.KafkaPort} {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err != nil {
			down = append(down, name)
			continue
		}
		c.Close()
	}
	return down
}

// asRoot prefixes a command with sudo -n unless the runner is root
// (pg_ctlcluster needs root or the cluster's owner), as deploy/local does.
func asRoot(cmd ...string) []string {
	if os.Geteuid() == 0 {
		return cmd
	}
	return append([]string{"sudo", "-n"}, cmd...)
}

// waitFor polls fn every 200 ms until it succeeds or limit passes.
func waitFor(ctx context.Context, limit time.Duration, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %w", limit, errors.Join(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
