package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/redpacket/rain"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/lua"
)

// Opens of a bucketed campaign (K > 1 buckets, each under a hash tag of
// its own; lua/keys.go). A user's open goes to their bucket (by the stable
// hash, lua.BucketOf) through that bucket's queue, so group commit works
// per bucket as it does per campaign. A bucket that runs low asks the
// campaign's rebalancer for stock in the background; a bucket that is
// empty answers EMPTY (nothing claimed): the open waits, at most
// bucketWait, for the bucket's next rebalance (a refill from the pool, a
// steal from the fullest bucket at the tail, or the global empty check
// that makes every bucket answer SOLD_OUT) and asks once more, and is
// answered 503 if the bucket is still empty. So SOLD_OUT is answered only
// after the global check found nothing left anywhere.
//
// Answers from memory: the claims memo works per campaign as for K = 1
// (a user is in one bucket only); the sold-out filter holds the claimants
// of every bucket, built once the global check has made them all final
// (soldout.go).

const (
	bucketLow   = 250                   // a bucket left with fewer packets after an OK asks for a refill
	bucketChunk = 500                   // packets a rebalance moves into a bucket at most
	bucketWait  = 50 * time.Millisecond // an EMPTY open waits this long for its bucket's rebalance
	// rebalanceTry bounds how long one rebalance retries a lease held by
	// another process (an api replica rebalancing the same campaign).
	rebalanceTry = 200 * time.Millisecond
)

var (
	bucketRefills = metrics.NewCounter(`rain_bucket_moves_total{kind="refill"}`)
	bucketSteals  = metrics.NewCounter(`rain_bucket_moves_total{kind="steal"}`)
	bucketSoldOut = metrics.NewCounter(`rain_bucket_moves_total{kind="sold_out"}`)
	bucketEmpty   = metrics.NewCounter(`rain_bucket_empty_total`)     // EMPTY answers of a bucket
	bucketBusy    = metrics.NewCounter(`rain_bucket_empty_503_total`) // opens answered 503 still EMPTY
	bucketErrors  = metrics.NewCounter(`rain_bucket_rebalance_errors_total`)
	bucketMoved   = metrics.NewCounter(`rain_bucket_packets_moved_total`)
)

// rebalancer moves stock into the buckets of one campaign that ask for it,
// one rebalance at a time, in a goroutine that runs while there is work
// (at most one per campaign in this process) and recovers from panics.
type rebalancer struct {
	redis  rueidis.Client
	layout *lua.Layout
	opt    *lua.RebalanceOptions
	log    *slog.Logger
	lost   func(id int64) // the campaign's home is gone: lay it out again

	mu      sync.Mutex
	want    []bool          // buckets asked for
	done    []chan struct{} // per bucket: closed when its next rebalance ends
	running bool
}

func newRebalancer(r rueidis.Client, l *lua.Layout, opt *lua.RebalanceOptions, log *slog.Logger, lost func(int64)) *rebalancer {
	return &rebalancer{redis: r, layout: l, opt: opt, log: log, lost: lost, want: make([]bool, l.K()), done: make([]chan struct{}, l.K())}
}

// ask asks for a rebalance of bucket b and returns a channel closed when
// it has run.
func (r *rebalancer) ask(b int) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done[b] == nil {
		r.done[b] = make(chan struct{})
	}
	ch := r.done[b]
	r.want[b] = true
	if !r.running {
		r.running = true
		go r.loop()
	}
	return ch
}

// loop runs the asked rebalances until none is left.
func (r *rebalancer) loop() {
	for {
		r.mu.Lock()
		var bs []int
		var chs []chan struct{}
		for b, w := range r.want {
			if w {
				bs, chs = append(bs, b), append(chs, r.done[b])
				r.want[b], r.done[b] = false, nil
			}
		}
		if len(bs) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		for i, b := range bs {
			r.run(b)
			close(chs[i])
		}
	}
}

// run is one rebalance of bucket b; a panic is logged and counted.
func (r *rebalancer) run(b int) {
	defer RecoverGoroutine(r.log, "bucket rebalancer")
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	deadline := time.Now().Add(rebalanceTry)
	for {
		mv, err := lua.Rebalance(ctx, r.redis, r.layout, b, bucketChunk, r.opt)
		switch {
		case errors.Is(err, lua.ErrLeaseHeld) && time.Now().Before(deadline):
			time.Sleep(time.Millisecond)
			continue
		case errors.Is(err, lua.ErrLeaseHeld):
		case errors.Is(err, lua.ErrNotLoaded) && r.lost != nil:
			// The home (its window, pool and lease) is gone while buckets
			// serve: only a rebuild from PostgreSQL brings the stock back.
			bucketErrors.Inc()
			r.log.Warn("bucketed campaign's home missing from redis: laying it out again", "campaign_id", r.layout.ID)
			r.lost(r.layout.ID)
		case err != nil:
			bucketErrors.Inc()
			r.log.Warn("bucket rebalance failed", "campaign_id", r.layout.ID, "bucket", b, "err", err)
		}
		switch mv.Kind {
		case lua.MoveRefill:
			bucketRefills.Inc()
		case lua.MoveSteal:
			bucketSteals.Inc()
		case lua.MoveSoldOut:
			bucketSoldOut.Inc()
		}
		bucketMoved.Add(int(mv.Moved))
		return
	}
}

// claimBuckets decides user's open of a bucketed campaign: see the top of
// this file. Busy (a frozen campaign being rebuilt) and an EMPTY left after
// the wait come back as they are: the caller answers 503.
func (e *Engine) claimBuckets(c *hotCampaign, user string) (rain.Result, error) {
	l := c.layout
	b := lua.BucketOf(l.ID, user, l.K())
	for try := 0; ; try++ {
		res, left, err := e.batch.claimBucket(&c.queues[b], l, b, user)
		if err != nil {
			return res, err
		}
		if res.Outcome == rain.OK && left >= 0 && left < bucketLow {
			c.rebal.ask(b)
		}
		if res.Outcome != rain.Empty {
			return res, nil
		}
		bucketEmpty.Inc()
		if try == 1 {
			bucketBusy.Inc()
			return res, nil
		}
		t := time.NewTimer(bucketWait)
		select {
		case <-c.rebal.ask(b):
		case <-t.C:
		}
		t.Stop()
	}
}

// layoutOf is the layout of campaign id: its in-process state's, else as
// Redis holds it; a campaign Redis does not hold reads as one bucket.
func (e *Engine) layoutOf(ctx context.Context, id int64) (*lua.Layout, error) {
	if c := e.hot.peek(id); c != nil && c.layout != nil {
		return c.layout, nil
	}
	l, loaded, err := e.keys.LayoutOf(ctx, e.redis, id)
	if err != nil || loaded {
		return l, err
	}
	return e.keys.Layout(id, 1)
}
