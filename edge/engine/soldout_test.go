package engine

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// testSet is a filter of users for campaign id, flagged until untilMs and
// last used at usedMs, as a build would make it.
func testSet(id int64, users []string, untilMs, usedMs int64) *soldOutSet {
	n := int64(len(users))
	f := bloom.NewWithEstimates(uint(max(n, 1)), soldOutFP)
	for _, u := range users {
		f.AddString(u)
	}
	s := &soldOutSet{id: id, claims: n, counts: []int64{n}, cost: soldOutCost(n), filter: f}
	s.until.Store(untilMs)
	s.used.Store(usedMs)
	return s
}

func users(prefix string, n int) []string {
	u := make([]string, n)
	for i := range u {
		u[i] = prefix + strconv.Itoa(i)
	}
	return u
}

func TestSoldOutCost(t *testing.T) {
	if c := soldOutCost(1_000_000); c < 1_700_000 || c > 1_900_000 {
		t.Errorf("a filter of a million claimants costs %d bytes, want about 1.8 MB", c)
	}
	if soldOutCost(0) <= soldOutOverhead || soldOutCost(2000) <= soldOutCost(1000) {
		t.Error("cost must grow with the claims and cover the bookkeeping")
	}
}

// TestSoldOutAnswers: a kept filter answers 410 for users it does not hold
// (nearly all non-claimants), never for a claimant, only while flagged,
// only for its campaign; and it costs no allocation.
func TestSoldOutAnswers(t *testing.T) {
	h := hotCampaigns{soldOutMs: 1000, soldOutBudget: 1 << 20}
	c := h.get(7)
	claimants := users("c", 5000)
	if !h.putSoldOut(c, testSet(7, claimants, 1000, 0)) {
		t.Fatal("a filter within the budget was not kept")
	}
	for _, u := range claimants {
		if c.soldOut([]byte(u), 999) {
			t.Fatalf("claimant %s answered 410 (a false negative)", u)
		}
	}
	refused := 0
	for _, u := range users("n", 10_000) {
		if c.soldOut([]byte(u), 999) {
			refused++
		}
	}
	if refused < 9_950 { // 0.1% false positives expected; 0.5% allowed
		t.Errorf("%d of 10000 non-claimants answered from memory", refused)
	}
	if c.soldOut([]byte("n1"), 1000) || !c.flagged(999) || c.flagged(1000) {
		t.Error("answered from memory past the flag")
	}
	if h.get(8).soldOut([]byte("n1"), 999) {
		t.Error("another campaign answered from this one's filter")
	}
	user := []byte("n2")
	if a := testing.AllocsPerRun(100, func() { c.soldOut(user, 999) }); a != 0 {
		t.Errorf("%v allocations per answer from memory, want 0", a)
	}
}

// TestSoldOutBudget: a new filter evicts the least recently used others
// until it fits, never the rest; one over the budget alone is not kept;
// the bytes are accounted for.
func TestSoldOutBudget(t *testing.T) {
	cost := soldOutCost(1000)
	h := hotCampaigns{soldOutMs: 1000, soldOutBudget: 3 * cost}
	for id := int64(1); id <= 3; id++ {
		if !h.putSoldOut(h.get(id), testSet(id, users("u", 1000), 1e15, id)) {
			t.Fatalf("filter %d not kept", id)
		}
	}
	h.get(1).soldOut([]byte("x"), 10) // campaign 1 used last: 2 is the least recently used
	if !h.putSoldOut(h.get(4), testSet(4, users("u", 1000), 1e15, 11)) {
		t.Fatal("filter 4 not kept")
	}
	kept := func(want ...int64) {
		t.Helper()
		var bytes int64
		for _, s := range h.soldOutSets {
			bytes += s.cost
		}
		if len(h.soldOutSets) != len(want) || bytes != h.soldOutBytes || bytes > h.soldOutBudget {
			t.Errorf("%d filters, %d bytes (counted %d, budget %d); want %v", len(h.soldOutSets), bytes, h.soldOutBytes, h.soldOutBudget, want)
		}
		for _, id := range want {
			if h.soldOutSets[id] == nil || h.get(id).sold.Load() != h.soldOutSets[id] {
				t.Errorf("filter %d not kept", id)
			}
		}
	}
	kept(1, 3, 4)
	if h.get(2).sold.Load() != nil {
		t.Error("the evicted filter still answers for its campaign")
	}
	// Twice the size: the two least recently used (3, then 4) make room.
	h.get(1).soldOut([]byte("x"), 12)
	if !h.putSoldOut(h.get(5), testSet(5, users("u", 2000), 1e15, 12)) {
		t.Fatal("filter 5 not kept")
	}
	kept(1, 5)
	// Over the budget alone: not kept, nothing evicted.
	if h.putSoldOut(h.get(6), testSet(6, users("u", 4000), 1e15, 13)) {
		t.Error("a filter over the whole budget was kept")
	}
	kept(1, 5)
	// A campaign's new filter replaces its old one.
	if !h.putSoldOut(h.get(1), testSet(1, users("u", 1000), 1e15, 14)) {
		t.Fatal("filter 1 not replaced")
	}
	kept(1, 5)
}

