package stack

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// Redis Cluster mode (REDIS_MODE=cluster): six redis-server processes on
// 127.0.0.1:7001-7006, each with its own directory under
// .local/redis-cluster/<port> (AOF everysec, nodes.conf, pidfile, log),
// joined by this package with CLUSTER MEET, ADDSLOTSRANGE and REPLICATE:
// the first half of the nodes are the masters, each with an equal share of
// the 16384 slots, the second half their replicas, in order. Two options
// differ from a production cluster's defaults:
//
//   - cluster-require-full-coverage no: a master that dies stops its own
//     slots only, not every campaign, until its replica takes over;
//   - cluster-node-timeout 2000 ms: a dead master is failed over in a few
//     seconds, so the fault tests stay short;
//   - min-replicas-to-write 1 with min-replicas-max-lag 2: a master whose
//     replica is gone or 2 s behind refuses writes (NOREPLICAS, answered
//     503), so a master cut off from its replica takes writes for 2 s at
//     most (production: docs/durability.md).
//
// Starting is idempotent: nodes that answer are reused, and a formed
// cluster is left as it is (a node restarted from its nodes.conf rejoins
// by itself). Stop stops every node this package started, whatever the
// mode it is asked in.

// Redis modes.
const (
	RedisStandalone = "standalone"
	RedisCluster    = "cluster"
)

// DefaultClusterAddrs are the nodes of the local cluster.
const DefaultClusterAddrs = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005,127.0.0.1:7006"

// ClusterNodeTimeout is the local cluster's cluster-node-timeout.
const ClusterNodeTimeout = 2 * time.Second

// MinReplicasMaxLag is the local cluster's min-replicas-max-lag, with
// min-replicas-to-write 1.
const MinReplicasMaxLag = 2 * time.Second

// checkRedis checks the Redis mode and its addresses.
func checkRedis(mode, addr string) error {
	switch mode {
	case "", RedisStandalone:
		if err := CheckAddr(addr); err != nil {
			return fmt.Errorf("REDIS_ADDR: %w", err)
		}
	case RedisCluster:
		if err := CheckAddrs(addr); err != nil {
			return fmt.Errorf("REDIS_ADDR: %w", err)
		}
		if n := len(splitAddrs(addr)); n < 3 || n%2 != 0 && n != 3 {
			return fmt.Errorf("REDIS_ADDR: %d nodes; a cluster needs 3 masters, and as many replicas or none", n)
		}
	default:
		return fmt.Errorf("REDIS_MODE=%q: want standalone or cluster", mode)
	}
	return nil
}

