package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/reconcile"
	"github.com/redpacket/rain/pipeline/writer"
)

// newReconciler is a reconciler of the test keyspace with the default
// configuration, changed by set.
func newReconciler(t testing.TB, db *pgxpool.Pool, rdb rueidis.Client, set func(*reconcile.Config)) *reconcile.Reconciler {
	cfg := reconcile.DefaultConfig()
	if set != nil {
		set(&cfg)
	}
	return reconcile.New(cfg, &postgres.Store{DB: db}, rdb, testenv.Keys(), testLogger(t))
}

// testLogger logs warnings and errors into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// liveCampaign makes a campaign of inventory live in PostgreSQL and in
// Redis (loadRedis), and returns the stores, its id and its keys.
func liveCampaign(t *testing.T, inventory map[int64]int64) (*pgxpool.Pool, rueidis.Client, int64, *lua.Keys) {
	t.Helper()
	db, rdb := testenv.Postgres(t), testenv.Redis(t)
	id := testenv.LiveCampaign(t, db, inventory)
	return db, rdb, id, loadRedis(t, rdb, id, inventory)
}

// loadRedis makes campaign id (already in PostgreSQL) live in Redis with
// the given stock, and removes its keys when the test ends.
func loadRedis(t testing.TB, rdb rueidis.Client, id int64, stock map[int64]int64) *lua.Keys {
	t.Helper()
	k := testenv.Keys().Of(id)
	ctx := context.Background()
	del := func() { rdb.Do(ctx, rdb.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build()) }
	del() // leftovers of a database recreated under a persistent Redis
	t.Cleanup(del)
	now := time.Now()
	if ok, err := lua.Load(ctx, rdb, k, now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli(), stock); err != nil || !ok {
		t.Fatalf("load campaign %d into redis: %v %v", id, ok, err)
	}
	return k
}

// claimInRedis opens packets for users straight in Redis (claim.lua), as
// the api does, with no event: as if the api died with them in its ring.
func claimInRedis(t testing.TB, rdb rueidis.Client, k *lua.Keys, users ...string) map[string]testenv.Row {
	t.Helper()
	out := map[string]testenv.Row{}
	for _, u := range users {
		r, err := lua.Claim(context.Background(), rdb, k, u, rand.Uint64())
		if err != nil || r.Outcome != rain.OK {
			t.Fatalf("claim %s: %+v %v", u, r, err)
		}
		out[u] = testenv.Row{Amount: r.Amount, ClaimedAt: r.ClaimedAt}
	}
	return out
}