// TestSoldOutSurvivesForget: dropping the campaigns' states (the claim memo
// bound) keeps the filters; a campaign's new state takes its filter back,
// and eviction reaches that new state.
func TestSoldOutSurvivesForget(t *testing.T) {
	h := hotCampaigns{maxClaims: 10, soldOutMs: 1000, soldOutBudget: soldOutCost(1000)}
	s := testSet(1, users("u", 1000), 1e15, 1)
	h.putSoldOut(h.get(1), s)
	for i := range 11 {
		h.remember(h.get(2), fmt.Sprint("m", i), rain.Result{Outcome: rain.AlreadyOpened, Amount: 1, EndMs: 1e15})
	}
	if h.peek(1) != nil {
		t.Fatal("the memo bound did not drop the states")
	}
	c := h.get(1)
	if c.sold.Load() != s || !c.soldOut([]byte("x"), 2) {
		t.Fatal("the new state did not take its filter back")
	}
	h.putSoldOut(h.get(2), testSet(2, users("u", 1000), 1e15, 3))
	if c.sold.Load() != nil || h.soldOutSets[1] != nil {
		t.Error("eviction left the filter on the campaign's new state")
	}
}

// TestMarkSoldOut: a SOLD_OUT reply whose count matches the filter renews
// the flag (never past the end); one that does not drops it; an OK reply
// drops it; builds start only when the filter would fit, none runs and the
// last is long enough ago.
func TestMarkSoldOut(t *testing.T) {
	h := hotCampaigns{soldOutMs: 1000, soldOutBudget: soldOutCost(10_000)}
	c := h.get(1)
	c.building.Store(true) // no build from Redis in this unit test
	s := testSet(1, users("u", 1000), 0, 0)
	h.putSoldOut(c, s)
	h.markSoldOut(c, rain.Result{Outcome: rain.SoldOut, Claims: 1000, EndMs: 1e15}, 0)
	now := time.Now().UnixMilli()
	if !c.flagged(now) || c.flagged(now+1100) {
		t.Error("a matching count must flag the campaign for the ttl")
	}
	end := time.Now().UnixMilli() + 300
	h.markSoldOut(c, rain.Result{Outcome: rain.SoldOut, Claims: 1000, EndMs: end}, 0)
	if c.flagged(end) {
		t.Error("flag held past the campaign's end")
	}
	h.markSoldOut(c, rain.Result{Outcome: rain.SoldOut, Claims: 1001, EndMs: 1e15}, 0)
	if c.sold.Load() != nil || len(h.soldOutSets) != 0 || h.soldOutBytes != 0 {
		t.Error("a filter whose count no longer matches was kept")
	}

	h.putSoldOut(c, testSet(1, users("u", 1000), 1e15, 0))
	gen := c.gen.Load()
	h.remember(c, "new", rain.Result{Outcome: rain.AlreadyOpened, Amount: 1, EndMs: 1e15})
	if c.sold.Load() == nil || c.gen.Load() != gen {
		t.Error("an ALREADY_OPENED reply dropped the filter")
	}
	h.remember(c, "new", rain.Result{Outcome: rain.OK, Amount: 1, EndMs: 1e15})
	if c.sold.Load() != nil || h.soldOutBytes != 0 || c.gen.Load() == gen {
		t.Error("an OK reply (stock is back) left the filter or a build's result usable")
	}

	c.building.Store(false)
	if h.startBuild(c, 20_000, 0) || c.building.Load() {
		t.Error("a build started for a filter over the budget")
	}
	c.buildAfter.Store(100)
	if h.startBuild(c, 1000, 99) {
		t.Error("a build started before buildAfter")
	}
	if !h.startBuild(c, 1000, 100) || !c.building.Load() {
		t.Error("a build did not start")
	}
	if h.startBuild(c, 1000, 100) {
		t.Error("two builds of one campaign at once")
	}
	for _, off := range []*hotCampaigns{{soldOutBudget: 1 << 20}, {soldOutMs: 1000}} {
		c := off.get(1)
		c.building.Store(true)
		off.markSoldOut(c, rain.Result{Outcome: rain.SoldOut, Claims: 0, EndMs: 1e15}, 0)
		if c.sold.Load() != nil || c.flagged(1) {
			t.Error("sold out remembered with the ttl or the budget off")
		}
	}
}