func splitAddrs(list string) []string {
	var out []string
	for a := range strings.SplitSeq(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func newRedis(s *Stack, cfg Config) *Redis {
	if cfg.RedisMode == RedisCluster {
		return &Redis{s: s, addr: strings.Join(splitAddrs(cfg.RedisAddr), ","), dir: filepath.Join(s.State, "redis-cluster"), cluster: true}
	}
	return &Redis{s: s, addr: cfg.RedisAddr, dir: filepath.Join(s.State, "redis")}
}

// Cluster reports whether this Redis is a cluster (REDIS_MODE=cluster).
func (r *Redis) Cluster() bool { return r.cluster }

// Replicas is how many replicas each master has: one in a cluster of six
// nodes, else none.
func (r *Redis) Replicas() int {
	if r.cluster && len(splitAddrs(r.addr)) >= 6 {
		return 1
	}
	return 0
}

// Nodes are the addresses of the server processes: the one Redis, or every
// cluster node (masters first, as formed; a failover may since have swapped
// roles).
func (r *Redis) Nodes() []string {
	var out []string
	for _, n := range r.nodes() {
		out = append(out, n.addr)
	}
	return out
}

// clusterNodes are the cluster's nodes, each in a directory named by its port.
func (r *Redis) clusterNodes() []redisNode {
	ms := strconv.Itoa(int(ClusterNodeTimeout.Milliseconds()))
	var out []redisNode
	for _, a := range splitAddrs(r.addr) {
		_, port, _ := net.SplitHostPort(a)
		out = append(out, redisNode{addr: a, dir: filepath.Join(r.dir, port), args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", ms, "--cluster-require-full-coverage", "no",
			// A master cut off from its replica stops taking writes after
			// MinReplicasMaxLag (scripts fail NOREPLICAS: 503): bounds what
			// a partition can leave unacknowledged (docs/durability.md).
			"--min-replicas-to-write", "1", "--min-replicas-max-lag", strconv.Itoa(int(MinReplicasMaxLag.Seconds())),
		}})
	}
	return out
}

// startedNodes are the nodes this package may have started in either mode:
// the standalone one and every cluster node directory (Stop stops those
// whose pidfile names a live redis-server).
func (r *Redis) startedNodes() []redisNode {
	standalone := r.addr
	if r.cluster {
		standalone = "standalone"
	}
	out := []redisNode{{addr: standalone, dir: filepath.Join(r.s.State, "redis")}}
	dirs, _ := filepath.Glob(filepath.Join(r.s.State, "redis-cluster", "*"))
	for _, d := range dirs {
		out = append(out, redisNode{addr: "127.0.0.1:" + filepath.Base(d), dir: d})
	}
	return out
}

// node returns the cluster node at addr.
func (r *Redis) node(addr string) (redisNode, error) {
	for _, n := range r.nodes() {
		if n.addr == addr {
			return n, nil
		}
	}
	return redisNode{}, fmt.Errorf("redis: no node %s (nodes: %s)", addr, r.addr)
}

// NodePid is the pid of the node at addr, if this package started it.
func (r *Redis) NodePid(addr string) (int, error) {
	n, err := r.node(addr)
	if err != nil {
		return 0, err
	}
	return n.pidfile().pid()
}

// NodeOutage stops one node (SIGKILL: a crash; SIGTERM: a clean stop that
// flushes its AOF) for fault injection, and returns the function that
// starts it again (a cluster node rejoins from its nodes.conf, as a replica
// if its replica has taken over meanwhile). The node's own lock is held
// until then, so that nothing else starts it meanwhile, while other nodes
// may be stopped and started at the same time.
func (r *Redis) NodeOutage(ctx context.Context, addr string, sig syscall.Signal) (Restore, error) {
	n, pid, unlock, err := r.lockNode(ctx, addr)
	if err != nil {
		return nil, err
	}
	if err := StopPid(pid, sig, 30*time.Second); err != nil {
		unlock()
		return nil, err
	}
	return func(ctx context.Context) error {
		defer unlock()
		return r.startNodeLocked(ctx, n)
	}, nil
}

// NodePause stops one node with SIGSTOP (it keeps its connections and
// answers nothing: a hung server) and returns the function that resumes it
// with SIGCONT. The node's lock is held until then, as by NodeOutage.
func (r *Redis) NodePause(ctx context.Context, addr string) (Restore, error) {
	_, pid, unlock, err := r.lockNode(ctx, addr)
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		unlock()
		return nil, fmt.Errorf("redis %s: kill -STOP %d: %w", addr, pid, err)
	}
	return func(context.Context) error {
		defer unlock()
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("redis %s: kill -CONT %d: %w", addr, pid, err)
		}
		return nil
	}, nil
}

// lockNode takes the lock of the node at addr, which this package must
// have started, and returns the node and its pid.
func (r *Redis) lockNode(ctx context.Context, addr string) (redisNode, int, func(), error) {
	n, err := r.node(addr)
	if err != nil {
		return n, 0, nil, err
	}
	unlock, err := lock(ctx, r.s.State, n.lockName())
	if err != nil {
		return n, 0, nil, err
	}
	pid, err := n.pidfile().pid()
	if err != nil {
		unlock()
		return n, 0, nil, fmt.Errorf("redis %s: not started by this package: %w", addr, err)
	}
	return n, pid, unlock, nil
}

// ClusterAddrs are n cluster nodes on 127.0.0.1 from port base on
// (ClusterAddrs(7001, 6) is DefaultClusterAddrs).
func ClusterAddrs(base, n int) string {
	out := make([]string, n)
	for i := range out {
		out[i] = "127.0.0.1:" + strconv.Itoa(base+i)
	}
	return strings.Join(out, ",")
}

// nodeClient is a client of the one node at addr (no redirects followed).
func nodeClient(addr string) (rueidis.Client, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	return rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{addr},
		DisableCache:      true,
		DisableRetry:      true,
		ForceSingleClient: true,
		Dialer:            net.Dialer{Timeout: 2 * time.Second},
	})
}

// nodeView is what one node says of the cluster.
type nodeView struct {
	addr    string
	id      string
	info    map[string]string // CLUSTER INFO
	nodes   []clusterNode     // CLUSTER NODES
	replOK  bool              // a replica whose link to its master is up (INFO replication), or a master
	version string
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, master string // master: the id of its master ("-" for a master)
	flags            []string
	slots            int // slots served
}

func (n clusterNode) is(flag string) bool { return slices.Contains(n.flags, flag) }

