package edge

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redpacket/rain/edge/engine"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
	"github.com/valyala/fasthttp"
)

var benchUser atomic.Int64

// appendOpenBody writes {"user_id":"bench-<n>"} for a new user.
func appendOpenBody(b []byte) []byte {
	b = append(b[:0], `{"user_id":"bench-`...)
	b = strconv.AppendInt(b, benchUser.Add(1), 10)
	return append(b, `"}`...)
}

// BenchmarkOpenHandler runs the whole open route (router, metrics, parse,
// claim.lua on the real Redis, ring push, response) on a reused RequestCtx:
// ns/op is one open's latency; allocs/op, set against BenchmarkClaimScript,
// is what the handler adds to rueidis's own.
func BenchmarkOpenHandler(b *testing.B) {
	h, id := newBenchServer(b, nil)
	benchOpens(b, h, id, 200)
}

// benchOpens runs the open route of campaign id for new users on a reused
// RequestCtx, each answered want.
func benchOpens(b *testing.B, h *harness, id int64, want int) {
	handler := h.srv.Handler()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod("POST")
	ctx.Request.SetRequestURI("/campaign/" + strconv.FormatInt(id, 10) + "/open")
	body := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		body = appendOpenBody(body)
		ctx.Request.SetBody(body)
		ctx.Response.Reset()
		handler(&ctx)
		if s := ctx.Response.StatusCode(); s != want {
			b.Fatalf("status %d: %s", s, ctx.Response.Body())
		}
	}
}

// BenchmarkClaimScript is claim.lua alone through rueidis: the floor under
// BenchmarkOpenHandler.
func BenchmarkClaimScript(b *testing.B) {
	h, id := newBenchServer(b, nil)
	k := testenv.Keys().Of(id)
	users := make([]string, 0, 1<<16)
	for i := 0; i < cap(users); i++ {
		users = append(users, "claim-"+strconv.FormatInt(benchUser.Add(1), 10))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(users) { // keep users unique without allocating in the loop
			b.StopTimer()
			for j := range users {
				users[j] = "claim-" + strconv.FormatInt(benchUser.Add(1), 10)
			}
			i = 0
			b.StartTimer()
		}
		r, err := lua.Claim(context.Background(), h.redis, k, users[i], rand.Uint64())
		if err != nil || r.Outcome != rain.OK {
			b.Fatalf("%v %v", r, err)
		}
		i++
	}
}

// BenchmarkOpenParallel drives the open route through the in-memory
// listener from many goroutines, as concurrent clients would (rueidis
// pipelines their scripts into one connection).
func BenchmarkOpenParallel(b *testing.B) {
	h, id := newBenchServer(b, nil)
	uri := "http://api/campaign/" + strconv.FormatInt(id, 10) + "/open"
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.Header.SetMethod("POST")
		req.SetRequestURI(uri)
		body := make([]byte, 0, 64)
		for pb.Next() {
			body = appendOpenBody(body)
			req.SetBody(body)
			if err := h.client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("%v %d %s", err, resp.StatusCode(), resp.Body())
				return
			}
		}
	})
}

// newBenchServer starts a harness with a campaign that cannot sell out
// during a benchmark and a ring drained without Kafka (the pipeline is
// measured end to end by make bench, not here).
func newBenchServer(b *testing.B, set func(*Config)) (*harness, int64) {
	b.Helper()
	h := newHarness(b, harnessOpt{ringSize: 1 << 16, set: set})
	id := h.live(`{"1":100000000,"2":100000000}`)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-h.ring.Events():
				h.ring.Done()
			case <-done:
				return
			}
		}
	}()
	b.Cleanup(func() { close(done) })
	return h, id
}

// BenchmarkSoldOutOpenHandler runs the whole open route for non-claimants
// of a sold-out campaign, answered from memory (410): no allocation.
func BenchmarkSoldOutOpenHandler(b *testing.B) {
	h := newHarness(b, harnessOpt{engine: func(c *engine.Config) { c.SoldOutTTL = time.Minute }})
	id := h.live(`{"1":1}`)
	h.open(id, "first")
	const fromMemory = `rain_claims_from_memory_total{result="SOLD_OUT"}`
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		before := counter(fromMemory)
		h.open(id, "probe-"+strconv.FormatInt(benchUser.Add(1), 10))
		if counter(fromMemory) > before {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the sold-out campaign is not answered from memory")
		}
	}
	benchOpens(b, h, id, 410)
}
