package engine

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// waitCatalog waits until the server's catalog has been read once.
func waitCatalog(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, loaded, _ := h.eng.catalog.lookup(1); loaded {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the campaign catalog was never loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnknownIDsSkipPostgres: opens of made-up ids are 404 without a
// PostgreSQL query each: ids above the settled mark cost one refresh a
// second at most, settled ids that no campaign has (a gap) none.
func TestUnknownIDsSkipPostgres(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db := testenv.Postgres(t)
	ctx := context.Background()
	// A gap (an id taken and never committed) below a campaign that, with
	// no settle time, settles every id below it at the next load.
	var gap int64
	if err := db.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('campaign', 'id'))`).Scan(&gap); err != nil {
		t.Fatal(err)
	}
	old := h.live(`{"5":10}`)
	waitCatalog(t, h)
	noSettle := time.Duration(0)
	h.eng.catalog.refresh.Lock()
	h.eng.catalog.settle = &noSettle
	h.eng.catalog.refresh.Unlock()
	if err := h.eng.catalog.load(ctx, h.eng.store, true); err != nil {
		t.Fatal(err)
	}
	if _, found, _, settled := h.eng.catalog.lookup(gap); found || !settled {
		t.Fatalf("gap id %d below a campaign created an hour ago: found %v, settled %v; want unknown and settled", gap, found, settled)
	}
	before := unknownFromPG.Get()
	start := time.Now()
	for range 300 {
		above := old + 1_000_000 + rand.Int64N(1<<40)
		if status, m := h.open(above, "u"); status != 404 || m["status"] != "NOT_FOUND" {
			t.Fatalf("id %d: %d %v", above, status, m)
		}
	}
	elapsed := time.Since(start)
	if n := unknownFromPG.Get() - before; n > 1+uint64(elapsed/aboveEvery) {
		t.Errorf("300 made-up ids in %v read PostgreSQL %d times", elapsed, n)
	}
	before = unknownFromPG.Get()
	for range 100 {
		if status, _ := h.open(gap, "u"); status != 404 {
			t.Fatalf("gap id %d: %d", gap, status)
		}
	}
	if n := unknownFromPG.Get() - before; n != 0 {
		t.Errorf("a settled gap id read PostgreSQL %d times", n)
	}
}

// TestCatalogOutOfOrderCommit: a campaign a load missed (its create
// committed after a higher id's) is not answered 404 while it is recent:
// an open of it that Redis cannot answer looks it up and rebuilds it.
func TestCatalogOutOfOrderCommit(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	missed := h.live(`{"5":10}`)
	h.live(`{"5":10}`) // a higher id the catalog knows
	waitCatalog(t, h)
	if err := h.eng.catalog.load(context.Background(), h.eng.store, true); err != nil {
		t.Fatal(err)
	}
	c := &h.eng.catalog
	c.mu.Lock() // as if the load ran before missed committed
	if i, ok := slices.BinarySearch(c.ids, missed); ok {
		c.ids, c.wins, c.swept = slices.Delete(c.ids, i, i+1), slices.Delete(c.wins, i, i+1), slices.Delete(c.swept, i, i+1)
	}
	c.mu.Unlock()
	k := testenv.Keys().Of(missed)
	h.redis.Do(context.Background(), h.redis.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())
	if status, m := h.open(missed, "u1"); status != 200 {
		t.Fatalf("open of a recent campaign the catalog missed: %d %v, want 200 (looked up and rebuilt)", status, m)
	}
}

// TestOldCampaignsAnsweredFromTheirRow: an open of an ended or not-started
// campaign Redis does not hold is answered from its window and never
// rebuilds it into Redis.
func TestOldCampaignsAnsweredFromTheirRow(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	ended := h.create(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour), `{"5":10}`)
	future := h.create(time.Now().Add(time.Hour), time.Now().Add(2*time.Hour), `{"5":10}`)
	for id, want := range map[int64]string{ended: "ENDED", future: "NOT_STARTED"} {
		k := testenv.Keys().Of(id)
		h.redis.Do(context.Background(), h.redis.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())
		for range 3 {
			if status, m := h.open(id, "alice"); status != 400 || m["status"] != want {
				t.Errorf("campaign %d: %d %v, want 400 %s", id, status, m, want)
			}
		}
		if ok, err := lua.Exists(context.Background(), h.redis, k); err != nil || ok {
			t.Errorf("campaign %d was rebuilt into Redis (%v)", id, err)
		}
	}
}

// TestRepairSlots: one rebuild per id, repairSlots at once, a failed one
// not tried again before repairRetry.
func TestRepairSlots(t *testing.T) {
	var c catalog
	var dones []func(bool)
	for id := range int64(repairSlots) {
		done, ok := c.startRepair(id + 1)
		if !ok {
			t.Fatalf("slot %d refused", id+1)
		}
		dones = append(dones, done)
	}
	if _, ok := c.startRepair(100); ok {
		t.Error("a repair past the slots started")
	}
	if _, ok := c.startRepair(1); ok {
		t.Error("a second repair of the same id started")
	}
	dones[0](true)
	done, ok := c.startRepair(100)
	if !ok {
		t.Fatal("a freed slot was not reused")
	}
	done(false) // failed
	if _, ok := c.startRepair(100); ok {
		t.Error("a failed repair was retried at once")
	}
	c.repairMu.Lock()
	c.repairs[100] = time.Now().Add(-time.Millisecond) // its retry time has come
	c.repairMu.Unlock()
	if done, ok := c.startRepair(100); !ok {
		t.Error("a failed repair was never retried")
	} else {
		done(true)
	}
	for _, d := range dones[1:] {
		d(true)
	}
}

// persistClaims writes n claims of 5 (users user-1…user-n) of campaign id
// into claim_log, counted, as the consumer would have.
func persistClaims(t *testing.T, id int64, n int) {
	t.Helper()
	db, ctx := testenv.Postgres(t), context.Background()
	if _, err := db.Exec(ctx, `INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at)
		SELECT $1, 'user-' || g, 5, now() FROM generate_series(1, $2) g`, id, n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE campaign_inventory SET opened_count = $2 WHERE campaign_id = $1`, id, n); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildStreamsClaimsAndExpires: a live campaign Redis lost, with
