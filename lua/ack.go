package lua

import (
	"context"
	"errors"
	"strconv"
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
// What each mode promises, in one table: docs/durability.md.

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
	ackWait     = metrics.NewPrometheusHistogram(`rain_redis_ack_wait_seconds`)
	ackTimeouts = metrics.NewCounter(`rain_redis_ack_timeouts_total`)
)

// syncTTLMillis bounds how long a slot's sync key outlives its last use.
const syncTTLMillis = 60_000

// do runs cmds on the slot of syncKey (every command of cmds on that slot)
// and, when a acks with replicas, the sync write and WAIT after them on the
// same connection. It returns cmds' results, and ErrNotAcked when fewer
// replicas than asked hold them by the timeout (the results still say
// what ran on the master).
func (a Ack) do(ctx context.Context, c rueidis.Client, syncKey string, cmds ...rueidis.Completed) ([]rueidis.RedisResult, error) {
	if a.Replicas <= 0 {
		return c.DoMulti(ctx, cmds...), nil
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	n := len(cmds)
	// PING leads: rueidis marks the first command of a DoMulti holding a
	// blocking command (WAIT) as blocking, in the caller's slice, and a
	// marked command that a slot migration redirects with ASK is sent
	// again after an ASKING that its reply is then taken for: its results
	// shift by one and rueidis v1.0.79 panics (index out of range in the
	// cluster's retry path; make torture, seed 110). PING is never
	// redirected.
	all := make([]rueidis.Completed, 0, n+3)
	all = append(all, c.B().Ping().Build().SetSlot(syncKey))
	all = append(all, cmds...)
	all = append(all,
		c.B().Set().Key(syncKey).Value(strconv.FormatInt(time.Now().UnixMilli(), 10)).PxMilliseconds(syncTTLMillis).Build(),
		c.B().Wait().Numreplicas(a.Replicas).Timeout(max(timeout.Milliseconds(), 1)).Build().SetSlot(syncKey))
	start := time.Now()
	res := c.DoMulti(ctx, all...)[1:]
	ackWait.UpdateDuration(start)
	if err := res[n].Error(); err != nil { // the sync write: NOREPLICAS, a lost connection...
		return res[:n], err
	}
	got, err := res[n+1].AsInt64()
	if err != nil {
		return res[:n], err
	}
	if got < a.Replicas {
		ackTimeouts.Inc()
		return res[:n], ErrNotAcked
	}
	return res[:n], nil
}

// barrier makes every write made to the slot of syncKey before it count
// only once replicas hold it: a sync write and WAIT (nothing without
// replicas to wait for).
func (a Ack) barrier(ctx context.Context, c rueidis.Client, syncKey string) error {
	if a.Replicas <= 0 {
		return nil
	}
	_, err := a.do(ctx, c, syncKey)
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
	res, err := a.do(ctx, c, syncKey, cmd)
	if e, ok := rueidis.IsRedisErr(res[0].Error()); ok && e.IsNoScript() {
		cmd = c.B().Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
		res, err = a.do(ctx, c, syncKey, cmd)
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
