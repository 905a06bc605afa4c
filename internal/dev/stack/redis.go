package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// Redis is a standalone redis-server with AOF (appendfsync everysec): its
// data, pidfile and log live in Dir.
//
// The server processes are described as nodes, so that a Redis Cluster
// (six nodes on 7001-7006, each with a directory of its own, joined with
// `redis-cli --cluster create`) can be added as a second topology without
// changing how nodes are started, stopped and found.
type Redis struct {
	s       *Stack
	addr    string // host:port clients use (a cluster: every node's, comma-separated)
	dir     string // data, pidfile and log (a cluster: a directory per node under it)
	cluster bool   // RedisMode cluster (cluster.go)
}

// redisNode is one redis-server process.
type redisNode struct {
	addr string
	dir  string
	args []string // redis-server options besides the common ones
}

func (n redisNode) pidfile() pidfile {
	return pidfile{path: filepath.Join(n.dir, "redis.pid"), patterns: []string{"redis-server"}}
}
func (n redisNode) log() string { return filepath.Join(n.dir, "redis.log") }

// nodes are the server processes of the topology (standalone: one).
func (r *Redis) nodes() []redisNode {
	if r.cluster {
		return r.clusterNodes()
	}
	return []redisNode{{addr: r.addr, dir: r.dir}}
}

// Name is "redis".
func (r *Redis) Name() string { return "redis" }

// Addr is where clients connect.
func (r *Redis) Addr() string { return r.addr }

// Dir holds the data, the pidfile and the log.
func (r *Redis) Dir() string { return r.dir }

// Check PINGs every node (a cluster: and checks that it is formed).
func (r *Redis) Check(ctx context.Context) error {
	for _, n := range r.nodes() {
		if _, err := redisInfo(ctx, n.addr); err != nil {
			return err
		}
	}
	if r.cluster {
		return r.clusterCheck(ctx)
	}
	return nil
}

// redisFacts is what Status reports of a node.
type redisFacts struct{ version, appendonly, appendfsync string }

// redisInfo PINGs the node and reads its version and AOF settings.
func redisInfo(ctx context.Context, addr string) (redisFacts, error) {
	var f redisFacts
	if err := CheckAddr(addr); err != nil {
		return f, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		DisableCache:      true,
		DisableRetry:      true,
		ForceSingleClient: true,
		Dialer:            net.Dialer{Timeout: 2 * time.Second},
	})
	if err != nil {
		return f, fmt.Errorf("redis %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		return f, fmt.Errorf("redis %s: PING: %w", addr, err)
	}
	cfg, err := c.Do(ctx, c.B().ConfigGet().Parameter("appendonly", "appendfsync").Build()).AsStrMap()
	if err == nil {
		f.appendonly, f.appendfsync = cfg["appendonly"], cfg["appendfsync"]
	}
	info, err := c.Do(ctx, c.B().Info().Section("server").Build()).ToString()
	if err == nil {
		for line := range strings.SplitSeq(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				f.version = v
			}
		}
	}
	return f, nil
}

// Start starts redis-server unless a Redis already answers at Addr.
func (r *Redis) Start(ctx context.Context) error { return r.s.startLocked(ctx, r) }

func (r *Redis) start(ctx context.Context) error {
	for _, n := range r.nodes() {
		if err := r.startNode(ctx, n); err != nil {
			return err
		}
	}
	if r.cluster {
		return r.form(ctx)
	}
	return nil
}

// startNode starts one node unless it answers, with the node's lock held
// (a NodeOutage holds it while the node is down).
func (r *Redis) startNode(ctx context.Context, n redisNode) error {
	unlock, err := lock(ctx, r.s.State, n.lockName())
	if err != nil {
		return err
	}
	defer unlock()
	return r.startNodeLocked(ctx, n)
}

// lockName is the name of the node's own lock: redis-<port>.
func (n redisNode) lockName() string {
	_, port, _ := net.SplitHostPort(n.addr)
	return "redis-" + port
}

