package lua_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// BenchmarkClaimBuckets measures one hot campaign's claims at K = 1
// (claim.lua on one slot: today's path) and K = 3 and 12 buckets
// (claim.lua's bucket copy, each bucket on its own slot), 1 or 16 users per call,
// unique users, a stock that does not run out (no refills), 256 goroutines
// sharing one auto-pipelining client. It reports claims/s and Redis CPU
// per claim summed over every node the client knows (used_cpu_user +
// used_cpu_sys from INFO), so run it against Redis nobody else is using:
// a standalone one for the cost of buckets, a cluster of cgroup-limited
// masters for the scaling (lua/testdata/bucket-shards.sh starts both).
//
//	redis-server --port 6391 --appendonly yes --appendfsync everysec --save '' --daemonize yes --dir /tmp
//	REDIS_ADDR=127.0.0.1:6391 go test -run '^$' -bench ClaimBuckets -benchtime 5s -count 3 ./lua
func BenchmarkClaimBuckets(b *testing.B) {
	c := testenv.Redis(b)
	for _, k := range []int{1, 3, 12} {
		for _, n := range []int{1, 16} {
			b.Run(fmt.Sprintf("k=%d/n=%d", k, n), func(b *testing.B) {
				l := liveBuckets(b, c, k, map[int64]int64{1: 3e8, 5: 3e8, 20: 3e8})
				benchClaims(b, c, l, n)
			})
		}
	}
}

// benchClaims claims b.N calls of n users each, in parallel, and reports
// the rates and Redis's CPU.
func benchClaims(b *testing.B, c rueidis.Client, l *lua.Layout, n int) {
	var seq atomic.Int64
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	before := clusterCPU(b, c)
	b.SetParallelism(128) // calls enough in flight to keep 3 throttled shards busy
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		users := make([]string, n)
		rnds := make([]uint64, n)
		out := make([]rain.Result, n)
		for pb.Next() {
			// n users of one bucket: a batcher groups a bucket's opens as
			// one campaign's today. One user goes to their own bucket.
			base := seq.Add(1)
			bucket := rand.IntN(l.K())
			if n == 1 {
				users[0], rnds[0] = "u"+run+"-"+strconv.FormatInt(base, 36), rand.Uint64()
				bucket = lua.BucketOf(l.ID, users[0], l.K())
			}
			for i, j := 0, int64(0); n > 1 && i < n; j++ {
				u := "u" + run + "-" + strconv.FormatInt(base, 36) + "-" + strconv.FormatInt(j, 36)
				if lua.BucketOf(l.ID, u, l.K()) == bucket {
					users[i], rnds[i] = u, rand.Uint64()
					i++
				}
			}
			if _, err := lua.ClaimBucket(context.Background(), c, l, bucket, users, rnds, out); err != nil {
				b.Error(err)
				return
			}
			if out[0].Outcome != rain.OK {
				b.Errorf("claim: %v, want OK", out[0].Outcome)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	after := clusterCPU(b, c)
	claims := float64(b.N * n)
	b.ReportMetric(claims/elapsed.Seconds(), "claims/s")
	var cpu, eval, busiest float64
	for node, s := range after {
		d := s.cpuSec - before[node].cpuSec
		cpu += d
		eval += float64(s.evalUsec - before[node].evalUsec)
		busiest = max(busiest, d)
	}
	b.ReportMetric(cpu*1e6/claims, "redis-cpu-µs/claim")
	b.ReportMetric(eval/claims, "evalsha-µs/claim")
	if len(after) > 1 {
		// The busiest node's share: near 1/nodes when the load spreads.
		b.ReportMetric(busiest/cpu, "busiest-node-share")
	}
}

// clusterCPU reads the cost counters of every node the client knows (one
// for a standalone Redis).
func clusterCPU(tb testing.TB, c rueidis.Client) map[string]redisCost {
	tb.Helper()
	out := make(map[string]redisCost)
	for addr, node := range c.Nodes() {
		out[addr] = readRedisCost(tb, node)
	}
	return out
}

// BenchmarkBucketSellOut sells out a campaign of 200,000 packets in K
// buckets with 32 claimers driving the scripts as the api would: after an
// OK that leaves a bucket below 250 packets, a refill of 500 runs in the
// background (one per bucket at a time in this process); an EMPTY answer
// waits for that bucket's rebalance (at most 50 ms, the lease may be held
// elsewhere) and asks once more, and is answered 503 if still EMPTY. It
// reports the tail (from the first EMPTY answer to the first SOLD_OUT),
// the 503s, refills and steals; every packet must be claimed.
//
//	REDIS_ADDR=127.0.0.1:6391 go test -run '^$' -bench BucketSellOut -benchtime 1x -count 3 ./lua
func BenchmarkBucketSellOut(b *testing.B) {
	c := testenv.Redis(b)
	for _, k := range []int{3, 12} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			for range b.N {
				sellOut(b, c, k)
			}
		})
	}
}

