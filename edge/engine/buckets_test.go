package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
)

// TestBucketedSellOut: a campaign of 4 buckets sold out by concurrent opens
// of many users: exactly the stock handed out, nobody twice, SOLD_OUT only
// once nothing is left anywhere, and its live state shows the parts.
func TestBucketedSellOut(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	h := newHarness(t, harnessOpt{ringSize: 8192})
	refills, steals, empties := bucketRefills.Get(), bucketSteals.Get(), bucketEmpty.Get()
	const stock = 1200
	id := h.createBuckets(4, `{"20":200,"5":400,"1":600}`)

	v := h.liveState(id)
	if v.Remaining != stock {
		t.Fatalf("live state: %+v", v)
	}
	parts, pool := v.Buckets, v.PoolLeft
	sum := pool
	for _, p := range parts {
		sum += p.Remaining
	}
	if len(parts) != 4 || sum != stock || pool < stock/2 {
		t.Fatalf("live state: %d buckets, pool %v, sum %v: want 4, half the stock in the pool, %d in all", len(parts), pool, sum, stock)
	}

	var (
		mu       sync.Mutex
		won      = map[string]float64{}
		soldOut  = map[string]bool{}
		busy     int
		wg       sync.WaitGroup
		work     = make(chan string)
		amounts  = map[float64]int{}
		mistakes []string
	)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				for try := 0; ; try++ {
					status, m := h.open(id, u)
					mu.Lock()
					switch status {
					case 200:
						if _, dup := won[u]; dup {
							mistakes = append(mistakes, u+" won twice")
						}
						won[u] = m["amount"].(float64)
						amounts[m["amount"].(float64)]++
					case 409:
						if won[u] != m["amount"] {
							mistakes = append(mistakes, fmt.Sprintf("%s: 409 with %v, won %v", u, m["amount"], won[u]))
						}
					case 410:
						soldOut[u] = true
					case 503:
						busy++
					default:
						mistakes = append(mistakes, fmt.Sprintf("%s: %d %v", u, status, m))
					}
					mu.Unlock()
					if status != 503 && (status != 200 || try > 0) || try > 50 {
						break
					}
				}
			}
		}()
	}
	for i := range 2000 {
		work <- fmt.Sprintf("bk-%d", i)
	}
	close(work)
	wg.Wait()
	for _, m := range mistakes {
		t.Error(m)
	}
	if len(won) != stock {
		t.Errorf("%d users won, want %d (the stock); %d sold out, %d 503s", len(won), stock, len(soldOut), busy)
	}
	if amounts[20] != 200 || amounts[5] != 400 || amounts[1] != 600 {
		t.Errorf("amounts handed out %v, want the inventory", amounts)
	}
	for u := range soldOut {
		if _, ok := won[u]; ok {
			t.Errorf("%s got a packet and SOLD_OUT", u)
		}
	}
	l, _ := testenv.Keys().Layout(id, 4)
	st, err := lua.ReadBuckets(context.Background(), h.redis, l)
	if err != nil || st.Left != 0 || st.Pending != 0 || st.Claims != stock {
		t.Fatalf("after the sell-out: %+v, %v: want nothing left, nothing in transit, %d claims", st.State, err, stock)
	}
	// Every user told SOLD_OUT was told so with nothing left: a late
	// user still gets SOLD_OUT, and the live state shows nothing left.
	if status, m := h.open(id, "bk-late"); status != 410 {
		t.Fatalf("late open: %d %v", status, m)
	}
	if v = h.liveState(id); v.Remaining != 0 || v.Claims != stock {
		t.Fatalf("live state after: %+v", v)
	}
	t.Logf("%d users, %d 503s; refills %d, steals %d, EMPTY answers %d", len(won)+len(soldOut), busy,
		bucketRefills.Get()-refills, bucketSteals.Get()-steals, bucketEmpty.Get()-empties)
	if bucketRefills.Get() == refills {
		t.Error("no refill counted")
	}
	if h.ring.Len() != stock {
		t.Errorf("%d events in the ring, want %d (one per 200)", h.ring.Len(), stock)
	}
}