func (r *Redis) startNodeLocked(ctx context.Context, n redisNode) error {
	if f, err := redisInfo(ctx, n.addr); err == nil {
		who := "not started here"
		if pid, err := n.pidfile().pid(); err == nil {
			who = fmt.Sprintf("started here, pid %d", pid)
		}
		r.s.logf("REDIS: already running at %s (%s; appendonly=%s)", n.addr, who, f.appendonly)
		if f.appendonly != "yes" {
			r.s.logf("WARNING: Redis at %s runs without AOF; the project expects appendonly yes", n.addr)
		}
		return nil
	}
	if pid, err := n.pidfile().pid(); err == nil {
		// Ours, alive but not answering yet (loading its AOF): wait for it
		// rather than start a second server on its port.
		r.s.logf("REDIS: %s (pid %d) is running but not answering yet; waiting", n.addr, pid)
		if err := Poll(ctx, 2*time.Minute, func(ctx context.Context) error { _, err := redisInfo(ctx, n.addr); return err }); err != nil {
			return fmt.Errorf("redis-server pid %d at %s: %w (log: %s)", pid, n.addr, err, n.log())
		}
		return nil
	}
	host, port, _ := net.SplitHostPort(n.addr)
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	pf := n.pidfile()
	os.Remove(pf.path)
	// redis-server daemonizes itself and writes its own pidfile.
	argv := append([]string{"redis-server",
		"--bind", host, "--port", port, "--protected-mode", "yes",
		"--daemonize", "yes", "--pidfile", pf.path, "--logfile", n.log(), "--dir", n.dir,
		"--appendonly", "yes", "--appendfsync", "everysec",
		"--save", "3600 1 300 100 60 10000"}, n.args...)
	if _, err := command(ctx, 30*time.Second, n.dir, argv...); err != nil {
		return fmt.Errorf("%w (is redis-server installed? bash deploy/local/install.sh)", err)
	}
	if err := Poll(ctx, 20*time.Second, func(ctx context.Context) error { _, err := redisInfo(ctx, n.addr); return err }); err != nil {
		return fmt.Errorf("redis-server at %s: %w (log: %s)", n.addr, err, n.log())
	}
	f, _ := redisInfo(ctx, n.addr)
	pid, _ := pf.pid()
	r.s.logf("REDIS: started %s at %s (pid %d), appendonly=%s appendfsync=%s; data and log in %s",
		f.version, n.addr, pid, f.appendonly, f.appendfsync, n.dir)
	return nil
}

// Stop stops the redis-server processes this package started, standalone
// and cluster nodes alike whatever the mode (SIGTERM: the AOF is flushed;
// SIGKILL after 30 s).
func (r *Redis) Stop(ctx context.Context) (bool, error) {
	return locked(ctx, r.s.State, r.Name(), func() (bool, error) {
		stopped := false
		var errs []error
		for _, n := range r.startedNodes() {
			pid, err := n.pidfile().pid()
			if err != nil {
				continue
			}
			r.s.logf("stopping Redis %s (pid %d) ...", n.addr, pid)
			if err := StopPid(pid, syscall.SIGTERM, 30*time.Second); err != nil {
				errs = append(errs, err)
			}
			n.pidfile().removeIf(pid)
			stopped = true
		}
		return stopped, errors.Join(errs...)
	})
}

func (r *Redis) down(_ context.Context, sig syscall.Signal) error {
	for _, n := range r.nodes() {
		pid, err := n.pidfile().pid()
		if err != nil {
			return fmt.Errorf("not started by this package: %w", err)
		}
		if err := StopPid(pid, sig, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// Status reports the standalone Redis, or the cluster (cluster.go).
func (r *Redis) Status(ctx context.Context) Status {
	if r.cluster {
		return r.clusterStatus(ctx)
	}
	n := r.nodes()[0]
	st := Status{Name: r.Name(), Addr: r.addr, Log: n.log()}
	f, err := redisInfo(ctx, n.addr)
	st.Up, st.Err = err == nil, err
	if pid, err := n.pidfile().pid(); err == nil {
		st.Owned, st.Pid = true, pid
		st.Stop = fmt.Sprintf("kill %d", pid)
	}
	if st.Up {
		st.What = fmt.Sprintf("redis %s, appendonly %s, appendfsync %s", f.version, f.appendonly, f.appendfsync)
	}
	return st
}