// flight runs one rebalance of a bucket at a time in this process; others
// asking meanwhile wait for it.
type flight struct {
	mu   sync.Mutex
	done chan struct{} // nil: none running
}

func sellOut(b *testing.B, c rueidis.Client, k int) {
	const total, low, chunk = 200_000, 250, 500
	ctx := context.Background()
	l := liveBuckets(b, c, k, map[int64]int64{1: total * 6 / 10, 5: total * 3 / 10, 20: total / 10})
	var (
		seq                   atomic.Int64
		firstEmpty, firstSold atomic.Int64 // unix ns
		claimed, busy, empty  atomic.Int64
		refill, steal         atomic.Int64
		wg                    sync.WaitGroup
	)
	flights := make([]flight, k)
	mark := func(a *atomic.Int64) { a.CompareAndSwap(0, time.Now().UnixNano()) }
	// rebalance runs or joins bucket's rebalance; wait bounds how long it
	// retries a lease held elsewhere.
	rebalance := func(bucket int, wait time.Duration) {
		f := &flights[bucket]
		f.mu.Lock()
		if ch := f.done; ch != nil {
			f.mu.Unlock()
			select {
			case <-ch:
			case <-time.After(wait):
			}
			return
		}
		ch := make(chan struct{})
		f.done = ch
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			f.done = nil
			f.mu.Unlock()
			close(ch)
		}()
		deadline := time.Now().Add(wait)
		for {
			mv, err := lua.Rebalance(ctx, c, l, bucket, chunk, nil)
			switch {
			case errors.Is(err, lua.ErrLeaseHeld) && time.Now().Before(deadline):
				time.Sleep(500 * time.Microsecond)
				continue
			case errors.Is(err, lua.ErrLeaseHeld):
			case err != nil:
				b.Error(err)
			case mv.Kind == lua.MoveRefill:
				refill.Add(1)
			case mv.Kind == lua.MoveSteal:
				steal.Add(1)
			}
			return
		}
	}
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]rain.Result, 1)
			for firstSold.Load() == 0 {
				u := "s" + strconv.FormatInt(seq.Add(1), 36)
				bucket := lua.BucketOf(l.ID, u, k)
				for try := 0; ; try++ {
					left, err := lua.ClaimBucket(ctx, c, l, bucket, []string{u}, []uint64{rand.Uint64()}, out)
					if err != nil {
						b.Error(err)
						return
					}
					if out[0].Outcome == rain.OK && left >= 0 && left < low {
						go rebalance(bucket, time.Second)
					}
					if out[0].Outcome != rain.Empty {
						break
					}
					empty.Add(1)
					mark(&firstEmpty)
					if try == 1 {
						busy.Add(1) // the api answers 503: nothing claimed
						break
					}
					rebalance(bucket, 50*time.Millisecond)
				}
				switch out[0].Outcome {
				case rain.OK:
					claimed.Add(1)
				case rain.SoldOut:
					mark(&firstSold)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i := range flights { // background refills still running
		f := &flights[i]
		f.mu.Lock()
		ch := f.done
		f.mu.Unlock()
		if ch != nil {
			<-ch
		}
	}
	if claimed.Load() != total {
		b.Errorf("%d claimed of %d", claimed.Load(), total)
	}
	if s := readBuckets(b, c, l); s.Left != 0 || s.Pending != 0 || s.Claims != total {
		b.Errorf("after the sell-out: %d left, %d pending, %d claims", s.Left, s.Pending, s.Claims)
	}
	tail := time.Duration(firstSold.Load() - firstEmpty.Load())
	b.ReportMetric(float64(total)/elapsed.Seconds(), "claims/s")
	b.ReportMetric(float64(tail.Microseconds())/1000, "tail-ms")
	b.ReportMetric(float64(busy.Load()), "tail-503s")
	b.ReportMetric(float64(empty.Load()), "empty-answers")
	b.ReportMetric(float64(refill.Load()), "refills")
	b.ReportMetric(float64(steal.Load()), "steals")
	unlinkLayout(c, l)
}