func users(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

func TestReconcilerRepairsMissingClaims(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, rdb, id, k := liveCampaign(t, map[int64]int64{20: 10, 5: 60})

	// 40 claims in Redis; the events of the first 15 reached PostgreSQL.
	claims := claimInRedis(t, rdb, k, users("r", 40)...)
	var persisted []pipeline.Event
	for _, u := range users("r", 15) {
		persisted = append(persisted, pipeline.Event{CampaignID: id, UserID: u, Amount: claims[u].Amount, ClaimedAt: claims[u].ClaimedAt})
	}
	if _, err := writer.New(&postgres.Store{DB: db}).Write(ctx, persisted); err != nil {
		t.Fatal(err)
	}

	rec := newReconciler(t, db, rdb, func(c *reconcile.Config) { c.Chunk = 7 })
	rep, err := rec.Reconcile(ctx, reconcile.Options{Full: true}, id)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (reconcile.Report{Campaigns: 1, Scanned: 40, Repaired: 25}) {
		t.Fatalf("first reconcile: %+v, want 40 scanned, 25 repaired", rep)
	}
	testenv.AssertState(t, db, id, claims) // original amounts and claim times

	// Again, full and periodic-style: nothing to do.
	for _, opts := range []reconcile.Options{{Full: true}, {}} {
		rep, err = rec.Reconcile(ctx, opts, id)
		if err != nil || rep.Repaired != 0 {
			t.Fatalf("reconcile %+v again: %+v %v, want nothing repaired", opts, rep, err)
		}
	}
	testenv.AssertState(t, db, id, claims)

	// A claim lost later is found by the next periodic-style pass, which
	// does not rewrite what the previous one checked.
	for u, r := range claimInRedis(t, rdb, k, "late") {
		claims[u] = r
	}
	rep, err = rec.Reconcile(ctx, reconcile.Options{}, id)
	if err != nil || rep.Repaired != 1 {
		t.Fatalf("reconcile after a late claim: %+v %v, want 1 repaired", rep, err)
	}
	testenv.AssertState(t, db, id, claims)
}

func TestReconcilerGraceAndRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, rdb, id, k := liveCampaign(t, map[int64]int64{3: 20})
	claims := claimInRedis(t, rdb, k, users("g", 5)...)
	rec := newReconciler(t, db, rdb, nil)

	// Young claims are left to the pipeline.
	rep, err := rec.Reconcile(ctx, reconcile.Options{Grace: time.Hour, Full: true}, id)
	if err != nil || rep.Young != 5 || rep.Repaired != 0 {
		t.Fatalf("reconcile with a grace: %+v %v, want 5 young", rep, err)
	}
	if n := testenv.CountClaims(t, db, id); n != 0 {
		t.Fatalf("%d claims written inside the grace", n)
	}

	// A claims-hash entry whose amount the inventory lacks is reported,
	// and does not keep the others out.
	rdb.Do(ctx, rdb.B().Hset().Key(k.Claims()).FieldValue().FieldValue("odd", lua.ClaimValue(999, time.Now().UnixMilli())).Build())
	rep, err = rec.Reconcile(ctx, reconcile.Options{Full: true}, id)
	if err != nil || rep.Repaired != 5 || rep.Rejected != 1 {
		t.Fatalf("reconcile: %+v %v, want 5 repaired, 1 rejected", rep, err)
	}
	testenv.AssertState(t, db, id, claims)
}

func TestReconcilerActiveCampaigns(t *testing.T) {
	t.Parallel()
	db, rdb := testenv.Postgres(t), testenv.Redis(t)
	now := time.Now()
	inv := map[int64]int64{1: 1}
	live := testenv.NewCampaign(t, db, now.Add(-time.Hour), now.Add(time.Hour), inv)
	recent := testenv.NewCampaign(t, db, now.Add(-3*time.Hour), now.Add(-2*time.Hour), inv)
	old := testenv.NewCampaign(t, db, now.Add(-50*time.Hour), now.Add(-49*time.Hour), inv)
	future := testenv.NewCampaign(t, db, now.Add(time.Hour), now.Add(2*time.Hour), inv)

	rec := newReconciler(t, db, rdb, func(c *reconcile.Config) { c.Lookback = 24 * time.Hour })
	ids, err := rec.ActiveCampaigns(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int64]bool{live: true, recent: true, old: false, future: false} {
		if slices.Contains(ids, id) != want {
			t.Errorf("campaign %d active = %v, want %v", id, !want, want)
		}
	}
}

func TestReconcilerLock(t *testing.T) {
	t.Parallel()
	db, rdb := testenv.Postgres(t), testenv.Redis(t)
	ctx := context.Background()
	a := newReconciler(t, db, rdb, nil)
	b := newReconciler(t, db, rdb, nil)

	// Another package's tests or a running consumer may hold the lock for
	// a moment: take it first (waiting), then check b is kept out.
	var inner bool
	ran, err := a.WithLock(ctx, true, func(ctx context.Context) error {
		var err error
		inner, err = b.WithLock(ctx, false, func(context.Context) error { return nil })
		return err
	})
	if err != nil || !ran || inner {
		t.Fatalf("a ran %v, b ran %v inside a's pass (err %v); want a alone", ran, inner, err)
	}
	ran, err = b.WithLock(ctx, true, func(context.Context) error { return nil })
	if err != nil || !ran {
		t.Fatalf("b after a: ran %v, %v", ran, err)
	}
}

