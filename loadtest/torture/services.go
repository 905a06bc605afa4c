package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/pipeline"
)

// The torture's services are its own: a Redis, a Redis Cluster,
// PostgreSQL and Kafka on ports of their own (it kills and stops them),
// started and stopped through internal/dev/stack with their state under
// .local/torture, never the ones make services runs for everyone else.

// ServiceConfig says where the torture's services listen.
type ServiceConfig struct {
	RedisAddr   string          // the one Redis: 127.0.0.1:6390
	ClusterBase int             // the cluster's first port: 7101 (7101-7106, bus 17101-17106)
	PGPort      int             // PostgreSQL: 5440
	PGCluster   string          // the Debian cluster created there when none listens: torture
	KafkaPort   int             // 9192 (its controller 9193)
	KafkaMode   stack.KafkaMode // real, embedded or auto
	// KafkaRequireReal: a real broker or nothing (as make test in CI).
	KafkaRequireReal bool
}

// clusterAddrs are the cluster's six nodes: masters first, as formed.
func (c ServiceConfig) clusterAddrs() string { return stack.ClusterAddrs(c.ClusterBase, 6) }

// check refuses the ports of the services make services runs (others'
// tests and the dev stack use them; the torture kills what it runs).
func (c ServiceConfig) check() error {
	shared := append(strings.Split(stack.DefaultClusterAddrs, ","), app.DefaultRedisAddr, pipeline.DefaultBrokers)
	var errs []error
	for _, a := range append([]string{c.RedisAddr, "127.0.0.1:" + strconv.Itoa(c.KafkaPort)}, strings.Split(c.clusterAddrs(), ",")...) {
		if err := stack.CheckAddr(a); err != nil {
			errs = append(errs, err)
		}
		if slices.Contains(shared, a) {
			errs = append(errs, fmt.Errorf("%s is a port of the shared services (make services): the torture runs its own", a))
		}
	}
	if c.PGPort == 5432 {
		errs = append(errs, errors.New("PostgreSQL port 5432 is the shared cluster's: the torture runs its own"))
	}
	return errors.Join(errs...)
}

// Services are the torture's stacks: one Redis, and the cluster, with the
// same PostgreSQL and Kafka.
type Services struct {
	cfg        ServiceConfig
	state      string // .local/torture
	standalone *stack.Stack
	cluster    *stack.Stack
}

// NewServices prepares the stacks (it starts nothing).
func NewServices(cfg ServiceConfig, root string, logf func(string, ...any)) (*Services, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	base := stack.Config{Root: root, State: filepath.Join(root, ".local", "torture"), Cache: filepath.Join(root, ".cache"),
		PostgresPort: cfg.PGPort, PostgresCluster: cfg.PGCluster, KafkaAddr: "127.0.0.1:" + strconv.Itoa(cfg.KafkaPort),
		KafkaMode: cfg.KafkaMode, KafkaRequireReal: cfg.KafkaRequireReal, Logf: logf}
	one, cl := base, base
	one.RedisAddr, one.RedisMode = cfg.RedisAddr, stack.RedisStandalone
	cl.RedisAddr, cl.RedisMode = cfg.clusterAddrs(), stack.RedisCluster
	s := &Services{cfg: cfg, state: base.State}
	var err error
	if s.standalone, err = stack.New(one); err != nil {
		return nil, err
	}
	if s.cluster, err = stack.New(cl); err != nil {
		return nil, err
	}
	return s, nil
}

// Stack is the stack of a tier.
func (s *Services) Stack(tier string) *stack.Stack {
	if tier == TierCluster {
		return s.cluster
	}
	return s.standalone
}

// RedisAddr is the REDIS_ADDR of a tier.
func (s *Services) RedisAddr(tier string) string { return s.Stack(tier).Redis().Addr() }

// DSN is the torture's database.
func (s *Services) DSN() string { return s.standalone.Postgres().DSN("rain") }

// Brokers is the torture's Kafka.
func (s *Services) Brokers() string { return s.standalone.Kafka().Addr() }

// Up starts what the tiers need and is down, and checks that Redis and
// Kafka are the torture's own (started by it: it can bring them back as
// they were).
func (s *Services) Up(ctx context.Context, tiers []string) error {
	if stack.TCPReady(s.Brokers())(ctx) != nil {
		// A fresh KRaft storage for each invocation: a broker started
		// again and again replays every earlier registration at each
		// start, and a kafka-down step's restart grows past its wait.
		if err := os.RemoveAll(filepath.Join(s.state, "kafka", "data")); err != nil {
			return err
		}
	}
	if err := s.standalone.Up(ctx); err != nil {
		return err
	}
	if slices.Contains(tiers, TierCluster) {
		if err := s.cluster.Redis().Start(ctx); err != nil {
			return fmt.Errorf("redis cluster: %w", err)
		}
	}
	for _, tier := range tiers {
		for _, st := range s.Stack(tier).Status(ctx) {
			if !st.Up || !st.Owned && st.Name != "postgres" {
				return fmt.Errorf("%s at %s: up %v, started by the torture %v: it must be the torture's own (%v)", st.Name, st.Addr, st.Up, st.Owned, st.Err)
			}
		}
	}
	return nil
}

