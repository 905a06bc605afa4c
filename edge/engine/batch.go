package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redpacket/rain"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/lua"
)

// Group commit of claims. Most of a claim's Redis cost is the script's
// per-call overhead (reading the window, TIME and the stock), so opens of
// one campaign that arrive while a claim call of it is in flight queue up
// and go out together as the next call, when it returns: one script call
// decides up to BatchMax opens, each answered exactly as a call of its own
// would be. There is no timer: an idle campaign's open goes out at once,
// and batches grow only with the load (while Redis is busy).
//
// The goroutine that finds no call in flight leads: it runs the call,
// hands every other member its answer, then passes the lead to the first
// open that queued meanwhile, with the next batch, and returns to answer
// its own request. So no request waits for more than its own batch and
// the one before it.

var (
	claimBatchSize = metrics.NewPrometheusHistogramExt(`rain_claim_batch_size`, metrics.ExponentialBuckets(1, 2, 8))
	claimCalls     = metrics.NewCounter(`rain_claim_calls_total`)      // script calls
	claimOpens     = metrics.NewCounter(`rain_claim_call_opens_total`) // opens they decided
)

// claimReq is one open waiting in a campaign's queue.
type claimReq struct {
	user  string
	res   rain.Result
	left  int64 // a bucket's stock after the call (-1: not read)
	err   error
	batch []*claimReq // set when this request is handed the lead
	wake  chan struct{}
}

var claimReqs = sync.Pool{New: func() any { return &claimReq{wake: make(chan struct{}, 1)} }}

// claimQueue is one campaign's queue.
type claimQueue struct {
	mu      sync.Mutex
	busy    bool        // a call is in flight
	pending []*claimReq // opens for the next call
}

// claimTimeout bounds one claim call with its retries: past it the outcome
// is unknown (503), as for a lost connection. A call's bound is between it
// and claimTimeout + deadlineSpan (deadlines).
const claimTimeout = 2 * time.Second

// call runs one claim call under claimTimeout, from context.Background: a
// call must not be cut short by one client going away (the script runs
// anyway, for every member of a batch). An error reply proving that the
// script did not run (a slot migrating, a failover: TRYAGAIN, CLUSTERDOWN,
// LOADING, MOVED or ASK past the client's redirect bound) sends it again a
// few times (rediscluster.Retry) before it is returned (503).
//
// A panic in the call (the Redis client's, seen in its cluster retry path
// under a slot migration: make torture, seed 110) becomes its error, an
// unknown outcome answered 503 to every open of the batch: unrecovered, it
// left the batch's other opens waiting for ever and the campaign's queue
// busy, so that every later open of the campaign on that api waited too.
func (b *batcher) call(fn func(ctx context.Context) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			panicsClaim.Inc()
			log := b.log
			if log == nil {
				log = slog.Default()
			}
			log.Error("panic in a claim call: its opens are answered 503 (outcome unknown)", "panic", v, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", errCallPanicked, v)
		}
	}()
	ctx := b.deadlines.get()
	return rediscluster.Retry(ctx, func() error { return fn(ctx) })
}

var (
	panicsClaim     = metrics.NewCounter(`rain_panics_total{where="claim"}`)
	errCallPanicked = errors.New("claim call panicked")
)

// deadlines hands out the claim calls' contexts: one per deadlineSpan,
// shared by every call that starts in it, with a deadline claimTimeout +
// deadlineSpan after the span began. A context of its own per call cost
// five of an open's eight allocations and a timer set and stopped
// (pprof, BenchmarkOpenHandler); a shared one is made twenty times a second
// at most and ends by its own timer.
type deadlines struct{ cur atomic.Pointer[spanCtx] }

const deadlineSpan = 50 * time.Millisecond

type spanCtx struct {
	context.Context
	cancel context.CancelFunc // never called early: the deadline ends it
	until  time.Time          // handed out until then
}

func (d *deadlines) get() context.Context {
	now := time.Now()
	s := d.cur.Load()
	if s != nil && now.Before(s.until) {
		return s.Context
	}
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(claimTimeout+deadlineSpan))
	next := &spanCtx{Context: ctx, cancel: cancel, until: now.Add(deadlineSpan)}
	if d.cur.CompareAndSwap(s, next) {
		return ctx
	}
	cancel() // another call made the span's context first
	return d.cur.Load().Context
}

// batcher runs the claim calls of the campaigns.
type batcher struct {
	redis     rueidis.Client
	log       *slog.Logger // nil: the default logger
	max       int          // most opens per call; 1: every open its own call
	deadlines deadlines
}