// TestBucketedRestockAndEnd: stock added to a sold-out campaign of 4
// buckets is served again (the buckets' SOLD_OUT cleared, the pool
// refilled), and an end reaches every bucket.
func TestBucketedRestockAndEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	h := newHarness(t, harnessOpt{})
	id := h.createBuckets(4, `{"5":8}`)
	won := 0
	for i := 0; won < 8 && i < 1000; i++ {
		if status, _ := h.open(id, fmt.Sprintf("rs-%d", i)); status == 200 {
			won++
		}
	}
	if won != 8 {
		t.Fatalf("%d won, want 8", won)
	}
	sold := ""
	for i := 1000; sold == "" && i < 1100; i++ {
		u := fmt.Sprintf("rs-%d", i)
		if status, _ := h.open(id, u); status == 410 {
			sold = u
		}
	}
	if sold == "" {
		t.Fatal("no SOLD_OUT after the stock was gone")
	}
	if r, err := h.eng.AddStock(context.Background(), postgres.Restock{Campaign: id, Amount: 5, Count: 3, By: testActor}); err != nil || !r.Applied {
		t.Fatalf("restock: %+v %v", r, err)
	}
	// 503 BUSY is a retry: the rebalancer may be moving the new stock.
	status, m := h.open(id, sold)
	for deadline := time.Now().Add(10 * time.Second); status == 503 && time.Now().Before(deadline); status, m = h.open(id, sold) {
		time.Sleep(20 * time.Millisecond)
	}
	if status != 200 {
		t.Fatalf("open after the restock by %s, told SOLD_OUT before: %d %v", sold, status, m)
	}
	if e, err := h.eng.End(context.Background(), id, testActor); err != nil || e.End.After(time.Now()) {
		t.Fatalf("end: %+v %v", e, err)
	}
	for i := 2000; i < 2020; i++ {
		if status, m := h.open(id, fmt.Sprintf("rs-%d", i)); status != 400 || m["status"] != "ENDED" {
			t.Fatalf("open after the end: %d %v", status, m)
		}
	}
}

// sellOutBuckets opens campaign id (K buckets) for users prefix0… one at a
// time until one is told SOLD_OUT, and returns the winners' amounts.
func sellOutBuckets(t *testing.T, h *harness, id int64, prefix string) map[string]float64 {
	t.Helper()
	won := map[string]float64{}
	for i := 0; i < 5000; i++ {
		u := fmt.Sprint(prefix, i)
		status, m := h.open(id, u)
		switch status {
		case 200:
			won[u] = m["amount"].(float64)
		case 410:
			return won
		case 503: // a bucket waiting for stock: try the next user
		default:
			t.Fatalf("open of %s: %d %v", u, status, m)
		}
	}
	t.Fatal("never sold out")
	return nil
}

// TestBucketedSoldOutFromMemory: once a campaign of 4 buckets is sold out
// as a whole, its flood is answered from memory like a campaign of one
// bucket's: every claimant (in whichever bucket) gets 409 with their
// amount, non-claimants 410, and Redis sees only the claimants and a few
// false positives. The filter holds each bucket's count.
func TestBucketedSoldOutFromMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.SoldOutTTL = time.Minute }})
	id := h.createBuckets(4, `{"1":200,"7":100}`)
	won := sellOutBuckets(t, h, id, "w")
	if len(won) != 300 {
		t.Fatalf("%d won, want the 300 packets", len(won))
	}
	waitSoldOutFlag(t, h, id)
	s := h.eng.hot.get(id).sold.Load()
	var sum int64
	for _, n := range s.counts {
		sum += n
	}
	if len(s.counts) != 4 || sum != 300 || s.claims != 300 {
		t.Fatalf("filter counts %v (claims %d), want 4 buckets holding 300", s.counts, s.claims)
	}
	flag := claimsSoldOutFlag.Get()
	const others = 2000
	for i := range others {
		if status, m := h.open(id, fmt.Sprint("n", i)); status != 410 {
			t.Fatalf("non-claimant n%d: %d %v", i, status, m)
		}
	}
	if fromMemory := claimsSoldOutFlag.Get() - flag; fromMemory < others*98/100 {
		t.Errorf("%d of %d non-claimants answered from memory, want all but the false positives", fromMemory, others)
	}
	for u, amount := range won {
		if status, m := h.open(id, u); status != 409 || m["amount"] != amount {
			t.Fatalf("claimant %s: %d %v, want 409 with %v", u, status, m, amount)
		}
	}
}