// Heal starts every service of the tier that is down and waits until all
// answer (a cluster: formed, every replica in sync).
func (s *Services) Heal(ctx context.Context, tier string) error {
	st := s.Stack(tier)
	if down := st.Down(ctx); len(down) > 0 {
		if err := st.Up(ctx); err != nil {
			return err
		}
	}
	return stack.Poll(ctx, 90*time.Second, func(ctx context.Context) error {
		if down := st.Down(ctx); len(down) > 0 {
			return fmt.Errorf("down: %s", strings.Join(down, ", "))
		}
		return nil
	})
}

// Stop stops every service the torture started (both Redis topologies,
// PostgreSQL, Kafka).
func (s *Services) Stop(ctx context.Context) error {
	_, err := s.cluster.Stop(ctx)
	return err
}

// Shard I of the cluster is the pair of nodes I and I+3 (as formed: the
// master and its replica); which of them is the master changes with
// failovers. At a run's start shard I serves the I-th third of the slots.

// pair is shard i's two nodes.
func (s *Services) pair(i int) []string {
	nodes := strings.Split(s.cfg.clusterAddrs(), ",")
	return []string{nodes[i], nodes[i+3]}
}

// shardOf is the shard whose pair holds addr (-1: none).
func (s *Services) shardOf(addr string) int {
	for i := range 3 {
		if slices.Contains(s.pair(i), addr) {
			return i
		}
	}
	return -1
}

// Roles are the master and the replica of shard i now.
func (s *Services) Roles(ctx context.Context, c rueidis.Client, i int) (master, replica string, err error) {
	shards, err := clusterShards(ctx, c)
	if err != nil {
		return "", "", err
	}
	p := s.pair(i)
	for _, sh := range shards {
		if j := slices.Index(p, sh.Addr); j >= 0 {
			return sh.Addr, p[1-j], nil
		}
	}
	return "", "", fmt.Errorf("shard %d (%v): no master serves slots", i, p)
}

// clusterShards is rediscluster.Shards, asked again a few times: CLUSTER
// SLOTS goes to any node, and one a step just killed refuses it (seed 124:
// a repl-cut not applied).
func clusterShards(ctx context.Context, c rueidis.Client) ([]rediscluster.Shard, error) {
	var err error
	for range 10 {
		var shards []rediscluster.Shard
		if shards, err = rediscluster.Shards(ctx, c); err == nil || ctx.Err() != nil {
			return shards, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, err
}

// homeSlots are the first and last slot of shard i's third, as the
// cluster was formed.
func homeSlots(i int) (lo, hi uint16) {
	return uint16(i * rediscluster.Slots / 3), uint16((i+1)*rediscluster.Slots/3 - 1)
}

// shardOfSlot is the shard whose third holds slot.
func shardOfSlot(slot uint16) int {
	for i := range 3 {
		if lo, hi := homeSlots(i); slot >= lo && slot <= hi {
			return i
		}
	}
	return -1
}

// Normalize moves back to its shard every slot an earlier run migrated
// away, so that shard I serves the I-th third of the slots again and a
// replayed schedule hits what it hit when it was recorded.
func (s *Services) Normalize(ctx context.Context, c rueidis.Client) (int, error) {
	shards, err := clusterShards(ctx, c)
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, sh := range shards {
		have := s.shardOf(sh.Addr)
		for _, r := range sh.Ranges {
			for slot := int(r[0]); slot <= int(r[1]); slot++ {
				want := shardOfSlot(uint16(slot))
				if want == have {
					continue
				}
				master, _, err := s.Roles(ctx, c, want)
				if err != nil {
					return moved, err
				}
				if err := rediscluster.MoveSlot(ctx, c, uint16(slot), master); err != nil {
					return moved, fmt.Errorf("slot %d back to shard %d: %w", slot, want, err)
				}
				moved++
			}
		}
	}
	return moved, nil
}

// nodeClient is a client of the one node at addr, following no redirect.
func nodeClient(addr string) (rueidis.Client, error) {
	if err := stack.CheckAddr(addr); err != nil {
		return nil, err
	}
	return rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, DisableRetry: true,
		ForceSingleClient: true, Dialer: net.Dialer{Timeout: 2 * time.Second}})
}