// fillClaims writes n claims (users prefix0…, amounts 1 to 50) straight
// into the campaign's claims hash, pipelined. The hash is unlinked when the
// test ends (a DEL of a large one would block the shared Redis).
func fillClaims(tb testing.TB, rdb rueidis.Client, id int64, prefix string, n int) {
	tb.Helper()
	key := testenv.Keys().Of(id).Claims()
	tb.Cleanup(func() { rdb.Do(context.Background(), rdb.B().Unlink().Key(key).Build()) })
	now := time.Now().UnixMilli()
	const chunk = 1000
	for lo := 0; lo < n; lo += chunk {
		cmd := rdb.B().Hset().Key(key).FieldValue()
		for i := lo; i < min(lo+chunk, n); i++ {
			cmd = cmd.FieldValue(prefix+strconv.Itoa(i), lua.ClaimValue(int64(i%50+1), now))
		}
		if err := rdb.Do(context.Background(), cmd.Build()).Error(); err != nil {
			tb.Fatal(err)
		}
	}
}

// soldOutCampaign makes a live campaign of one packet, claims it, adds n
// claims (users prefix0…), and waits until h answers its opens from memory.
func soldOutCampaign(t *testing.T, h *harness, prefix string, n int) int64 {
	t.Helper()
	id := h.live(`{"1":1}`)
	if status, _ := h.open(id, "first"); status != 200 {
		t.Fatalf("first open: %d", status)
	}
	fillClaims(t, h.redis, id, prefix, n)
	waitSoldOutFlag(t, h, id)
	return id
}

// openDirect opens campaign id for user through the engine and returns
// the status of the answer and its amount (0 when none).
func openDirect(e *Engine, id int64, user string) (int, int64) {
	res, err := e.Open(id, []byte(user))
	status, _ := answerOf(res, err)
	return status, res.Amount
}

// TestSoldOutFlood: a sold-out campaign of 200k claimants: every claimant
// gets 409 with their amount, 20k others 410, and Redis sees only the
// claimants' opens and a few false positives.
func TestSoldOutFlood(t *testing.T) {
	const claimants, others = 200_000, 20_000
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.SoldOutTTL = time.Minute }})
	id := soldOutCampaign(t, h, "c", claimants)
	memo, flag := claimsMemo.Get(), claimsSoldOutFlag.Get()

	var wrong atomic.Int64
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < others; i += workers {
				if status, _ := openDirect(h.eng, id, "n"+strconv.Itoa(i)); status != 410 && wrong.Add(1) < 5 {
					t.Errorf("non-claimant n%d: %d, want 410", i, status)
				}
			}
			for i := w; i < claimants; i += workers {
				status, amount := openDirect(h.eng, id, "c"+strconv.Itoa(i))
				if (status != 409 || amount != int64(i%50+1)) && wrong.Add(1) < 5 {
					t.Errorf("claimant c%d: %d with %d, want 409 with %d", i, status, amount, i%50+1)
				}
			}
		})
	}
	wg.Wait()
	fromMemory := int(claimsMemo.Get()-memo) + int(claimsSoldOutFlag.Get()-flag)
	toRedis := claimants + others - fromMemory
	t.Logf("%d opens, %d answered from memory, %d from Redis", claimants+others, fromMemory, toRedis)
	if toRedis > claimants+others/100 {
		t.Errorf("%d opens reached Redis, want at most the %d claimants and 1%% of %d others", toRedis, claimants, others)
	}
}