// TestBucketedSoldOutExact: a claim that lands in a bucket during the
// filter's scan voids it (the next SOLD_OUT builds it again, with that
// claim); once the TTL ran out a SOLD_OUT renews the same filter when no
// bucket's count moved, and a reply of a bucket whose count moved drops it.
func TestBucketedSoldOutExact(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.SoldOutTTL = 200 * time.Millisecond }})
	id := h.createBuckets(4, `{"1":6}`)
	l, err := testenv.Keys().Layout(id, 4)
	if err != nil {
		t.Fatal(err)
	}
	addClaim := func(user string) {
		t.Helper()
		err := h.redis.Do(context.Background(), h.redis.B().Hset().Key(l.BucketOf(user).Claims()).FieldValue().
			FieldValue(user, lua.ClaimValue(1, time.Now().UnixMilli())).Build()).Error()
		if err != nil {
			t.Error(err)
		}
	}
	var scans atomic.Int64
	h.eng.hot.afterScan = func() { // runs in the build's goroutine
		if scans.Add(1) == 1 {
			addClaim("late0")
		}
	}
	won := sellOutBuckets(t, h, id, "x")
	c := h.eng.hot.get(id)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		if scans.Load() == 0 && !c.building.Load() { // the finals were still being set: ask again
			h.open(id, fmt.Sprint("probe-", time.Now().UnixNano()))
		}
		return scans.Load() >= 1 && !c.building.Load(), "the first build did not finish"
	})
	if c.sold.Load() != nil {
		t.Fatal("a filter was kept though a claim arrived during its scan")
	}
	waitSoldOutFlag(t, h, id)
	s := c.sold.Load()
	if s.claims != int64(len(won))+1 {
		t.Fatalf("rebuilt filter of %d claims, want %d", s.claims, len(won)+1)
	}
	if status, m := h.open(id, "late0"); status != 409 || m["amount"] != float64(1) {
		t.Errorf("the claim made during the first scan: %d %v, want 409 with 1", status, m)
	}

	// The flag runs out; a SOLD_OUT renews the same set (nothing scanned).
	time.Sleep(250 * time.Millisecond)
	scanned := scans.Load()
	waitSoldOutFlag(t, h, id)
	if c.sold.Load() != s || scans.Load() != scanned {
		t.Error("a renewal with no count moved made a new filter")
	}
	// A claim put back into a bucket (the reconciler's readd): the first
	// SOLD_OUT reply of that bucket drops the filter.
	late := ""
	for i := 0; late == ""; i++ {
		if u := fmt.Sprint("readd", i); !s.filter.TestString(u) {
			late = u
		}
	}
	addClaim(late)
	// A false positive of the filter in late's bucket goes to Redis, and
	// that bucket's reply counts one claim more than the set.
	b := lua.BucketOf(id, late, 4)
	fp := ""
	for i := 0; fp == ""; i++ {
		if u := fmt.Sprint("fp", i); s.filter.TestString(u) && lua.BucketOf(id, u, 4) == b {
			if _, claimant := won[u]; !claimant {
				fp = u
			}
		}
	}
	if status, _ := h.open(id, fp); status != 410 {
		t.Fatalf("false positive %s: %d, want 410 from Redis", fp, status)
	}
	if c.sold.Load() == s {
		t.Error("a bucket's SOLD_OUT reply with a count the filter lacks kept it")
	}
	waitSoldOutFlag(t, h, id)
	if status, m := h.open(id, late); status != 409 || m["amount"] != float64(1) {
		t.Errorf("the put-back claim after the rebuild: %d %v, want 409 with 1", status, m)
	}
}

