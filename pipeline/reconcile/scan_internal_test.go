package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// scannedCampaign makes a live campaign in PostgreSQL and Redis whose
// claims hash holds 3000 claims of a minute ago (users u0000…u2999, none in
// claim_log): a hash table, read by several HSCAN calls.
func scannedCampaign(t *testing.T, rdb rueidis.Client) (int64, *lua.Keys) {
	t.Helper()
	ctx := context.Background()
	id := testenv.LiveCampaign(t, testenv.Postgres(t), map[int64]int64{5: 5000})
	k := testenv.Keys().Of(id)
	del := func() { rdb.Do(ctx, rdb.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build()) }
	del()
	t.Cleanup(del)
	now := time.Now()
	if ok, err := lua.Load(ctx, rdb, k, now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli(), map[int64]int64{5: 5000}); err != nil || !ok {
		t.Fatal(ok, err)
	}
	at := now.Add(-time.Minute).UnixMilli()
	cmd := rdb.B().Hset().Key(k.Claims()).FieldValue()
	for i := range 3000 {
		cmd = cmd.FieldValue(fmt.Sprintf("u%04d", i), lua.ClaimValue(5, at))
	}
	if err := rdb.Do(ctx, cmd.Build()).Error(); err != nil {
		t.Fatal(err)
	}
	return id, k
}

// TestScanIncompleteIsNotVerified: a scan that saw fewer entries than the
// hash held when it began (what a hash moved to another Redis Cluster node
// mid-scan looks like) repairs what it saw but does not mark the campaign
// verified.
func TestScanIncompleteIsNotVerified(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	ctx := context.Background()
	id, k := scannedCampaign(t, rdb)

	cfg := DefaultConfig()
	r := New(cfg, testenv.Store(t), rdb, testenv.Keys(), slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	once := false
	r.afterHSCAN = func(seen []string) {
		if once {
			return
		}
		once = true
		// Ten entries the scan has not reached vanish (moved away).
		n := 0
		for i := 2999; i >= 0 && n < 10; i-- {
			if u := fmt.Sprintf("u%04d", i); !slices.Contains(seen, u) {
				rdb.Do(ctx, rdb.B().Hdel().Key(k.Claims()).Field(u).Build())
				n++
			}
		}
	}
	rep, err := r.Reconcile(ctx, Options{}, id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partial != 1 || rep.Scanned != 2990 || rep.Repaired != 2990 {
		t.Fatalf("%+v, want a partial scan of 2990", rep)
	}
	if m := r.marks[id]; m.verified != math.MinInt64 {
		t.Fatalf("verified up to %d after an incomplete scan", m.verified)
	}

	// A complete scan marks it.
	r.afterHSCAN = nil
	rdb.Do(ctx, rdb.B().Hset().Key(k.Claims()).FieldValue().FieldValue("late", lua.ClaimValue(5, time.Now().Add(-time.Minute).UnixMilli())).Build())
	if rep, err = r.Reconcile(ctx, Options{}, id); err != nil || rep.Partial != 0 || rep.Repaired != 1 {
		t.Fatalf("%+v %v, want a complete scan repairing 1", rep, err)
	}
	if m := r.marks[id]; m.verified == math.MinInt64 {
		t.Fatal("not verified after a complete scan")
	}
}