// more persisted claims than one chunk, is rebuilt with every claim, and
// its keys expire CAMPAIGN_KEY_TTL after its end.
func TestRebuildStreamsClaimsAndExpires(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	ctx := context.Background()
	end := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	id := h.create(time.Now().Add(-time.Hour), end, `{"5":5000}`)
	n := lua.RestoreChunk*2 + 500
	persistClaims(t, id, n)
	k := testenv.Keys().Of(id)
	h.redis.Do(ctx, h.redis.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())
	if status, m := h.open(id, "user-7"); status != 409 {
		t.Fatalf("a persisted claimant after the rebuild: %d %v", status, m)
	}
	if got := h.claims(id); got != int64(n) {
		t.Errorf("%d claims restored, want %d", got, n)
	}
	if status, _ := h.open(id, "newcomer"); status != 200 {
		t.Errorf("a new user after the rebuild: %d", status)
	}
	want := end.Add(h.eng.cfg.CampaignKeyTTL).UnixMilli()
	for _, key := range []string{k.Meta(), k.Stock(), k.Claims()} {
		at, err := h.redis.Do(ctx, h.redis.B().Pexpiretime().Key(key).Build()).AsInt64()
		if err != nil || at != want {
			t.Errorf("%s expires at %d (%v), want %d", key, at, err, want)
		}
	}
}

// TestSweepExpiresEndedCampaigns: the keys of an ended campaign (the
// claims hash a claim made without an expiry included; every bucket's of a
// bucketed campaign) get theirs after the end; a campaign that ended
// longer ago than the TTL loses them.
func TestSweepExpiresEndedCampaigns(t *testing.T) {
	r := testenv.Redis(t)
	ks := testenv.Keys()
	ctx := context.Background()
	now := time.Now()
	recent, old := int64(1<<40+rand.Int64N(1<<30)), int64(1<<41+rand.Int64N(1<<30))
	var c catalog
	c.ids = []int64{recent, old}
	bucketed := int64(1<<42 + rand.Int64N(1<<30))
	c.ids = append(c.ids, bucketed)
	c.wins = []campaignWindow{windowOf(now.Add(-2*time.Hour), now.Add(-time.Hour), 1), windowOf(now.Add(-9*24*time.Hour), now.Add(-8*24*time.Hour), 1),
		windowOf(now.Add(-2*time.Hour), now.Add(-time.Hour), 4)}
	c.swept = []bool{false, false, false}
	l, err := ks.Layout(bucketed, 4)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string // a key of each part of the bucketed campaign
	for _, b := range l.Buckets {
		parts = append(parts, b.Meta(), b.Claims())
	}
	parts = append(parts, l.Pool())
	for _, key := range parts {
		r.Do(ctx, r.B().Hset().Key(key).FieldValue().FieldValue("x", "1").Build())
		t.Cleanup(func() { r.Do(ctx, r.B().Del().Key(key).Build()) })
	}
	for _, id := range c.ids[:2] {
		k := ks.Of(id)
		r.Do(ctx, r.B().Hset().Key(k.Meta()).FieldValue().FieldValue("start", "1").FieldValue("end", "2").Build())
		r.Do(ctx, r.B().Hset().Key(k.Claims()).FieldValue().FieldValue("alice", "5:1").Build())
		t.Cleanup(func() { r.Do(ctx, r.B().Del().Key(k.Meta(), k.Claims()).Build()) })
	}
	if err := c.sweep(ctx, r, ks, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	k := ks.Of(recent)
	want := c.wins[0].endMs + (7 * 24 * time.Hour).Milliseconds()
	for _, key := range []string{k.Meta(), k.Claims()} {
		if at, err := r.Do(ctx, r.B().Pexpiretime().Key(key).Build()).AsInt64(); err != nil || at != want {
			t.Errorf("%s expires at %d (%v), want %d", key, at, err, want)
		}
	}
	for _, key := range parts {
		if at, err := r.Do(ctx, r.B().Pexpiretime().Key(key).Build()).AsInt64(); err != nil || at != want {
			t.Errorf("bucketed campaign's %s expires at %d (%v), want %d", key, at, err, want)
		}
	}
	k = ks.Of(old)
	if n, err := r.Do(ctx, r.B().Exists().Key(k.Meta(), k.Claims()).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("keys of a campaign ended 8 days ago: %d left (%v)", n, err)
	}
	if !c.swept[0] || !c.swept[1] || !c.swept[2] {
		t.Errorf("swept %v", c.swept)
	}
}