// TestBucketedLoadStreamsClaims: a live campaign of 4 buckets Redis lost
// entirely, with more persisted claims than two chunks, is loaded again
// with every claim in its user's bucket (streamed from PostgreSQL), the
// rest of the stock dealt, and its keys expiring after the end.
func TestBucketedLoadStreamsClaims(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	h := newHarness(t, harnessOpt{})
	ctx := context.Background()
	id := h.createBuckets(4, `{"5":5000}`)
	n := lua.RestoreChunk*2 + 500
	persistClaims(t, id, n)
	unlinkCampaign(h, id, 4)
	if status, m := h.open(id, "user-7"); status != 409 || m["amount"] != 5.0 {
		t.Fatalf("a persisted claimant after the load: %d %v", status, m)
	}
	l, _ := testenv.Keys().Layout(id, 4)
	st, err := lua.ReadBuckets(ctx, h.redis, l)
	if err != nil || st.Claims != int64(n) || st.Claims+st.Left != 5000 {
		t.Fatalf("after the load: %d claims, %d left (%v); want %d claims and the rest of 5000 left", st.Claims, st.Left, err, n)
	}
	for b, bs := range st.Buckets {
		if bs.Claims == 0 {
			t.Errorf("bucket %d holds no claim: the claims were not spread by user", b)
		}
	}
	if status, _ := h.open(id, "newcomer"); status != 200 {
		t.Errorf("a new user after the load: %d", status)
	}
	for _, key := range l.ExpiringKeys() {
		if at, err := h.redis.Do(ctx, h.redis.B().Pexpiretime().Key(key).Build()).AsInt64(); err != nil || at == -1 {
			t.Errorf("%s has no expiry after the load (%d, %v)", key, at, err)
		}
	}
}

// TestBucketedCampaignOfAnotherReplica: a replica that has not seen a
// bucketed campaign (created through another one a moment ago, not yet in
// its catalog) learns its bucket count from the home's BUCKETED answer and
// opens it in the users' buckets: OKs up to the stock, then SOLD_OUT, with
// no 410 while stock remains.
func TestBucketedCampaignOfAnotherReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	a, b := newHarness(t, harnessOpt{}), newHarness(t, harnessOpt{})
	waitCatalog(t, b) // loaded before the create: the next load is 30 s away
	id := a.createBuckets(3, `{"5":30}`)
	if _, found, _, _ := b.eng.catalog.lookup(id); found {
		t.Fatal("the second replica's catalog knew the campaign before its next load")
	}
	won := 0
	for i := 0; won < 30 && i < 2000; i++ {
		switch status, m := b.open(id, fmt.Sprint("other-", i)); status {
		case 200:
			won++
		case 503: // a bucket waiting for its refill
		default:
			t.Fatalf("open %d on the replica that did not create it: %d %v (after %d OKs)", i, status, m, won)
		}
	}
	if won != 30 {
		t.Fatalf("%d won, want the 30 packets", won)
	}
	if c := b.eng.hot.peek(id); c == nil || c.layout == nil || c.layout.K() != 3 {
		t.Fatalf("the replica's state of the campaign: %+v, want 3 buckets", c)
	}
	if status, m := b.open(id, "late"); status != 410 {
		t.Fatalf("after the sell-out: %d %v", status, m)
	}
}
