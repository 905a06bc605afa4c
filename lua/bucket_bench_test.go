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

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/testenv"
	"github.com/redpacket/rain/lua"
)

// BenchmarkClaimBuckets measures one hot campaign's claims at K = 1
// (claim.lua on one slot: today's path) and K = 3 and 12 buckets
// (bucket_claim.lua, each bucket on its own slot), 1 or 16 users per call,
// unique users, a stock that does not run out (no refills), 64 goroutines
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
	b.SetParallelism(32) // enough calls in flight to keep 3 throttled shards busy
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		users := make([]string, n)
		rnds := make([]uint64, n)
		out := make([]lua.Result, n)
		for pb.Next() {
			// n users of one bucket (random across calls): a batcher
			// groups a bucket's opens as one campaign's today.
			base := seq.Add(1)
			bucket := rand.IntN(l.K())
			for i, j := 0, int64(0); i < n; j++ {
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
			if out[0].Outcome != lua.OK {
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
	total := 0.0
	for node, s := range after {
		total += s - before[node]
	}
	b.ReportMetric(total*1e6/claims, "redis-cpu-µs/claim")
	if len(after) > 1 {
		// The busiest node's share: near 1/nodes when the load spreads.
		busiest := 0.0
		for node, s := range after {
			busiest = max(busiest, s-before[node])
		}
		b.ReportMetric(busiest/total, "busiest-node-share")
	}
}

// clusterCPU reads used_cpu_user + used_cpu_sys of every node the client
// knows (one for a standalone Redis).
func clusterCPU(tb testing.TB, c rueidis.Client) map[string]float64 {
	tb.Helper()
	out := make(map[string]float64)
	for addr, node := range c.Nodes() {
		out[addr] = readRedisCost(tb, node).cpuSec
	}
	return out
}

// BenchmarkBucketSellOut sells out a campaign of 200,000 packets in K
// buckets with 32 claimers and measures its tail: the time from the first
// EMPTY answer to the first SOLD_OUT, the refills and steals, and the
// opens that would get 503 (EMPTY again after one rebalance and one
// retry, as the api answers them). Every packet must be claimed.
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

func sellOut(b *testing.B, c rueidis.Client, k int) {
	const total = 200_000
	ctx := context.Background()
	l := liveBuckets(b, c, k, map[int64]int64{1: total * 6 / 10, 5: total * 3 / 10, 20: total / 10})
	var (
		seq                          atomic.Int64
		firstEmpty, firstSold        atomic.Int64 // unix ns
		claimed, busy, empty, refill atomic.Int64
		steal                        atomic.Int64
		wg                           sync.WaitGroup
	)
	mark := func(a *atomic.Int64) { a.CompareAndSwap(0, time.Now().UnixNano()) }
	rebalance := func(bucket int) {
		mv, err := lua.Rebalance(ctx, c, l, bucket, 500, nil)
		switch {
		case errors.Is(err, lua.ErrLeaseHeld):
			time.Sleep(time.Millisecond) // another claimer is rebalancing
		case err != nil:
			b.Error(err)
		case mv.Kind == lua.MoveRefill:
			refill.Add(1)
		case mv.Kind == lua.MoveSteal:
			steal.Add(1)
		}
	}
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]lua.Result, 1)
			for firstSold.Load() == 0 {
				u := "s" + strconv.FormatInt(seq.Add(1), 36)
				bucket := lua.BucketOf(l.ID, u, k)
				for try := 0; ; try++ {
					if _, err := lua.ClaimBucket(ctx, c, l, bucket, []string{u}, []uint64{rand.Uint64()}, out); err != nil {
						b.Error(err)
						return
					}
					if out[0].Outcome != lua.Empty {
						break
					}
					empty.Add(1)
					mark(&firstEmpty)
					if try == 1 {
						busy.Add(1) // the api answers 503: nothing claimed
						break
					}
					rebalance(bucket)
				}
				switch out[0].Outcome {
				case lua.OK:
					claimed.Add(1)
				case lua.SoldOut:
					mark(&firstSold)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
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
