package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpacket/rain/lua"
)

// openUntil opens campaign id for user until an answer other than 503
// (a rebalance or a repair in flight), at most for d.
func (h *harness) openUntil(id int64, user string, d time.Duration) (int, map[string]any) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for {
		status, m := h.open(id, user)
		if status != 503 || time.Now().After(deadline) {
			return status, m
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLostHomeIsRepaired: a bucketed campaign whose home (window, pool,
// transfer log, lease) is lost while its buckets still serve is laid out
// again from PostgreSQL once a bucket runs dry and its rebalance finds no
// home: every packet is served in the end, none twice.
func TestLostHomeIsRepaired(t *testing.T) {
	h := newHarness(t, harnessOpt{ringSize: 4096})
	id := h.createBuckets(4, `{"1":2000}`)
	for i := range 10 {
		if status, m := h.open(id, fmt.Sprint("early", i)); status != 200 {
			t.Fatalf("open before the loss: %d %v", status, m)
		}
	}
	l, _ := h.keys.Layout(id, 4)
	ctx := context.Background()
	if err := h.redis.Do(ctx, h.redis.B().Del().Key(l.Home.Meta(), l.Pool(), l.Out(), l.Rebal()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	won := 0
	for i := range 1990 {
		status, m := h.openUntil(id, fmt.Sprint("late", i), 10*time.Second)
		if status != 200 {
			t.Fatalf("open %d after the home was lost (%d won): %d %v", i, won, status, m)
		}
		won++
	}
	if status, m := h.openUntil(id, "one-too-many", 10*time.Second); status != 410 {
		t.Errorf("after the 2000 packets: %d %v, want SOLD_OUT", status, m)
	}
	if st, err := lua.ReadBuckets(ctx, h.redis, l); err != nil || st.Claims != 2000 || st.Left != 0 {
		t.Errorf("after the sell-out: %d claims, %d left (%v)", st.Claims, st.Left, err)
	}
}

// TestFrozenHomeNeverAnsweredSoldOut: a replica with no state of a
// bucketed campaign (not in its catalog yet) opening it while it is frozen
// for a rebuild nobody finishes (its process died) is answered 503, then
// OK once the rebuild its own opens start has run, and while its home is
// missing mid-rebuild never SOLD_OUT.
func TestFrozenHomeNeverAnsweredSoldOut(t *testing.T) {
	a, b := newHarness(t, harnessOpt{}), newHarness(t, harnessOpt{})
	waitCatalog(t, b)
	id := a.createBuckets(3, `{"5":30}`)
	l, _ := a.keys.Layout(id, 3)
	ctx := context.Background()
	if _, err := lua.Freeze(ctx, a.redis, l); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		// 503 while frozen (or OK once the rebuild its opens start has
		// run: nobody else is rebuilding it), never SOLD_OUT.
		if status, m := b.open(id, fmt.Sprint("f", i)); status != 503 && status != 200 {
			t.Fatalf("open %d of the frozen campaign on the replica with no state: %d %v, want 503 or 200", i, status, m)
		}
	}
	// Mid-rebuild (Rebuild deletes every key, then lays the buckets out
	// before the home): a home missing is never taken for a campaign of one
	// bucket sold out.
	if err := a.redis.Do(ctx, a.redis.B().Del().Key(l.Home.Meta(), l.Pool()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if status, m := b.open(id, fmt.Sprint("g", i)); status == 410 {
			t.Fatalf("open %d with the home missing: %d %v", i, status, m)
		}
	}
	// The missing home sends the opens to a repair, which rebuilds it.
	if status, m := b.openUntil(id, "after", 10*time.Second); status != 200 {
		t.Errorf("after the rebuild: %d %v", status, m)
	}
}

// TestRestoredDatabaseKeys: keys of another row under a campaign's id (a
// database restored from a backup hands ids out again, Redis kept its
// AOF) are cleared and the campaign laid out from its row: its first open
// is OK, not the old keys' SOLD_OUT. Keys of the same row loaded before
// rows were recorded are kept, claims and all.
func TestRestoredDatabaseKeys(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	ctx := context.Background()
	c := campaignOf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), `{"5":100000000}`, 1)
	if err := h.db.CreateCampaignBy(ctx, c, testActor); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unlinkCampaign(h, c.ID, 1) })
	k := h.keys.Of(c.ID)
	// The old row's keys: another start, sold out, one claimant.
	if _, err := lua.Load(ctx, h.redis, k, time.Now().Add(-48*time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli(),
		map[int64]int64{5: 0}); err != nil {
		t.Fatal(err)
	}
	if err := lua.RestoreClaims(ctx, h.redis, k, map[string]string{"old-user": lua.ClaimValue(5, 1)}); err != nil {
		t.Fatal(err)
	}
	replaced := keysReplaced.Get()
	if err := h.eng.Loader().Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	if status, m := h.open(c.ID, "new-user"); status != 200 {
		t.Fatalf("the first open of the new campaign: %d %v, want 200", status, m)
	}
	if status, m := h.open(c.ID, "old-user"); status != 200 {
		t.Errorf("the old row's claimant on the new campaign: %d %v, want 200", status, m)
	}
	if keysReplaced.Get() != replaced+1 {
		t.Errorf("keys replaced: %d, want one more", keysReplaced.Get()-replaced)
	}

	// Keys of this very row from before rows were recorded: adopted.
	if err := h.redis.Do(ctx, h.redis.B().Hdel().Key(k.Meta()).Field("row").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.Loader().Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	if status, m := h.open(c.ID, "new-user"); status != 409 {
		t.Errorf("a claimant after the same row was checked again: %d %v, want 409", status, m)
	}
	var id [1]lua.Identity
	if err := lua.ReadIdentities(ctx, h.redis, []*lua.Keys{k}, id[:]); err != nil || id[0].Row == "" {
		t.Errorf("the row was not recorded: %+v %v", id[0], err)
	}
}

// TestHalfDoneEndFinishedBySweep: an end that reached a bucketed
// campaign's home but not its buckets (the request failed half way;
// PostgreSQL rolled back and the merchant was told to retry) is finished
// by the sweep on every bucket, and recorded in PostgreSQL: after it no
// open is OK. Before, the sweep compared the home's end only, and only of
// campaigns PostgreSQL had recorded as ended.
func TestHalfDoneEndFinishedBySweep(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	// The sweep under test is the one called below: the background loop's
	// (every 5 s, and on its first pass) finished the end before the
	// setup's check when the machine was busy.
	h.eng.Stop()
	ctx := context.Background()
	id := h.createBuckets(3, `{"5":300}`)
	l, _ := h.keys.Layout(id, 3)
	if _, _, err := lua.EndNow(ctx, h.redis, l.Home, time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if status, m := h.open(id, "before-sweep"); status != 200 {
		t.Fatalf("an open of a bucket the half-done end missed: %d %v (the setup did not leave a bucket open)", status, m)
	}
	h.eng.sweep(ctx)
	for i := range 30 {
		if status, m := h.open(id, fmt.Sprint("after-sweep", i)); status != 400 || m["status"] != "ENDED" {
			t.Fatalf("open %d after the sweep: %d %v, want ENDED", i, status, m)
		}
	}
	c, err := h.eng.Campaign(ctx, id)
	if err != nil || c.EndTime.After(time.Now()) {
		t.Fatalf("PostgreSQL after the sweep: end %v (%v), want the end Redis applied", c.EndTime, err)
	}
}

// TestSweepKeepsTheLatestEnd: a bucketed campaign whose buckets ended at
// different times (an end whose first request ended one bucket and failed,
// its retry the rest later; or one end reaching the buckets' shards at
// different milliseconds) ends at the latest of them, and the sweep keeps
// it: a claim a bucket took before its own end is before the campaign's.
// Before, the sweep applied the earliest part's end to every part and
// recorded it in PostgreSQL, before claims the later buckets had taken
// (make torture, seed 15 on the cluster: claims after the end).
func TestSweepKeepsTheLatestEnd(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	ctx := context.Background()
	id := h.createBuckets(3, `{"5":300}`)
	l, _ := h.keys.Layout(id, 3)
	if _, _, err := lua.EndNow(ctx, h.redis, l.Buckets[0].Keys, time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	before := time.Now().Truncate(time.Millisecond)
	user := ""
	for i := 0; user == ""; i++ {
		if u := fmt.Sprint("late", i); lua.BucketOf(id, u, 3) == 1 {
			user = u
		}
	}
	if status, m := h.open(id, user); status != 200 {
		t.Fatalf("an open of a bucket still open: %d %v", status, m)
	}
	ended, err := h.eng.End(ctx, id, testActor)
	if err != nil || ended.End.Before(before) {
		t.Fatalf("end: %v (%v), want no earlier than the claim (%v or later)", ended.End, err, before)
	}
	h.eng.sweep(ctx)
	c, err := h.eng.Campaign(ctx, id)
	if err != nil || c.EndTime.Before(before) {
		t.Fatalf("PostgreSQL after the sweep: end %v (%v), before a claim taken at %v or later", c.EndTime, err, before)
	}
	if status, m := h.open(id, user+"-after"); status != 400 || m["status"] != "ENDED" {
		t.Errorf("an open after the end: %d %v", status, m)
	}
}
