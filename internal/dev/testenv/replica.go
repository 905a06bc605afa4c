package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// ReplicaPair is a Redis master with one replica of its own, started for a
// test on free loopback ports and stopped when it ends: the tests of what
// a write waits for (REDIS_ACK=replica) stall the replica while the
// master goes on.
type ReplicaPair struct {
	Master  rueidis.Client // a client of the master, as the services use
	Replica rueidis.Client // a client of the replica
	replica *exec.Cmd
}

// NewReplicaPair starts the pair (redis-server from PATH, as `make test`
// installs it) and waits until the replica is in sync.
func NewReplicaPair(tb testing.TB) *ReplicaPair {
	tb.Helper()
	Need(tb, "redis-server")
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server: %v"+hint, err)
	}
	dir := tb.TempDir()
	mport, rport := freePort(tb), freePort(tb)
	start := func(name string, port int, extra ...string) *exec.Cmd {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
		args := append([]string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", d,
			"--save", "", "--appendonly", "no", "--protected-mode", "no"}, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = nil, nil
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start %s: %v", name, err)
		}
		tb.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGCONT)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		return cmd
	}
	start("master", mport, "--repl-diskless-sync-delay", "0")
	p := &ReplicaPair{replica: start("replica", rport, "--replicaof", "127.0.0.1", strconv.Itoa(mport))}
	client := func(port int) rueidis.Client {
		b := Boot()
		opt := b.RedisOptions()
		opt.InitAddress = []string{"127.0.0.1:" + strconv.Itoa(port)}
		var c rueidis.Client
		Eventually(tb, 10*time.Second, func() (bool, string) {
			c, err = rueidis.NewClient(opt)
			return err == nil, fmt.Sprintf("redis on %d: %v", port, err)
		})
		tb.Cleanup(c.Close)
		return c
	}
	p.Master, p.Replica = slotChecked{client(mport)}, client(rport)
	Eventually(tb, 10*time.Second, func() (bool, string) {
		info, err := p.Replica.Do(context.Background(), p.Replica.B().Info().Section("replication").Build()).ToString()
		return err == nil && strings.Contains(info, "master_link_status:up"), "the replica is not in sync"
	})
	// The replica's link can be up before the master counts it online
	// (WAIT would count no replica): a write WAITed on until it is counted.
	Eventually(tb, 10*time.Second, func() (bool, string) {
		rs := p.Master.DoMulti(context.Background(), p.Master.B().Set().Key("{testenv}:pair").Value("1").Build(),
			p.Master.B().Wait().Numreplicas(1).Timeout(200).Build().SetSlot("{testenv}:pair"))
		n, err := rs[1].AsInt64()
		return err == nil && n >= 1, fmt.Sprintf("the master does not count its replica: %d %v", n, err)
	})
	return p
}

// Stall stops the replica (SIGSTOP): it neither applies nor acknowledges
// the master's writes until Resume.
func (p *ReplicaPair) Stall(tb testing.TB) {
	tb.Helper()
	if err := p.replica.Process.Signal(syscall.SIGSTOP); err != nil {
		tb.Fatal(err)
	}
}

// Resume lets a stalled replica go on (SIGCONT).
func (p *ReplicaPair) Resume(tb testing.TB) {
	tb.Helper()
	if err := p.replica.Process.Signal(syscall.SIGCONT); err != nil {
		tb.Fatal(err)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