// TestSoldOutEvictsLeastRecentlyUsed: with room for two filters, a third
// sold-out campaign's evicts the least recently used one's, whose opens
// then go to Redis (with the same answers).
func TestSoldOutEvictsLeastRecentlyUsed(t *testing.T) {
	const n = 5000
	h := newHarness(t, harnessOpt{set: func(c *Config) {
		c.SoldOutTTL = time.Minute
		c.SoldOutMemory = int(2*soldOutCost(n+1) + soldOutCost(n+1)/2)
	}})
	a := soldOutCampaign(t, h, "a", n)
	b := soldOutCampaign(t, h, "b", n)
	time.Sleep(5 * time.Millisecond)
	if status, _ := h.open(a, "new-a"); status != 410 { // a is used after b was built
		t.Fatalf("open of a: %d", status)
	}
	time.Sleep(5 * time.Millisecond)
	c := soldOutCampaign(t, h, "c", n)
	now := time.Now().UnixMilli()
	if !h.eng.hot.get(a).flagged(now) || !h.eng.hot.get(c).flagged(now) {
		t.Error("a filter other than the least recently used was evicted")
	}
	if h.eng.hot.get(b).sold.Load() != nil {
		t.Fatal("the least recently used filter was kept over the budget")
	}
	flag := claimsSoldOutFlag.Get()
	if status, _ := h.open(b, "new-b"); status != 410 || claimsSoldOutFlag.Get() != flag {
		t.Errorf("open of the evicted campaign: %d, from memory %v; want 410 from Redis", status, claimsSoldOutFlag.Get() != flag)
	}
	if status, _ := h.open(a, "b1"); status != 410 || claimsSoldOutFlag.Get() != flag+1 {
		t.Errorf("open of a kept campaign: %d, from memory %v; want 410 from memory", status, claimsSoldOutFlag.Get() != flag)
	}
}

// TestSoldOutStockBack: stock added back (HINCRBY on the stock hash) is
// served within SOLD_OUT_TTL; an OK reply to a false positive drops the
// filter at once.
func TestSoldOutStockBack(t *testing.T) {
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.SoldOutTTL = 300 * time.Millisecond }})
	id := soldOutCampaign(t, h, "c", 1000)
	stock := testenv.Keys().Of(id).Stock()
	h.redis.Do(context.Background(), h.redis.B().Hincrby().Key(stock).Field("3").Increment(1).Build())
	deadline := time.Now().Add(5 * time.Second)
	status, m := h.open(id, "new")
	for status == 410 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		status, m = h.open(id, "new")
	}
	if status != 200 || m["amount"] != float64(3) {
		t.Fatalf("after stock came back: %d %v, want 200 with 3", status, m)
	}

	// A long flag: only an OK reply can end it early.
	h = newHarness(t, harnessOpt{set: func(c *Config) { c.SoldOutTTL = time.Minute }})
	id = soldOutCampaign(t, h, "c", 1000)
	s := h.eng.hot.get(id).sold.Load()
	fp := ""
	for i := 0; fp == ""; i++ {
		if u := "fp" + strconv.Itoa(i); s.filter.TestString(u) {
			fp = u
		}
	}
	stock = testenv.Keys().Of(id).Stock()
	h.redis.Do(context.Background(), h.redis.B().Hincrby().Key(stock).Field("3").Increment(2).Build())
	if status, _ := h.open(id, fp); status != 200 {
		t.Fatalf("false positive %s after stock came back: %d, want 200 (Redis asked)", fp, status)
	}
	if status, _ := h.open(id, "new"); status != 200 {
		t.Errorf("open after an OK reply: %d, want 200 (the filter dropped)", status)
	}
}

// TestSoldOutClaimDuringScan: a filter whose scan a claim overlapped is not
// used; the next SOLD_OUT builds it again, with that claim.
func TestSoldOutClaimDuringScan(t *testing.T) {
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.SoldOutTTL = 200 * time.Millisecond }})
	id := h.live(`{"1":1}`)
	k := testenv.Keys().Of(id)
	var scans atomic.Int64
	h.eng.hot.afterScan = func() { // runs in the build's goroutine
		if scans.Add(1) == 1 {
			err := h.redis.Do(context.Background(), h.redis.B().Hset().Key(k.Claims()).FieldValue().
				FieldValue("late0", lua.ClaimValue(1, time.Now().UnixMilli())).Build()).Error()
			if err != nil {
				t.Error(err)
			}
		}
	}
	if status, _ := h.open(id, "first"); status != 200 {
		t.Fatalf("first open: %d", status)
	}
	fillClaims(t, h.redis, id, "c", 1000)
	h.open(id, "probe") // SOLD_OUT: a build starts
	c := h.eng.hot.get(id)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return scans.Load() >= 1 && !c.building.Load(), "the first build did not finish"
	})
	if c.sold.Load() != nil {
		t.Fatal("a filter was kept though a claim arrived during its scan")
	}
	if status, _ := h.open(id, "probe2"); status != 410 {
		t.Errorf("open while no filter is kept: %d, want 410 from Redis", status)
	}
	waitSoldOutFlag(t, h, id)
	if s := c.sold.Load(); s == nil || s.claims != 1002 {
		t.Fatalf("rebuilt filter: %+v, want one of 1002 claims", s)
	}
	if status, m := h.open(id, "late0"); status != 409 || m["amount"] != float64(1) {
		t.Errorf("the claim made during the first scan: %d %v, want 409 with 1", status, m)
	}
}