func TestReconcilerPassSkipsWhileLocked(t *testing.T) {
	t.Parallel()
	db, rdb := testenv.Postgres(t), testenv.Redis(t)
	holder := newReconciler(t, db, rdb, nil)
	other := newReconciler(t, db, rdb, nil)
	// Only while the lock is held elsewhere: a pass that ran would walk
	// every active campaign of the shared test database.
	ran, err := holder.WithLock(context.Background(), true, func(ctx context.Context) error {
		rep, err := other.Pass(ctx)
		if err != nil || rep != (reconcile.Report{}) {
			return fmt.Errorf("pass while locked elsewhere: %+v %v, want skipped", rep, err)
		}
		return nil
	})
	if err != nil || !ran {
		t.Fatal(ran, err)
	}
}

// TestReconcilerPutsBackClaimsRedisLost: a Redis that lost its last second
// of writes (AOF everysec, a crash) misses claims PostgreSQL holds; a pass
// puts them back and takes them from the stock, so nobody claims twice.
func TestReconcilerPutsBackClaimsRedisLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, rdb, id, k := liveCampaign(t, map[int64]int64{5: 4})
	claims := claimInRedis(t, rdb, k, users("lost", 3)...)
	var events []pipeline.Event
	for u, c := range claims {
		events = append(events, pipeline.Event{CampaignID: id, UserID: u, Amount: c.Amount, ClaimedAt: c.ClaimedAt})
	}
	if _, err := writer.New(&postgres.Store{DB: db}).Write(ctx, events); err != nil {
		t.Fatal(err)
	}
	// Redis loses lost-001's claim and gives its packet back to the stock.
	rdb.Do(ctx, rdb.B().Hdel().Key(k.Claims()).Field("lost-001").Build())
	rdb.Do(ctx, rdb.B().Hincrby().Key(k.Stock()).Field("5").Increment(1).Build())

	rec := newReconciler(t, db, rdb, nil)
	rep, err := rec.Reconcile(ctx, reconcile.Options{Grace: -1}, id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Readded != 1 || rep.Oversold != 0 || rep.Repaired != 0 {
		t.Fatalf("report %+v, want 1 put back", rep)
	}
	r, err := lua.Claim(ctx, rdb, k, "lost-001", rand.Uint64())
	if err != nil || r.Outcome != rain.AlreadyOpened || r.Amount != 5 || r.ClaimedAt != claims["lost-001"].ClaimedAt {
		t.Errorf("lost-001 opens again: %+v %v, want ALREADY_OPENED with the original claim", r, err)
	}
	if st, _ := lua.ReadState(ctx, rdb, k); st.Left != 1 || st.Claims != 3 {
		t.Errorf("state: %+v, want 1 left and 3 claims", st)
	}
	// A second pass has nothing to do.
	if rep, err := rec.Reconcile(ctx, reconcile.Options{Grace: -1}, id); err != nil || rep.Readded != 0 {
		t.Errorf("second pass: %+v %v", rep, err)
	}

	// If the packet was handed out again meanwhile, the claim still goes
	// back (the user keeps what they were told) and the oversell is counted.
	rdb.Do(ctx, rdb.B().Hdel().Key(k.Claims()).Field("lost-002").Build())
	claimInRedis(t, rdb, k, "late") // takes the last packet
	rdb.Do(ctx, rdb.B().Hdel().Key(k.Claims()).Field("late").Build())
	rdb.Do(ctx, rdb.B().Hdel().Key(k.Claims()).Field("lost-000").Build())
	rep, err = rec.Reconcile(ctx, reconcile.Options{Grace: -1}, id)
	if err != nil || rep.Readded != 2 || rep.Oversold != 2 {
		t.Errorf("oversold pass: %+v %v, want 2 put back, both oversold", rep, err)
	}
}

