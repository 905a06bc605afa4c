package lua

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
)

// What a write waits for before it counts as made (REDIS_ACK). Redis
// replicates asynchronously: a master that dies with writes its replica
// never received takes them along, and the promoted replica has the old
// stock and does not know those claimants. In replica mode every write that
// moves stock or records a claim is followed, on the same connection, by a
// write of the slot's sync key and WAIT: WAIT counts the replicas that hold
// every write the connection made, and the sync key makes that "every
// write up to now" even when the script itself wrote nothing (a batch of
// repeats answers from claims an earlier call made). rueidis sends a
// DoMulti holding a blocking command (WAIT) on one dedicated connection,
// so the script, the sync write and WAIT go down one connection in order.
//
// On a cluster a slot being migrated breaks that "one connection": a
// script whose keys have left the migrating master is redirected by ASK
// and runs on the importing one, while WAIT, which has no key, stays with
// the migrating master and counts its replicas. So there the sync write is
// a script on the written keys that answers the id of the node it ran on
// (where the keys are, so where the writes went), and CLUSTER MYID after
// WAIT names the node that waited; when they differ the wait is made again
// on the node that holds the keys (waitOn). What each mode promises, in
// one table: docs/durability.md.

// Ack is what a write waits for: the master's reply alone (Replicas 0, the
// zero value), or Replicas replicas holding it within Timeout.
type Ack struct {
	Replicas int64
	Timeout  time.Duration // WAIT's; default 50 ms
}

// ErrNotAcked is the error of a write that ran on the master but was not
// acknowledged by the replicas Ack asks for in time: it stands in Redis
// (and reaches a replica later, unless the master dies first), but it must
// not be promised to anyone yet.
var ErrNotAcked = errors.New("write not acknowledged by a replica in time")

var (
	ackWait       = metrics.NewPrometheusHistogram(`rain_redis_ack_wait_seconds`)
	ackTimeouts   = metrics.NewCounter(`rain_redis_ack_timeouts_total`)
	ackRedirected = metrics.NewCounter(`rain_redis_ack_redirected_total`)
)

// syncProbe is the sync write on a cluster: KEYS are the keys the writes
// before it touched, then the slot's sync key; ARGV the sync value and its
// TTL in ms. It answers the id of the node it ran on. The named keys send
// it where they are: with ASK to the importing master once they have left
// the migrating one, as they sent the writes (TRYAGAIN, an error, when
// only some have left).
const syncProbe = `redis.call('SET', KEYS[#KEYS], ARGV[1], 'PX', ARGV[2])
return redis.call('CLUSTER', 'MYID')`

// syncTTLMillis bounds how long a slot's sync key outlives its last use.
const syncTTLMillis = 60_000

