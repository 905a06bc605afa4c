package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/redis/rueidis"

	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/loadtest/harness"
)

// The nemesis applies a schedule's steps at their times, each in its own
// goroutine (they overlap), heals each fault after its hold whatever
// happens, and notes when each held (a Window, for the checker).

// applier applies one step: it breaks its target, notes in w when the
// fault took effect (FromMs) and when it healed (ToMs), and heals it.
type applier func(n *nemesis, ctx context.Context, st Step, w *Window) error

// appliers are how each kind of step (Kinds) is applied.
var appliers = map[string]applier{
	"redis-kill":    (*nemesis).redisKill,
	"redis-stop":    (*nemesis).redisStop,
	"repl-cut":      (*nemesis).replCut,
	"migrate":       (*nemesis).migrate,
	"failover":      (*nemesis).failover,
	"api-kill":      (*nemesis).procKill,
	"consumer-kill": (*nemesis).procKill,
	"kafka-down":    (*nemesis).outage,
	"postgres-down": (*nemesis).outage,
	"restock":       (*nemesis).restock,
	"end":           (*nemesis).end,
}

type nemesis struct {
	r       *seedRun
	mu      sync.Mutex
	windows []Window
	actions []*harness.Action
}

// now is ms since the load's start.
func (n *nemesis) now() int64 { return time.Since(n.r.start).Milliseconds() }