// view asks the node at addr for its view of the cluster.
func view(ctx context.Context, addr string) (nodeView, error) {
	v := nodeView{addr: addr}
	c, err := nodeClient(addr)
	if err != nil {
		return v, fmt.Errorf("redis %s: %w", addr, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rs := c.DoMulti(ctx, c.B().ClusterMyid().Build(), c.B().ClusterInfo().Build(), c.B().ClusterNodes().Build(),
		c.B().Info().Section("replication").Build(), c.B().Info().Section("server").Build())
	if v.id, err = rs[0].ToString(); err != nil {
		return v, fmt.Errorf("redis %s: CLUSTER MYID: %w", addr, err)
	}
	info, err := rs[1].ToString()
	if err != nil {
		return v, fmt.Errorf("redis %s: CLUSTER INFO: %w", addr, err)
	}
	v.info = infoMap(info)
	nodes, err := rs[2].ToString()
	if err != nil {
		return v, fmt.Errorf("redis %s: CLUSTER NODES: %w", addr, err)
	}
	v.nodes = parseClusterNodes(nodes)
	repl, _ := rs[3].ToString()
	ri := infoMap(repl)
	v.replOK = ri["role"] == "master" || ri["master_link_status"] == "up"
	server, _ := rs[4].ToString()
	v.version = infoMap(server)["redis_version"]
	return v, nil
}

// infoMap reads an INFO-style text of "name:value" lines (RESP3 sends
// CLUSTER INFO as a verbatim string, whose "txt:" format comes first).
func infoMap(s string) map[string]string {
	s = strings.TrimPrefix(s, "txt:")
	m := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// parseClusterNodes reads CLUSTER NODES: id ip:port@cport flags master
// ping pong epoch link slot...
func parseClusterNodes(s string) []clusterNode {
	var out []clusterNode
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{id: f[0], addr: addr, flags: strings.Split(f[2], ","), master: f[3]}
		for _, sl := range f[8:] {
			if strings.HasPrefix(sl, "[") { // a slot migrating or importing
				continue
			}
			a, b, ok := strings.Cut(sl, "-")
			lo, err1 := strconv.Atoi(a)
			hi, err2 := lo, error(nil)
			if ok {
				hi, err2 = strconv.Atoi(b)
			}
			if err1 == nil && err2 == nil && hi >= lo {
				n.slots += hi - lo + 1
			}
		}
		out = append(out, n)
	}
	return out
}

// myself is the node's own line.
func (v nodeView) myself() clusterNode {
	for _, n := range v.nodes {
		if n.is("myself") {
			return n
		}
	}
	return clusterNode{}
}

// views asks every node.
func (r *Redis) views(ctx context.Context) ([]nodeView, error) {
	var out []nodeView
	for _, n := range r.nodes() {
		v, err := view(ctx, n.addr)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// formed says why the cluster is not (yet) formed and healthy: every node
// knows every other, sees cluster_state ok and all 16384 slots assigned, the
// masters serve slots, and every replica is in sync with its master.
func formed(views []nodeView) error {
	masters := 0
	for _, v := range views {
		if v.info["cluster_known_nodes"] != strconv.Itoa(len(views)) {
			return fmt.Errorf("%s knows %s of %d nodes", v.addr, v.info["cluster_known_nodes"], len(views))
		}
		if v.info["cluster_slots_assigned"] != "16384" {
			return fmt.Errorf("%s: %s of 16384 slots assigned", v.addr, v.info["cluster_slots_assigned"])
		}
		if v.info["cluster_state"] != "ok" {
			return fmt.Errorf("%s: cluster_state %s", v.addr, v.info["cluster_state"])
		}
		me := v.myself()
		switch {
		case me.is("master") && me.slots > 0:
			masters++
		case me.is("master"):
			return fmt.Errorf("%s is a master without slots", v.addr)
		case !v.replOK:
			return fmt.Errorf("%s: replica not in sync with its master yet", v.addr)
		}
	}
	if want := max(len(views)/2, 3); masters != want {
		return fmt.Errorf("%d masters serve slots, want %d", masters, want)
	}
	return nil
}

// form joins the nodes into a cluster unless they already are one, and
// waits until it is healthy.
func (r *Redis) form(ctx context.Context) error {
	views, err := r.views(ctx)
	if err != nil {
		return err
	}
	if formed(views) == nil {
		r.s.logf("REDIS: cluster of %d nodes already formed (%s)", len(views), r.describe(views))
		return nil
	}
	nodes := r.nodes()
	nm := len(nodes) / 2
	if len(nodes) == 3 {
		nm = 3
	}
	cl := make([]rueidis.Client, len(nodes))
	for i, n := range nodes {
		if cl[i], err = nodeClient(n.addr); err != nil {
			return err
		}
		defer cl[i].Close()
	}
	do := func(i int, cmd rueidis.Completed) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := cl[i].Do(ctx, cmd).Error(); err != nil {
			return fmt.Errorf("redis %s: %w", nodes[i].addr, err)
		}
		return nil
	}
	// Distinct config epochs for fresh masters (as redis-cli does), so
	// that no epoch collision has to be resolved.
	for i := range nm {
		if views[i].info["cluster_known_nodes"] == "1" && views[i].info["cluster_current_epoch"] == "0" {
			_ = do(i, cl[i].B().ClusterSetConfigEpoch().ConfigEpoch(int64(i+1)).Build())
		}
	}
	for i := 1; i < len(nodes); i++ {
		host, port, _ := net.SplitHostPort(nodes[i].addr)
		p, _ := strconv.Atoi(port)
		if err := do(0, cl[0].B().ClusterMeet().Ip(host).Port(int64(p)).Build()); err != nil {
			return err
		}
	}
	if err := Poll(ctx, 60*time.Second, func(ctx context.Context) error {
		vs, err := r.views(ctx)
		if err != nil {
			return err
		}
		for _, v := range vs {
			if v.info["cluster_known_nodes"] != strconv.Itoa(len(nodes)) {
				return fmt.Errorf("%s knows %s of %d nodes", v.addr, v.info["cluster_known_nodes"], len(nodes))
			}
		}
		views = vs
		return nil
	}); err != nil {
		return fmt.Errorf("redis cluster: nodes do not meet: %w", err)
	}
	if views[0].info["cluster_slots_assigned"] == "0" {
		for i := range nm {
			lo, hi := int64(i*16384/nm), int64((i+1)*16384/nm-1)
			if err := do(i, cl[i].B().ClusterAddslotsrange().StartSlotEndSlot().StartSlotEndSlot(lo, hi).Build()); err != nil {
				return err
			}
		}
		r.s.logf("REDIS: cluster slots assigned to %d masters", nm)
	}
	for i := nm; i < len(nodes); i++ {
		if me := views[i].myself(); me.is("master") && me.slots == 0 {
			if err := do(i, cl[i].B().ClusterReplicate().NodeId(views[i%nm].id).Build()); err != nil {
				return err
			}
		}
	}
	if err := Poll(ctx, 90*time.Second, func(ctx context.Context) error {
		vs, err := r.views(ctx)
		if err != nil {
			return err
		}
		views = vs
		return formed(vs)
	}); err != nil {
		return fmt.Errorf("redis cluster not formed (if a former run left it half-made: make stop, then remove %s): %w", r.dir, err)
	}
	r.s.logf("REDIS: cluster formed: %s", r.describe(views))
	return nil
}

// describe is one line about the cluster: who serves what.
func (r *Redis) describe(views []nodeView) string {
	var masters, replicas []string
	for _, v := range views {
		if me := v.myself(); me.is("master") {
			masters = append(masters, fmt.Sprintf("%s (%d slots)", v.addr, me.slots))
		} else {
			replicas = append(replicas, v.addr)
		}
	}
	return fmt.Sprintf("masters %s; replicas %s; node timeout %s, full coverage not required",
		strings.Join(masters, ", "), strings.Join(replicas, ", "), ClusterNodeTimeout)
}

// clusterCheck says whether the cluster is formed and healthy.
func (r *Redis) clusterCheck(ctx context.Context) error {
	views, err := r.views(ctx)
	if err != nil {
		return err
	}
	if err := formed(views); err != nil {
		return fmt.Errorf("redis cluster: %w", err)
	}
	return nil
}

// clusterStatus describes the cluster.
func (r *Redis) clusterStatus(ctx context.Context) Status {
	nodes := r.nodes()
	st := Status{Name: r.Name(), Addr: r.addr, Log: filepath.Join(r.dir, "*", "redis.log")}
	var pids []string
	owned := 0
	for _, n := range nodes {
		if pid, err := n.pidfile().pid(); err == nil {
			owned++
			pids = append(pids, strconv.Itoa(pid))
			if st.Pid == 0 {
				st.Pid = pid
			}
		}
	}
	if owned == len(nodes) {
		st.Owned = true
		st.Stop = "kill " + strings.Join(pids, " ")
	}
	views, err := r.views(ctx)
	if err == nil {
		err = formed(views)
	}
	st.Up, st.Err = err == nil, err
	if st.Up {
		f, _ := redisInfo(ctx, nodes[0].addr)
		st.What = fmt.Sprintf("redis cluster %s, appendonly %s, appendfsync %s: %s", views[0].version, f.appendonly, f.appendfsync, r.describe(views))
	}
	return st
}
