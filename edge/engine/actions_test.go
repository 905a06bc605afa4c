package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
)

// TestStockSettles: stock whose Redis step did not run (the process died
// between PostgreSQL and Redis, or its reply was lost) is added by the
// sweep exactly once, whether or not the step had in fact run.
func TestStockSettles(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db, ctx := h.db, context.Background()
	id := h.live(`{"5":2,"20":1}`)
	h.open(id, "u1")
	by := postgres.Actor{Name: "test", Request: json.RawMessage(`{}`)}
	k := testenv.Keys().Of(id)
	// Two actions committed, neither marked applied: the first's Redis step
	// ran, the second's did not.
	r1, err := db.AddStock(ctx, postgres.Restock{Campaign: id, Amount: 5, Count: 3, By: by})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := lua.AddStock(ctx, h.redis, k, 5, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddStock(ctx, postgres.Restock{Campaign: id, Amount: 20, Count: 4, By: by}); err != nil {
		t.Fatal(err)
	}
	before, _ := lua.ReadState(ctx, h.redis, k)
	if err := h.eng.settle(ctx, id); err != nil {
		t.Fatal(err)
	}
	st, _ := lua.ReadState(ctx, h.redis, k)
	// 5: total 5, one claimed (maybe of 5), so remaining(5)+claims(5) = 5.
	claims, _ := lua.ClaimsByAmount(ctx, h.redis, k)
	if st.Remaining[5]+claims[5] != 5 || st.Remaining[20]+claims[20] != 5 {
		t.Fatalf("after settle: remaining %v claims %v (before %v), want 5 of each", st.Remaining, claims, before.Remaining)
	}
	pending, _, err := db.PendingStock(ctx, id)
	if err != nil || len(pending) != 0 {
		t.Fatalf("pending after settle: %v %v", pending, err)
	}
	// Settling again adds nothing.
	if err := h.eng.settle(ctx, id); err != nil {
		t.Fatal(err)
	}
	if again, _ := lua.ReadState(ctx, h.redis, k); fmt.Sprint(again.Remaining) != fmt.Sprint(st.Remaining) {
		t.Fatalf("second settle changed the stock: %v, was %v", again.Remaining, st.Remaining)
	}
	_ = r1

	// The sweep finds pending stock by itself; a campaign not in Redis stays
	// pending (its load counts the total).
	id2 := h.live(`{"5":1}`)
	if _, err := db.AddStock(ctx, postgres.Restock{Campaign: id2, Amount: 5, Count: 1, By: by}); err != nil {
		t.Fatal(err)
	}
	_, _ = db.DB.Exec(ctx, `UPDATE campaign_action SET at = at - interval '1 minute' WHERE campaign_id = $1`, id2)
	h.eng.sweep(ctx)
	if n, _ := lua.StockCount(ctx, h.redis, testenv.Keys().Of(id2), 5); n != 2 {
		t.Fatalf("swept stock: %d, want 2", n)
	}
}

// TestEndSweep: an end PostgreSQL has and Redis lacks (a load that read the
// old end, or a crash between the two) is applied again by the sweep.
func TestEndSweep(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db, ctx := h.db, context.Background()
	id := h.live(`{"5":3}`)
	notInRedis := func(context.Context, time.Time) (time.Time, bool, error) { return time.Time{}, false, nil }
	if _, err := db.EndCampaign(ctx, id, postgres.Actor{Name: "test", Request: json.RawMessage(`{}`)}, notInRedis); err != nil {
		t.Fatal(err)
	}
	if status, _ := h.open(id, "u"); status != 200 {
		t.Fatalf("open before redis has the end: %d", status)
	}
	h.eng.sweep(ctx)
	if status, m := h.open(id, "v"); status != 400 || m["status"] != "ENDED" {
		t.Fatalf("open after the sweep: %d %v", status, m)
	}
}

// settleUnderLoad adds count packets of amount to campaign id in
// PostgreSQL only (as if the api died before its Redis step), settles
// while 8 goroutines open it with fresh users, and returns PostgreSQL's
// total of amount.
func settleUnderLoad(t *testing.T, h *harness, id, amount, count int64) int64 {
	t.Helper()
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var opened atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if status, _ := h.open(id, fmt.Sprintf("load-%d-%d", w, i)); status == 200 {
					opened.Add(1)
				}
			}
		})
	}
	for opened.Load() < 200 { // the load is on
		time.Sleep(time.Millisecond)
	}
	r, err := h.db.AddStock(ctx, postgres.Restock{Campaign: id, Amount: amount, Count: count, By: testActor})
	if err == nil {
		err = h.eng.settle(ctx, id)
	}
	time.Sleep(50 * time.Millisecond) // opens after the settle too
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if pending, _, err := h.db.PendingStock(ctx, id); err != nil || len(pending) != 0 {
		t.Fatalf("still pending after the settle: %v %v", pending, err)
	}
	return r.Total
}

// TestSettleCountsOnceUnderLoad: the settle of stock added in PostgreSQL
// only, with 200k claims in Redis and opens running through it, adds
// exactly the shortfall: afterwards Redis's stock and claims make
// PostgreSQL's total (a count of the stock, then of the claims by a
// scan, counted an open made in between twice and added too little).
func TestSettleCountsOnceUnderLoad(t *testing.T) {
	h := newHarness(t, harnessOpt{ringSize: 1 << 16})
	ctx := context.Background()
	id := h.live(`{"1":300000}`)
	k := h.keys.Of(id)
	const claims = 200_000
	now := time.Now().UnixMilli()
	for lo := 0; lo < claims; lo += 1000 {
		cmd := h.redis.B().Hset().Key(k.Claims()).FieldValue()
		for i := lo; i < lo+1000; i++ {
			cmd = cmd.FieldValue("pre"+strconv.Itoa(i), lua.ClaimValue(1, now))
		}
		if err := h.redis.Do(ctx, cmd.Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.redis.Do(ctx, h.redis.B().Hset().Key(k.Stock()).FieldValue().FieldValue("1", "100000").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	total := settleUnderLoad(t, h, id, 1, 1000)
	st, err := lua.ReadState(ctx, h.redis, k)
	if err != nil {
		t.Fatal(err)
	}
	if st.Remaining[1]+st.Claims != total {
		t.Fatalf("after the settle: %d in stock + %d claims = %d, want PostgreSQL's total %d",
			st.Remaining[1], st.Claims, st.Remaining[1]+st.Claims, total)
	}
}

// TestSettleBucketsCountsOnceUnderLoad: the same on a campaign of 4
// buckets whose stock moves between its parts while the settle counts:
// afterwards stock, claims and packets in transit make PostgreSQL's total.
func TestSettleBucketsCountsOnceUnderLoad(t *testing.T) {
	h := newHarness(t, harnessOpt{ringSize: 1 << 16})
	ctx := context.Background()
	id := h.createBuckets(4, `{"1":4000}`)
	total := settleUnderLoad(t, h, id, 1, 1000)
	l, _ := h.keys.Layout(id, 4)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		st, err := lua.ReadBuckets(ctx, h.redis, l)
		held := st.Left + st.Claims + st.Pending
		return err == nil && held == total && st.Pending == 0,
			fmt.Sprintf("after the settle: %d left + %d claims + %d in transit = %d (%v), want PostgreSQL's total %d",
				st.Left, st.Claims, st.Pending, held, err, total)
	})
}