// Run applies every step at its time and returns once all healed.
func (n *nemesis) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, st := range n.r.sched.Steps {
		wg.Go(func() {
			harness.Sleep(ctx, time.Until(n.r.start.Add(time.Duration(st.AtMs)*time.Millisecond)))
			if ctx.Err() != nil {
				return
			}
			w := Window{Step: i, Kind: st.Kind, Target: st.Target, FromMs: n.now()}
			n.r.event("step %d: %s", i, st)
			if err := appliers[st.Kind](n, ctx, st, &w); err != nil {
				w.Err = err.Error()
				n.r.event("step %d (%s): %v", i, st.Kind, err)
			}
			if w.ToMs == 0 {
				w.ToMs = n.now()
			}
			n.r.event("step %d: %s held %.1fs-%.1fs%s", i, st.Kind, float64(w.FromMs)/1000, float64(w.ToMs)/1000,
				map[bool]string{true: " (a master lost)"}[w.Loss])
			n.mu.Lock()
			n.windows = append(n.windows, w)
			n.mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(n.windows, func(a, b Window) int { return a.Step - b.Step })
}

// hold waits out the fault's hold (the step's for_ms) from its start.
func (n *nemesis) hold(ctx context.Context, st Step) {
	harness.Sleep(ctx, time.Until(n.r.start.Add(time.Duration(st.AtMs+st.ForMs)*time.Millisecond)))
}

// node resolves a Redis target to a node's address, and says whether it
// is a master now.
func (n *nemesis) node(ctx context.Context, target string) (addr string, master bool, err error) {
	kind, i, _, err := parseTarget(target)
	if err != nil {
		return "", false, err
	}
	if kind == "redis" {
		return n.r.Services.RedisAddr(TierStandalone), true, nil
	}
	m, rep, err := n.r.Services.Roles(ctx, n.r.stores.Redis, i)
	if kind == "master" {
		return m, true, err
	}
	return rep, false, err
}

// demoted reports whether the node at addr, a master before a fault, is a
// replica now: its replica took over, and writes it had not replicated
// are lost (on one Redis: never).
func (n *nemesis) demoted(ctx context.Context, addr string) bool {
	if n.r.sched.Tier != TierCluster {
		return false
	}
	_ = stack.Poll(ctx, 30*time.Second, func(ctx context.Context) error { return n.r.stack.Redis().Check(ctx) })
	shards, err := clusterShards(ctx, n.r.stores.Redis)
	return err == nil && !slices.ContainsFunc(shards, func(s rediscluster.Shard) bool { return s.Addr == addr })
}

// redisKill SIGKILLs a Redis node and starts it again after the hold.
func (n *nemesis) redisKill(ctx context.Context, st Step, w *Window) error {
	return n.redisNode(ctx, st, w, func(ctx context.Context, addr string) (stack.Restore, error) {
		return n.r.stack.Redis().NodeOutage(ctx, addr, syscall.SIGKILL)
	})
}

// redisStop SIGSTOPs a Redis node and SIGCONTs it after the hold.
func (n *nemesis) redisStop(ctx context.Context, st Step, w *Window) error {
	return n.redisNode(ctx, st, w, n.r.stack.Redis().NodePause)
}

// redisNode breaks a node with down, heals it after the hold, and notes
// whether a master was lost meanwhile (failed over while it was away).
func (n *nemesis) redisNode(ctx context.Context, st Step, w *Window, down func(context.Context, string) (stack.Restore, error)) error {
	addr, master, err := n.node(ctx, st.Target)
	if err != nil {
		return err
	}
	w.Node = addr
	restore, err := down(ctx, addr)
	if err != nil {
		n.r.alive(func(l *harness.Liveness) {
			l.ServiceErr = append(l.ServiceErr, fmt.Sprintf("%s %s: %v", st.Kind, addr, err))
		})
		return err
	}
	w.FromMs = n.now()
	n.hold(ctx, st)
	bg := context.WithoutCancel(ctx)
	if err := restore(bg); err != nil {
		n.r.alive(func(l *harness.Liveness) {
			l.ServiceErr = append(l.ServiceErr, fmt.Sprintf("%s %s not healed: %v", st.Kind, addr, err))
		})
		return err
	}
	w.ToMs = n.now()
	n.r.alive(func(l *harness.Liveness) { l.Outages++ })
	w.Loss = master && n.demoted(bg, addr)
	return nil
}

// shardRoles are the master and replica of shard i as a step found them.
type shardRoles struct {
	i               int
	master, replica string
}

// dialShard finds the master and replica of the step's shard now and
// connects, alone, to the one the step works on (role "master" or
// "replica"), which w notes. The caller closes the client.
func (n *nemesis) dialShard(ctx context.Context, st Step, w *Window, role string) (rueidis.Client, shardRoles, error) {
	_, i, _, _ := parseTarget(st.Target)
	master, replica, err := n.r.Services.Roles(ctx, n.r.stores.Redis, i)
	if err != nil {
		return nil, shardRoles{}, err
	}
	w.Node = master
	if role == "replica" {
		w.Node = replica
	}
	c, err := nodeClient(w.Node)
	return c, shardRoles{i, master, replica}, err
}

// replCut drops the replication link of a shard's master every 100 ms for
// the hold: its replica reconnects and catches up in between (about once
// a second), so it is always some way behind.
func (n *nemesis) replCut(ctx context.Context, st Step, w *Window) error {
	c, sh, err := n.dialShard(ctx, st, w, "master")
	if err != nil {
		return err
	}
	defer c.Close()
	cuts := 0
	for end := n.r.start.Add(time.Duration(st.AtMs+st.ForMs) * time.Millisecond); time.Now().Before(end) && ctx.Err() == nil; {
		if k, err := c.Do(ctx, c.B().Arbitrary("CLIENT", "KILL").Args("TYPE", "replica").Build()).AsInt64(); err == nil {
			cuts += int(k)
		}
		harness.Sleep(ctx, 100*time.Millisecond)
	}
	n.r.event("repl-cut %s: %d replica links dropped", sh.master, cuts)
	return nil
}

// migrate moves the slot of a campaign's bucket to the next shard's
// master by hand: its claims hash first, the rest after the hold (a claim
// meanwhile gets TRYAGAIN).
func (n *nemesis) migrate(ctx context.Context, st Step, w *Window) error {
	_, ci, b, _ := parseTarget(st.Target)
	lay, err := n.r.stores.Layout(ctx, n.r.campaigns[ci].ID)
	if err != nil {
		return err
	}
	if b >= lay.K() {
		return fmt.Errorf("campaign %d has %d buckets in Redis, not %d", n.r.campaigns[ci].ID, lay.K(), b+1)
	}
	claims := lay.Buckets[b].Claims()
	slot := rediscluster.Slot(claims)
	shards, err := clusterShards(ctx, n.r.stores.Redis)
	if err != nil {
		return err
	}
	from, _ := rediscluster.ShardOf(shards, claims)
	to, _, err := n.r.Services.Roles(ctx, n.r.stores.Redis, (n.r.Services.shardOf(from.Addr)+1)%3)
	if err != nil {
		return err
	}
	w.Node = fmt.Sprintf("slot %d %s -> %s", slot, from.Addr, to)
	m, err := rediscluster.StartMove(ctx, n.r.stores.Redis, slot, to)
	if err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	if err := m.Migrate(bg, claims); err != nil {
		// The source refused (NOREPLICAS: its replica not in sync yet,
		// after a failover): the slot must not stay half moved, migrating
		// on one master and importing on the other, through the rest of
		// the run (seed 159: a sold-out campaign's script got TRYAGAIN,
		// 503, until the end). The move is finished once it can be.
		n.r.event("step %d: slot %d not migrated (%v); finishing the move", w.Step, slot, err)
		if ferr := stack.Poll(bg, 90*time.Second, m.Finish); ferr != nil {
			return errors.Join(err, ferr)
		}
		return err
	}
	n.hold(ctx, st)
	return stack.Poll(bg, 90*time.Second, m.Finish)
}

// failover has a shard's replica take over (CLUSTER FAILOVER), and waits
// until it serves the shard's slots.
func (n *nemesis) failover(ctx context.Context, st Step, w *Window) error {
	c, sh, err := n.dialShard(ctx, st, w, "replica")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().ClusterFailover().Build()).Error(); err != nil {
		return fmt.Errorf("CLUSTER FAILOVER on %s: %w", sh.replica, err)
	}
	lo, _ := homeSlots(sh.i)
	now, err := harness.WaitMaster(context.WithoutCancel(ctx), n.r.stores.Redis, lo, sh.master)
	n.r.event("failover of shard %d: %s -> %s", sh.i, sh.master, now)
	return err
}

// procKill SIGKILLs an api replica or the consumer, and starts it again
// after the hold.
func (n *nemesis) procKill(ctx context.Context, st Step, w *Window) error {
	p := n.r.consumer
	if st.Kind == "api-kill" {
		_, i, _, _ := parseTarget(st.Target)
		p = n.r.apis[i]
	}
	if err := p.Signal(syscall.SIGKILL, 10*time.Second); err != nil {
		return err
	}
	w.FromMs = n.now()
	n.r.alive(func(l *harness.Liveness) { l.Kills[p.Name]++ })
	n.hold(ctx, st)
	bg := context.WithoutCancel(ctx)
	err := p.Start()
	if err == nil {
		err = p.WaitReady(bg, 90*time.Second)
	}
	w.ToMs = n.now()
	if err != nil {
		n.r.alive(func(l *harness.Liveness) { l.NotBack = append(l.NotBack, err.Error()) })
		return err
	}
	n.r.alive(func(l *harness.Liveness) { l.Restarts[p.Name]++ })
	return nil
}

// outage stops Kafka or PostgreSQL (SIGTERM: a controlled or fast stop;
// SIGKILL: a crash, immediate mode) and starts it again after the hold.
func (n *nemesis) outage(ctx context.Context, st Step, w *Window) error {
	name := map[string]string{"kafka-down": "kafka", "postgres-down": "postgres"}[st.Kind]
	svc, err := harness.Service(n.r.stack, name)
	if err != nil {
		return err
	}
	sig := map[string]syscall.Signal{"term": syscall.SIGTERM, "kill": syscall.SIGKILL}[st.Signal]
	restore, err := n.r.stack.Outage(ctx, svc, sig)
	if err != nil {
		n.r.alive(func(l *harness.Liveness) {
			l.ServiceErr = append(l.ServiceErr, fmt.Sprintf("%s not stopped: %v", name, err))
		})
		return err
	}
	w.FromMs = n.now()
	n.hold(ctx, st)
	if err := restore(context.WithoutCancel(ctx)); err != nil {
		// A broker killed right after a slow start may take longer than
		// one start's wait (its controller waits out the old session,
		// and replays the metadata of every earlier restart): one more
		// try before the run counts it as not brought back.
		n.r.event("step %d: %s not back yet (%v); starting it again", w.Step, name, err)
		if err2 := svc.Start(context.WithoutCancel(ctx)); err2 != nil {
			n.r.alive(func(l *harness.Liveness) {
				l.ServiceErr = append(l.ServiceErr, fmt.Sprintf("%s not started again: %v; then %v", name, err, err2))
			})
			return err2
		}
	}
	w.ToMs = n.now()
	n.r.alive(func(l *harness.Liveness) { l.Outages++ })
	return nil
}

// restock adds stock to a campaign, retried (same Idempotency-Key) until
// answered, then sent again on purpose: the repeat must be a replay.
func (n *nemesis) restock(ctx context.Context, st Step, w *Window) error {
	_, ci, _, _ := parseTarget(st.Target)
	c := n.r.campaigns[ci]
	a := &harness.Action{Kind: harness.ActionRestock, Campaign: c.ID, Amount: st.Amount, Count: st.Count,
		Base: c.Initial[st.Amount], Key: fmt.Sprintf("torture-%s-%d-%d", n.r.stamp, n.r.sched.Seed, w.Step),
		StartUnixMs: n.r.start.UnixMilli()}
	n.act(ctx, a)
	if a.Ack() != nil {
		n.r.merchant.Act(ctx, a, true, n.r.actionDeadline())
	}
	return nil
}

// end ends a campaign now, retried until answered.
func (n *nemesis) end(ctx context.Context, st Step, w *Window) error {
	_, ci, _, _ := parseTarget(st.Target)
	n.act(ctx, &harness.Action{Kind: harness.ActionEnd, Campaign: n.r.campaigns[ci].ID, StartUnixMs: n.r.start.UnixMilli()})
	return nil
}

// act sends a merchant action until answered (or the run's deadline for
// it) and keeps it for the checker.
func (n *nemesis) act(ctx context.Context, a *harness.Action) {
	n.mu.Lock()
	n.actions = append(n.actions, a)
	n.mu.Unlock()
	n.r.merchant.Act(ctx, a, false, n.r.actionDeadline())
}