// do runs cmds on the slot of syncKey (every command of cmds on that slot)
// and, when a acks with replicas, the sync write and WAIT after them on the
// same connection. keys are the keys cmds touch (a barrier's: those the
// writes before it touched). It returns cmds' results, and ErrNotAcked
// when fewer replicas than asked hold them by the timeout (the results
// still say what ran on the master).
func (a Ack) do(ctx context.Context, c rueidis.Client, syncKey string, keys []string, cmds ...rueidis.Completed) ([]rueidis.RedisResult, error) {
	if a.Replicas <= 0 {
		return c.DoMulti(ctx, cmds...), nil
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	cluster := c.Mode() == rueidis.ClientModeCluster
	n := len(cmds)
	// PING leads: rueidis marks the first command of a DoMulti holding a
	// blocking command (WAIT) as blocking, in the caller's slice, and a
	// marked command that a slot migration redirects with ASK is sent
	// again after an ASKING that its reply is then taken for: its results
	// shift by one and rueidis v1.0.79 panics (index out of range in the
	// cluster's retry path; make torture, seed 110). PING is never
	// redirected.
	all := make([]rueidis.Completed, 0, n+4)
	all = append(all, c.B().Ping().Build().SetSlot(syncKey))
	all = append(all, cmds...)
	value := strconv.FormatInt(time.Now().UnixMilli(), 10)
	if cluster {
		all = append(all, c.B().Eval().Script(syncProbe).Numkeys(int64(len(keys)+1)).Key(keys...).Key(syncKey).
			Arg(value, strconv.Itoa(syncTTLMillis)).Build())
	} else {
		all = append(all, c.B().Set().Key(syncKey).Value(value).PxMilliseconds(syncTTLMillis).Build())
	}
	all = append(all, c.B().Wait().Numreplicas(a.Replicas).Timeout(max(timeout.Milliseconds(), 1)).Build().SetSlot(syncKey))
	if cluster {
		all = append(all, c.B().ClusterMyid().Build().SetSlot(syncKey))
	}
	start := time.Now()
	defer ackWait.UpdateDuration(start)
	res := c.DoMulti(ctx, all...)[1:]
	if err := res[n].Error(); err != nil { // the sync write: NOREPLICAS, TRYAGAIN, a lost connection...
		return res[:n], err
	}
	got, err := res[n+1].AsInt64()
	if err != nil {
		return res[:n], err
	}
	if cluster {
		if got, err = a.redirected(ctx, c, syncKey, timeout, got, res[n], res[n+2]); err != nil {
			return res[:n], err
		}
	}
	if got < a.Replicas {
		ackTimeouts.Inc()
		return res[:n], ErrNotAcked
	}
	return res[:n], nil
}

// redirected is the count of replicas that hold the writes (got, WAIT's)
// once the node that ran the sync probe (ran) and the node that waited
// (waited, CLUSTER MYID's) are compared: the same node, got; else the wait
// made again on the node that ran the probe (waitOn).
func (a Ack) redirected(ctx context.Context, c rueidis.Client, syncKey string, timeout time.Duration, got int64, ran, waited rueidis.RedisResult) (int64, error) {
	ranID, err := ran.ToString()
	if err != nil {
		return 0, err
	}
	waitedID, err := waited.ToString()
	if err != nil {
		return 0, err
	}
	if ranID == waitedID {
		return got, nil
	}
	ackRedirected.Inc()
	return waitOn(ctx, c, ranID, syncKey, a.Replicas, timeout)
}

// waitOn is the wait made again on the node whose id is id, where writes
// were redirected to (see the top of this file): a sync write there (after
// ASKING: the slot may still be importing there) and WAIT, on one
// connection. The write goes to a key of its own, so that it never makes
// the slot's sync key on the importing node while the migrating one still
// holds it (MIGRATE would find the key busy). Its offset in the node's
// replication stream is past every write made there before it, the
// redirected ones and the keys the migration brought, so WAIT counts the
// replicas that hold those.
func waitOn(ctx context.Context, c rueidis.Client, id, syncKey string, replicas int64, timeout time.Duration) (int64, error) {
	node, err := nodeByID(ctx, c, id)
	if err != nil {
		return 0, err
	}
	res := node.DoMulti(ctx,
		node.B().Asking().Build(),
		node.B().Set().Key(syncKey+":"+strconv.FormatUint(rand.Uint64(), 36)).Value(id).PxMilliseconds(syncTTLMillis).Build(),
		node.B().Wait().Numreplicas(replicas).Timeout(max(timeout.Milliseconds(), 1)).Build())
	for _, r := range res[:2] {
		if err := r.Error(); err != nil {
			return 0, err
		}
	}
	return res[2].AsInt64()
}

// nodeIDs caches the cluster's node ids by address (CLUSTER MYID of each):
// an id names one node for its life, and the addresses are the client's
// own view of the cluster.
var nodeIDs sync.Map // address -> id

// nodeByID is the client of the node whose id is id.
func nodeByID(ctx context.Context, c rueidis.Client, id string) (rueidis.Client, error) {
	nodes := c.Nodes()
	for addr, node := range nodes {
		if known, ok := nodeIDs.Load(addr); ok && known == id {
			return node, nil
		}
	}
	for addr, node := range nodes {
		got, err := node.Do(ctx, node.B().ClusterMyid().Build()).ToString()
		if err != nil {
			continue // a node down: not the one that just ran the write
		}
		nodeIDs.Store(addr, got)
		if got == id {
			return node, nil
		}
	}
	return nil, fmt.Errorf("no node of the cluster has id %s", id)
}

// barrier makes every write made to the slot of syncKey before it count
// only once replicas hold it: a sync write and WAIT (nothing without
// replicas to wait for). keys are the keys those writes touched.
func (a Ack) barrier(ctx context.Context, c rueidis.Client, syncKey string, keys []string) error {
	if a.Replicas <= 0 {
		return nil
	}
	_, err := a.do(ctx, c, syncKey, keys)
	return err
}

// exec runs s on keys (one slot) with args, acknowledged as a asks: the
// script's result, and ErrNotAcked as do says. A node whose script cache
// lacks s (a restart, a failover) gets EVAL, acknowledged the same way.
func (s *script) exec(ctx context.Context, c rueidis.Client, a Ack, syncKey string, keys, args []string) (rueidis.RedisResult, error) {
	if a.Replicas <= 0 {
		return s.Exec(ctx, c, keys, args), nil
	}
	cmd := c.B().Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
	res, err := a.do(ctx, c, syncKey, keys, cmd)
	if e, ok := rueidis.IsRedisErr(res[0].Error()); ok && e.IsNoScript() {
		cmd = c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
		res, err = a.do(ctx, c, syncKey, keys, cmd)
	}
	return res[0], err
}

// multiAck is multi with each exec acknowledged on its own slot: parts[i]
// is the keys of execs[i]'s slot (its ack and its sync key). With no
// replicas to wait for it is multi (one pipelined round trip); else the
// execs run one after another, each with its WAIT. The error joins the
// ErrNotAcked of the execs not acknowledged.
func (s *script) multiAck(ctx context.Context, c rueidis.Client, execs []rueidis.LuaExec, parts []*Keys) ([]rueidis.RedisResult, error) {
	if len(parts) == 0 || parts[0].ack.Replicas <= 0 {
		return s.multi(ctx, c, execs), nil
	}
	res := make([]rueidis.RedisResult, len(execs))
	var errs []error
	for i, e := range execs {
		var err error
		res[i], err = s.exec(ctx, c, parts[i].ack, parts[i].sync, e.Keys, e.Args)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

// part is the keys of a slot of the campaign: -1 the home, else a bucket.
func (l *Layout) part(i int) *Keys {
	if i < 0 {
		return l.Home
	}
	return l.Buckets[i].Keys
}
