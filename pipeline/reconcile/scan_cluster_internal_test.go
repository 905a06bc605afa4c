package reconcile

import (
	"context"
	"log/slog"
	"math"
	"testing"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
)

// TestScanMigratedMidScanIsNotVerified (Redis Cluster): the campaign's
// slot moves to another master between two HSCAN calls of a scan, whole
// (the next HSCAN gets MOVED) or with the claims hash moved and the rest
// not yet (ASK). Either way the scan ends as incomplete: it repairs what it
// saw, does not mark the campaign verified, and the next scan, on the new
// master, does.
func TestScanMigratedMidScanIsNotVerified(t *testing.T) {
	rdb := testenv.RedisCluster(t)
	for _, whole := range []bool{true, false} {
		name := map[bool]string{true: "MOVED", false: "ASK"}[whole]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			id, k := scannedCampaign(t, rdb)
			slot := rediscluster.Slot(k.Claims())
			to, err := rediscluster.OtherMaster(ctx, rdb, slot)
			if err != nil {
				t.Fatal(err)
			}

			r := New(DefaultConfig(), testenv.Store(t), rdb, testenv.Keys(), slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
			var move *rediscluster.Move
			calls := 0
			r.afterHSCAN = func([]string) {
				if calls++; calls != 1 {
					return
				}
				if move, err = rediscluster.StartMove(ctx, rdb, slot, to); err != nil {
					t.Error(err)
					return
				}
				if err := move.Migrate(ctx, k.Claims()); err != nil {
					t.Error(err)
				}
				if whole {
					if err := move.Finish(ctx); err != nil {
						t.Error(err)
					}
				}
			}
			rep, err := r.Reconcile(ctx, Options{}, id)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Partial != 1 || calls != 1 || rep.Scanned == 0 || rep.Scanned >= 3000 || rep.Repaired != rep.Scanned {
				t.Fatalf("%+v after %d HSCAN calls, want a partial scan repairing what it saw", rep, calls)
			}
			if m := r.marks[id]; m.verified != math.MinInt64 {
				t.Fatalf("verified up to %d after a scan cut short by %s", m.verified, name)
			}
			if !whole {
				if err := move.Finish(ctx); err != nil {
					t.Fatal(err)
				}
			}

			// The next scan reads the hash on its new master, whole.
			r.afterHSCAN = nil
			if rep, err = r.Reconcile(ctx, Options{}, id); err != nil || rep.Partial != 0 || rep.Scanned != 3000 {
				t.Fatalf("%+v %v, want a complete scan of 3000", rep, err)
			}
			if m := r.marks[id]; m.verified == math.MinInt64 {
				t.Fatal("not verified after a complete scan")
			}
			if n := testenv.CountClaims(t, testenv.Postgres(t), id); n != 3000 {
				t.Fatalf("claim_log holds %d claims, want 3000", n)
			}
		})
	}
}