// TestSoldOutBuildFails: a build that loses Redis keeps no filter and lets
// the next SOLD_OUT build again; a scan of a key that is not a hash fails.
func TestSoldOutBuildFails(t *testing.T) {
	proxy := testenv.NewProxy(t, testenv.RedisAddr())
	rdb := testenv.RedisAt(t, proxy.Addr())
	h := newHarness(t, harnessOpt{redis: rdb, set: func(c *Config) { c.SoldOutTTL = 200 * time.Millisecond }})
	var scans atomic.Int64
	h.eng.hot.afterScan = func() { // runs in the build's goroutine
		if scans.Add(1) == 1 {
			proxy.Cut()
		}
	}
	id := h.live(`{"1":1}`)
	if status, _ := h.open(id, "first"); status != 200 {
		t.Fatalf("first open: %d", status)
	}
	fillClaims(t, rdb, id, "c", 1000)
	h.open(id, "probe") // SOLD_OUT: a build starts, and loses Redis before its count
	c := h.eng.hot.get(id)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return scans.Load() >= 1 && !c.building.Load(), "the build did not end"
	})
	if c.sold.Load() != nil {
		t.Fatal("a filter was kept though its build failed")
	}
	proxy.Restore()
	waitSoldOutFlag(t, h, id)
	if s := c.sold.Load(); s == nil || s.claims != 1001 {
		t.Fatalf("filter after Redis came back: %+v, want one of 1001 claims", s)
	}

	key := testenv.Keys().Prefix() + ":{" + strconv.FormatInt(id, 10) + "}:not-a-hash"
	rdb.Do(context.Background(), rdb.B().Set().Key(key).Value("x").Build())
	t.Cleanup(func() { rdb.Do(context.Background(), rdb.B().Del().Key(key).Build()) })
	if err := scanUsers(context.Background(), rdb, key, func(string) {}); err == nil {
		t.Error("a scan of a string key did not fail")
	}
}

// BenchmarkSoldOutMiss is the check of a non-claimant against the filter of
// a million claimants: the whole cost of a 410 from memory above parsing.
func BenchmarkSoldOutMiss(b *testing.B) {
	h := hotCampaigns{soldOutMs: 1000, soldOutBudget: 1 << 30}
	c := h.get(1)
	h.putSoldOut(c, testSet(1, users("c", 1_000_000), 1e15, 0))
	others := make([][]byte, 1<<16)
	for i := range others {
		others[i] = []byte("n" + strconv.Itoa(i))
	}
	b.ReportAllocs()
	i, maybe := 0, 0
	for b.Loop() {
		if !c.soldOut(others[i&(len(others)-1)], 1) {
			maybe++
		}
		i++
	}
	if maybe > i/100 {
		b.Fatalf("%d of %d non-claimants not refused", maybe, i)
	}
}

// BenchmarkSoldOutOpen is the engine's open for non-claimants of a
// sold-out campaign, answered from memory (410): no allocation.
func BenchmarkSoldOutOpen(b *testing.B) {
	h := newHarness(b, harnessOpt{set: func(c *Config) { c.SoldOutTTL = time.Minute }})
	id := h.live(`{"1":1}`)
	h.open(id, "first")
	fillClaims(b, h.redis, id, "c", 100_000)
	deadline := time.Now().Add(10 * time.Second)
	for !h.eng.hot.get(id).flagged(time.Now().UnixMilli()) && time.Now().Before(deadline) {
		h.open(id, "probe")
		time.Sleep(20 * time.Millisecond)
	}
	users := make([][]byte, 1<<16)
	for i := range users {
		users[i] = []byte("n" + strconv.Itoa(i))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if res, err := h.eng.Open(id, users[i&(len(users)-1)]); err != nil || res.Outcome != rain.SoldOut && res.Outcome != rain.AlreadyOpened {
			b.Fatalf("%+v %v", res, err)
		}
		i++
	}
}

// BenchmarkSoldOutBuild1M is a build of the filter of a campaign of a
// million claims (HSCAN, HLEN), against the real Redis. Filling the hash
// takes a few seconds more; it runs only under -bench.
func BenchmarkSoldOutBuild1M(b *testing.B) {
	const n = 1_000_000
	h := newHarness(b, harnessOpt{})
	id := h.live(`{"1":1}`)
	fillClaims(b, h.redis, id, "c", n)
	k := testenv.Keys().Of(id)
	for b.Loop() {
		s, err := h.eng.hot.scanSoldOut(context.Background(), k, n)
		if err != nil || s == nil {
			b.Fatalf("%v %v", s, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/build")
}