// persist writes the given claims of Redis to claim_log, as the consumer
// would.
func persist(t testing.TB, db *pgxpool.Pool, id int64, claims map[string]testenv.Row) {
	t.Helper()
	var evs []pipeline.Event
	for u, c := range claims {
		evs = append(evs, pipeline.Event{CampaignID: id, UserID: u, Amount: c.Amount, ClaimedAt: c.ClaimedAt})
	}
	if _, err := writer.New(&postgres.Store{DB: db}).Write(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// TestReconcilerSkipsMalformedEntries: entries of the claims hash that are
// not a claim are counted and skipped; the valid ones are repaired, and no
// pass fails because of them.
func TestReconcilerSkipsMalformedEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, rdb, id, k := liveCampaign(t, map[int64]int64{5: 20})
	claims := claimInRedis(t, rdb, k, users("m", 6)...)
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	bad := map[string]string{
		"no-colon":    "5",
		"not-numbers": "x:y",
		"bad-time":    "5:soon",
		"zero-amount": "0:" + now,
		"negative-at": "5:-1",
		"huge-value":  strings.Repeat("9", 1<<20),
		"has space":   "5:" + now,
		"":            "5:" + now,
	}
	cmd := rdb.B().Hset().Key(k.Claims()).FieldValue()
	for u, v := range bad {
		cmd = cmd.FieldValue(u, v)
	}
	if err := rdb.Do(ctx, cmd.Build()).Error(); err != nil {
		t.Fatal(err)
	}

	rec := newReconciler(t, db, rdb, func(c *reconcile.Config) { c.Chunk = 2 })
	before := malformedTotal(t)
	rep, err := rec.Reconcile(ctx, reconcile.Options{Full: true}, id)
	if err != nil || rep.Malformed != len(bad) || rep.Scanned != len(claims)+len(bad) || rep.Repaired != len(claims) {
		t.Fatalf("full pass: %+v %v, want %d malformed of %d scanned, %d repaired", rep, err, len(bad), len(claims)+len(bad), len(claims))
	}
	testenv.AssertState(t, db, id, claims)
	if got := malformedTotal(t) - before; got < float64(len(bad)) {
		t.Errorf("rain_reconciler_malformed_total rose by %v, want at least %d", got, len(bad))
	}
	// The bad entries are known: they do not call for a scan on every pass.
	if rep, err := rec.Reconcile(ctx, reconcile.Options{}, id); err != nil || rep.Scanned != 0 {
		t.Fatalf("periodic pass: %+v %v, want no scan", rep, err)
	}
	// A claim lost later still does.
	for u, r := range claimInRedis(t, rdb, k, "late") {
		claims[u] = r
	}
	rep, err = rec.Reconcile(ctx, reconcile.Options{}, id)
	if err != nil || rep.Repaired != 1 || rep.Malformed != len(bad) {
		t.Fatalf("periodic pass after a lost claim: %+v %v, want 1 repaired, %d malformed", rep, err, len(bad))
	}
	testenv.AssertState(t, db, id, claims)
}

// malformedTotal reads rain_reconciler_malformed_total from the process's
// metrics.
func malformedTotal(t testing.TB) float64 {
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	for line := range strings.Lines(b.String()) {
		if v, ok := strings.CutPrefix(line, "rain_reconciler_malformed_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no rain_reconciler_malformed_total")
	return 0
}

// TestReconcilerScansOnlyWhenCountsCallForIt: a periodic pass does not read
// the claims hash while claim_log counts every claim Redis held a grace
// ago; it does once claims older than that are missing.
func TestReconcilerScansOnlyWhenCountsCallForIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, rdb, id, k := liveCampaign(t, map[int64]int64{5: 100})
	claims := claimInRedis(t, rdb, k, users("c", 40)...)
	persist(t, db, id, claims)

	const grace = 100 * time.Millisecond
	rec := newReconciler(t, db, rdb, nil)
	pass := func(what string) reconcile.Report {
		t.Helper()
		rep, err := rec.Reconcile(ctx, reconcile.Options{Grace: grace}, id)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return rep
	}
	if rep := pass("all persisted"); rep.Scanned != 0 || rep.Deferred != 0 {
		t.Fatalf("all persisted: %+v, want no scan", rep)
	}
	// 5 claims on their way: claim_log still counts the 40 Redis held a
	// grace ago, so no scan.
	inFlight := claimInRedis(t, rdb, k, users("f", 5)...)
	time.Sleep(2 * grace) // the last sample ages past the grace
	if rep := pass("claims in flight"); rep.Scanned != 0 || rep.Deferred != 1 {
		t.Fatalf("claims in flight: %+v, want the scan deferred", rep)
	}
	// They never arrive: a grace later claim_log counts fewer claims than
	// Redis held, and the pass scans and repairs them.
	time.Sleep(2 * grace)
	rep := pass("claims lost")
	if rep.Scanned != 45 || rep.Repaired != 5 || rep.Deferred != 0 {
		t.Fatalf("claims lost: %+v, want 45 scanned, 5 repaired", rep)
	}
	for u, r := range inFlight {
		claims[u] = r
	}
	testenv.AssertState(t, db, id, claims)
	if rep := pass("repaired"); rep.Scanned != 0 {
		t.Fatalf("after the repair: %+v, want no scan", rep)
	}
}

// TestReconcilerScanEvery: claims lost while more claims keep arriving
// than were lost hide from the counts; the scan every ScanEvery finds
// them.
func TestReconcilerScanEvery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, rdb, id, k := liveCampaign(t, map[int64]int64{5: 100})
	claims := claimInRedis(t, rdb, k, users("s", 10)...)
	persist(t, db, id, claims)

	const grace = 50 * time.Millisecond
	const scanEvery = 500 * time.Millisecond
	rec := newReconciler(t, db, rdb, func(c *reconcile.Config) { c.ScanEvery = scanEvery })
	pass := func() reconcile.Report {
		t.Helper()
		rep, err := rec.Reconcile(ctx, reconcile.Options{Grace: grace}, id)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	start := time.Now()
	pass()
	lost := claimInRedis(t, rdb, k, users("lost", 2)...)
	later := claimInRedis(t, rdb, k, users("later", 4)...)
	persist(t, db, id, later)
	time.Sleep(2 * grace)
	if rep := pass(); rep.Deferred != 1 || rep.Scanned != 0 {
		t.Fatalf("masked loss: %+v, want the scan deferred (14 persisted >= 10 held a grace ago)", rep)
	}
	time.Sleep(scanEvery - time.Since(start))
	if rep := pass(); rep.Repaired != 2 || rep.Scanned != 16 {
		t.Fatalf("after ScanEvery: %+v, want 16 scanned, 2 repaired", rep)
	}
	for u, r := range lost {
		claims[u] = r
	}
	for u, r := range later {
		claims[u] = r
	}
	testenv.AssertState(t, db, id, claims)
}

// TestReconcilerSkipsReaddWhenNotLoaded: a campaign Redis does not hold at
// all (flushed, expired) is left to the api's rebuild: nothing is put back.
func TestReconcilerSkipsReaddWhenNotLoaded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, rdb, id, k := liveCampaign(t, map[int64]int64{5: 10})
	claims := claimInRedis(t, rdb, k, users("n", 3)...)
	persist(t, db, id, claims)
	rdb.Do(ctx, rdb.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())

	rep, err := newReconciler(t, db, rdb, nil).Reconcile(ctx, reconcile.Options{}, id)
	if err != nil || rep.Readded != 0 {
		t.Fatalf("%+v %v, want nothing put back", rep, err)
	}
	if n, _ := rdb.Do(ctx, rdb.B().Exists().Key(k.Claims(), k.Meta()).Build()).AsInt64(); n != 0 {
		t.Fatalf("%d keys of an unloaded campaign made by the reconciler", n)
	}
}
