package reconcile_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline/reconcile"
)

// TestReconcilerBuckets: a campaign of 4 buckets is reconciled per
// bucket: the claims of every bucket's hash reach claim_log, and a claim
// one bucket lost is put back into that bucket from claim_log.
func TestReconcilerBuckets(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	rdb, db := testenv.Redis(t), testenv.Postgres(t)
	ctx := context.Background()
	stock := map[int64]int64{5: 1000, 20: 200}
	id := testenv.LiveCampaign(t, db, stock)
	l, err := testenv.Keys().Layout(id, 4)
	if err != nil {
		t.Fatal(err)
	}
	unlink := func() {
		for _, k := range l.AllKeys() {
			rdb.Do(ctx, rdb.B().Unlink().Key(k).Build())
		}
	}
	unlink()
	t.Cleanup(unlink)
	now := time.Now()
	if ok, err := lua.LoadBuckets(ctx, rdb, l, now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli(), stock, nil); err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	want := map[string]testenv.Row{}
	perBucket := make([]int, 4)
	for _, u := range users("rb", 40) {
		b := lua.BucketOf(id, u, 4)
		out := make([]rain.Result, 1)
		if _, err := lua.ClaimBucket(ctx, rdb, l, b, []string{u}, []uint64{rand.Uint64()}, out); err != nil || out[0].Outcome != rain.OK {
			t.Fatalf("claim %s: %+v %v", u, out[0], err)
		}
		want[u] = testenv.Row{Amount: out[0].Amount, ClaimedAt: out[0].ClaimedAt}
		perBucket[b]++
	}
	for b, n := range perBucket {
		if n == 0 {
			t.Fatalf("no user in bucket %d of 4 (per bucket %v)", b, perBucket)
		}
	}
	r := newReconciler(t, db, rdb, nil)
	rep, err := r.Reconcile(ctx, reconcile.Options{Full: true}, id)
	if err != nil || rep.Repaired != len(want) || rep.Scanned != len(want) {
		t.Fatalf("reconcile: %+v %v, want %d repaired", rep, err, len(want))
	}
	testenv.AssertState(t, db, id, want)

	// A bucket loses a claim (its last second of writes): put back.
	lost := "rb-007"
	k := l.BucketOf(lost).Keys
	if err := rdb.Do(ctx, rdb.B().Hdel().Key(k.Claims()).Field(lost).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	rep, err = r.Reconcile(ctx, reconcile.Options{}, id)
	if err != nil || rep.Readded != 1 || rep.Oversold != 0 {
		t.Fatalf("reconcile after a loss: %+v %v, want 1 readded", rep, err)
	}
	amount, at, ok, err := lua.ClaimOf(ctx, rdb, k, lost)
	if err != nil || !ok || amount != want[lost].Amount || at != want[lost].ClaimedAt {
		t.Fatalf("claim put back: %d@%d %v %v, want %+v", amount, at, ok, err, want[lost])
	}
	st, err := lua.ReadBuckets(ctx, rdb, l)
	if err != nil || st.Claims != int64(len(want)) {
		t.Fatalf("state: %+v %v", st.State, err)
	}
}

// TestReconcilerLostHome: the claims in the buckets of a campaign whose
// home (window, pool, lease) Redis lost still reach claim_log: the
// reconciler takes the bucket count from PostgreSQL's row when Redis has
// no home to tell it (it used to read the campaign as one bucket, not
// loaded, and skip it).
func TestReconcilerLostHome(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	rdb, db := testenv.Redis(t), testenv.Postgres(t)
	ctx := context.Background()
	stock := map[int64]int64{5: 100}
	id := testenv.LiveCampaign(t, db, stock)
	if _, err := db.Exec(ctx, `UPDATE campaign SET buckets = 4 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	l, err := testenv.Keys().Layout(id, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, k := range l.AllKeys() {
			rdb.Do(ctx, rdb.B().Unlink().Key(k).Build())
		}
	})
	now := time.Now()
	if ok, err := lua.LoadBuckets(ctx, rdb, l, now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli(), stock, nil); err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	want := map[string]testenv.Row{}
	for _, u := range users("lh", 20) {
		b := lua.BucketOf(id, u, 4)
		out := make([]rain.Result, 1)
		if _, err := lua.ClaimBucket(ctx, rdb, l, b, []string{u}, []uint64{rand.Uint64()}, out); err != nil || out[0].Outcome != rain.OK {
			continue // an empty bucket: that user's open waits for a refill
		}
		want[u] = testenv.Row{Amount: out[0].Amount, ClaimedAt: out[0].ClaimedAt}
	}
	if len(want) == 0 {
		t.Fatal("no claim made")
	}
	if err := rdb.Do(ctx, rdb.B().Del().Key(l.Home.Meta(), l.Pool(), l.Out(), l.Rebal()).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	r := newReconciler(t, db, rdb, nil)
	rep, err := r.Reconcile(ctx, reconcile.Options{Full: true}, id)
	if err != nil || rep.Repaired != len(want) {
		t.Fatalf("reconcile of the campaign whose home was lost: %+v %v, want %d repaired", rep, err, len(want))
	}
	testenv.AssertState(t, db, id, want)
}
