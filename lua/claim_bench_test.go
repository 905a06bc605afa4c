package lua_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// BenchmarkClaimBatch measures what a claim costs Redis at 1, 4, 16 and 64
// users per call of claim.lua: unique users, a stock that does not run out,
// 16 goroutines sharing one auto-pipelining client. Besides the time per
// call it reports Redis CPU per claim (the process's used_cpu_user +
// used_cpu_sys from INFO, so run it against a Redis nobody else is using)
// and the time Redis spent inside EVALSHA per claim (INFO commandstats).
// For example, with a private Redis configured like the local one:
//
//	redis-server --port 6390 --appendonly yes --appendfsync everysec --save '' --daemonize yes --dir /tmp
//	REDIS_ADDR=127.0.0.1:6390 go test -run '^$' -bench ClaimBatch -benchtime 3s -count 3 ./lua
func BenchmarkClaimBatch(b *testing.B) {
	c := testenv.Redis(b)
	for _, n := range []int{1, 4, 16, 64} {
		b.Run("n="+strconv.Itoa(n), func(b *testing.B) {
			k := live(b, c, map[int64]int64{1: 1e8, 5: 1e8, 20: 1e8})
			var seq atomic.Int64
			before := readRedisCost(b, c)
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				users := make([]string, n)
				rnds := make([]uint64, n)
				out := make([]rain.Result, n)
				for pb.Next() {
					base := seq.Add(int64(n)) - int64(n)
					for i := range users {
						users[i] = "user-" + strconv.FormatInt(base+int64(i), 10)
						rnds[i] = rand.Uint64()
					}
					if err := lua.ClaimBatch(context.Background(), c, k, users, rnds, out); err != nil {
						b.Error(err)
						return
					}
					if out[0].Outcome != rain.OK {
						b.Errorf("claim: %v, want OK", out[0].Outcome)
						return
					}
				}
			})
			b.StopTimer()
			after := readRedisCost(b, c)
			claims := float64(b.N * n)
			b.ReportMetric((after.cpuSec-before.cpuSec)*1e6/claims, "redis-cpu-µs/claim")
			b.ReportMetric(float64(after.evalUsec-before.evalUsec)/claims, "evalsha-µs/claim")
		})
	}
}

type redisCost struct {
	cpuSec   float64 // used_cpu_user + used_cpu_sys
	evalUsec int64   // time spent in EVALSHA and EVAL
}

func readRedisCost(tb testing.TB, c rueidis.Client) redisCost {
	tb.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("cpu", "commandstats").Build()).ToString()
	if err != nil {
		tb.Fatal(err)
	}
	var rc redisCost
	for _, line := range strings.Split(info, "\r\n") {
		name, v, _ := strings.Cut(line, ":")
		switch name {
		case "used_cpu_user", "used_cpu_sys":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("INFO %s", line)
			}
			rc.cpuSec += f
		case "cmdstat_evalsha", "cmdstat_eval":
			for _, kv := range strings.Split(v, ",") {
				if us, ok := strings.CutPrefix(kv, "usec="); ok {
					n, err := strconv.ParseInt(us, 10, 64)
					if err != nil {
						tb.Fatalf("INFO %s", line)
					}
					rc.evalUsec += n
				}
			}
		}
	}
	if rc.cpuSec == 0 {
		tb.Fatal("INFO has no used_cpu_user/used_cpu_sys")
	}
	return rc
}