// claimTarget is where a queue's calls go: a campaign's keys (claim.lua),
// or bucket b of a bucketed campaign's layout (claim.lua's bucket copy).
type claimTarget struct {
	k *lua.Keys
	l *lua.Layout
	b int
}

// claim decides user's open of the campaign of k through the campaign's
// queue q. An error means the outcome is unknown (the call may have run).
func (b *batcher) claim(q *claimQueue, k *lua.Keys, user string) (rain.Result, error) {
	res, _, err := b.claimAt(q, claimTarget{k: k}, user)
	return res, err
}

// claimBucket decides user's open of bucket bkt of the campaign of l
// through that bucket's queue q, and returns the bucket's stock after the
// call as well (-1: not read).
func (b *batcher) claimBucket(q *claimQueue, l *lua.Layout, bkt int, user string) (rain.Result, int64, error) {
	return b.claimAt(q, claimTarget{l: l, b: bkt}, user)
}

// exec runs one call of t's script for users.
func (t claimTarget) exec(ctx context.Context, c rueidis.Client, users []string, rnds []uint64, out []rain.Result) (int64, error) {
	if t.l != nil {
		return lua.ClaimBucket(ctx, c, t.l, t.b, users, rnds, out)
	}
	return -1, lua.ClaimBatch(ctx, c, t.k, users, rnds, out)
}

func (b *batcher) claimAt(q *claimQueue, t claimTarget, user string) (rain.Result, int64, error) {
	if b.max <= 1 {
		claimCalls.Inc()
		claimOpens.Inc()
		claimBatchSize.Update(1)
		var res rain.Result
		left := int64(-1)
		err := b.call(func(ctx context.Context) error {
			if t.l != nil {
				var out [1]rain.Result
				var err error
				left, err = t.exec(ctx, b.redis, []string{user}, []uint64{rand.Uint64()}, out[:])
				res = out[0]
				return err
			}
			var err error
			res, err = lua.Claim(ctx, b.redis, t.k, user, rand.Uint64())
			return err
		})
		return res, left, err
	}
	r := claimReqs.Get().(*claimReq)
	r.user = user
	q.mu.Lock()
	if q.busy {
		q.pending = append(q.pending, r)
		q.mu.Unlock()
		<-r.wake
	} else {
		q.busy = true
		q.mu.Unlock()
		r.batch = append(r.batch[:0], r)
	}
	if len(r.batch) > 0 { // this request leads a call
		b.run(q, t, r.batch)
		r.batch = r.batch[:0]
	}
	res, left, err := r.res, r.left, r.err
	r.user, r.res, r.left, r.err = "", rain.Result{}, 0, nil
	claimReqs.Put(r)
	return res, left, err
}

// run makes one call for batch (batch[0] is the caller's own request),
// wakes the other members with their answers, and hands the lead on.
func (b *batcher) run(q *claimQueue, t claimTarget, batch []*claimReq) {
	n := len(batch)
	var (
		usersBuf [64]string
		rndsBuf  [64]uint64
		outBuf   [64]rain.Result
	)
	users, rnds, out := usersBuf[:0], rndsBuf[:0], outBuf[:0]
	if n > len(usersBuf) {
		users, rnds, out = make([]string, 0, n), make([]uint64, 0, n), make([]rain.Result, 0, n)
	}
	for _, r := range batch {
		users = append(users, r.user)
		rnds = append(rnds, rand.Uint64())
	}
	out = out[:n]
	claimCalls.Inc()
	claimOpens.Add(n)
	claimBatchSize.Update(float64(n))
	left := int64(-1)
	err := b.call(func(ctx context.Context) error {
		var err error
		left, err = t.exec(ctx, b.redis, users, rnds, out)
		return err
	})
	for i, r := range batch {
		r.res, r.left, r.err = out[i], left, err
	}

	q.mu.Lock()
	var next []*claimReq
	if len(q.pending) == 0 {
		q.busy = false
	} else {
		take := min(len(q.pending), b.max)
		lead := q.pending[0]
		next = append(lead.batch[:0], q.pending[:take]...)
		lead.batch = next
		rest := copy(q.pending, q.pending[take:])
		clear(q.pending[rest:])
		q.pending = q.pending[:rest]
	}
	q.mu.Unlock()

	for _, r := range batch[1:] {
		r.wake <- struct{}{}
	}
	if next != nil {
		next[0].wake <- struct{}{}
	}
}
