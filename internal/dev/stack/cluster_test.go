package stack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/rediscluster"
)

// freeClusterAddrs are n loopback addresses whose ports, and cluster bus
// ports (+10000), were free a moment ago; both below the kernel's
// ephemeral range (32768 and up), so that no connection or FreeAddr takes
// them meanwhile.
func freeClusterAddrs(t *testing.T, n int) string {
	var out []string
	for len(out) < n {
		p := 20000 + rand.IntN(2700)
		a := fmt.Sprintf("127.0.0.1:%d", p)
		if slices.Contains(out, a) || PortFree(a) != nil || PortFree(fmt.Sprintf("127.0.0.1:%d", p+10000)) != nil {
			continue
		}
		out = append(out, a)
	}
	return strings.Join(out, ",")
}

func TestCheckRedisMode(t *testing.T) {
	for _, c := range []struct {
		mode, addr string
		ok         bool
	}{
		{"", "127.0.0.1:6379", true},
		{RedisStandalone, "127.0.0.1:6379", true},
		{RedisCluster, DefaultClusterAddrs, true},
		{RedisCluster, "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", true},
		{RedisCluster, "127.0.0.1:7001,127.0.0.1:7002", false},
		{RedisCluster, "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003,127.0.0.1:7004,127.0.0.1:7005", false},
		{RedisCluster, "10.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", false},
		{"", DefaultClusterAddrs, false},
		{"sentinel", "127.0.0.1:6379", false},
	} {
		if err := checkRedis(c.mode, c.addr); (err == nil) != c.ok {
			t.Errorf("checkRedis(%q, %q) = %v, want ok=%v", c.mode, c.addr, err, c.ok)
		}
	}
	s, err := New(Config{RedisMode: RedisCluster})
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Redis(); !r.Cluster() || r.Addr() != DefaultClusterAddrs || len(r.Nodes()) != 6 {
		t.Errorf("cluster defaults: %s %v", r.Addr(), r.Nodes())
	}
	t.Setenv("REDIS_MODE", "cluster")
	t.Setenv("REDIS_ADDR", "")
	if cfg, err := FromEnv(); err != nil || cfg.RedisMode != RedisCluster {
		t.Errorf("FromEnv: %+v %v", cfg, err)
	}
}

func TestParseClusterNodes(t *testing.T) {
	out := "07c3 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922 [5460->-e7d1]\n" +
		"e7d1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 16000\n" +
		"67ed 127.0.0.1:7004@17004 slave e7d1 0 1 1 connected\n"
	nodes := parseClusterNodes(out)
	if len(nodes) != 3 || nodes[0].slots != 5462 || nodes[1].slots != 5462 || !nodes[1].is("myself") ||
		nodes[2].master != "e7d1" || nodes[2].is("master") || nodes[0].addr != "127.0.0.1:7002" {
		t.Errorf("%+v", nodes)
	}
	if m := infoMap("txt:cluster_state:ok\r\ncluster_known_nodes:6\r\n"); m["cluster_state"] != "ok" || m["cluster_known_nodes"] != "6" {
		t.Errorf("infoMap: %v", m)
	}
}

// TestRedisCluster starts a cluster of its own (3 masters, 3 replicas on
// free ports, in a temporary state directory), starts it again (nothing
// changes), kills a master (the cluster is not ready until its replica
// takes over), brings the dead node back (it rejoins as a replica), and
// stops it all.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs redis-server")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed (bash deploy/local/install.sh)")
	}
	ctx := context.Background()
	s, err := New(Config{State: t.TempDir(), RedisMode: RedisCluster, RedisAddr: freeClusterAddrs(t, 6), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Redis()
	t.Cleanup(func() { _, _ = r.Stop(context.Background()) })
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	views, err := r.views(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := formed(views); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(ctx); !st.Up || !st.Owned || !strings.Contains(st.What, "appendonly yes") {
		t.Errorf("status: %v", st)
	}
	// Again: reused as it is.
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := r.views(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range views {
		if views[i].id != again[i].id || views[i].myself().master != again[i].myself().master {
			t.Errorf("node %s changed on a second start: %s -> %s", views[i].addr, views[i].id, again[i].id)
		}
	}

	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: r.Nodes(), DisableCache: true,
		Dialer: net.Dialer{Timeout: time.Second}, ConnWriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := rediscluster.Ready(ctx, c); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	master := r.Nodes()[0]
	restore, err := r.NodeOutage(ctx, master, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	if err := rediscluster.Ready(ctx, c); err == nil {
		t.Error("Ready with a master killed")
	}
	// Its replica takes over after the node timeout and an election.
	if err := Poll(ctx, time.Minute, func(ctx context.Context) error { return rediscluster.Ready(ctx, c) }); err != nil {
		t.Fatalf("no failover: %v", err)
	}
	if err := restore(ctx); err != nil {
		t.Fatal(err)
	}
	if err := Poll(ctx, time.Minute, r.Check); err != nil {
		t.Fatalf("the killed master did not rejoin: %v", err)
	}
	v, err := view(ctx, master)
	if err != nil {
		t.Fatal(err)
	}
	if me := v.myself(); me.is("master") {
		t.Errorf("%s is a master again; want a replica of the node that took over", master)
	}

	stopped, err := r.Stop(ctx)
	if err != nil || !stopped {
		t.Fatalf("Stop: %v %v", stopped, err)
	}
	if err := r.Check(ctx); err == nil {
		t.Error("Check after Stop")
	}
}

func TestClusterAddrs(t *testing.T) {
	if got := ClusterAddrs(7001, 6); got != DefaultClusterAddrs {
		t.Errorf("ClusterAddrs(7001, 6) = %s, want %s", got, DefaultClusterAddrs)
	}
	if got := ClusterAddrs(7101, 3); got != "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103" {
		t.Errorf("ClusterAddrs(7101, 3) = %s", got)
	}
	if got := (redisNode{addr: "127.0.0.1:7104"}).lockName(); got != "redis-7104" {
		t.Errorf("lockName = %s", got)
	}
}
