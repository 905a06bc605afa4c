package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
)

// TestClaimDuringSlotMigration (Redis Cluster): while a migration has
// moved the campaign's claims hash to another master and not yet its meta
// and stock, claim.lua gets TRYAGAIN (it did not run). The open sends it
// again rediscluster.Retries times, then answers 503; once the migration
// finishes, the same user's open claims (200, not 409: none of the calls
// ran), and the campaign works on its new master.
func TestClaimDuringSlotMigration(t *testing.T) {
	rdb := testenv.RedisCluster(t)
	for _, batch := range []bool{true, false} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			h := newHarness(t, harnessOpt{redis: rdb, set: func(c *Config) { c.ClaimBatch = batch }})
			id := h.live(`{"5":100}`)
			if status, m := h.open(id, "warm-up"); status != 200 {
				t.Fatalf("warm-up open: %d %v", status, m)
			}
			ctx := context.Background()
			k := testenv.Keys().Of(id)
			slot := rediscluster.Slot(k.Claims())
			to, err := rediscluster.OtherMaster(ctx, rdb, slot)
			if err != nil {
				t.Fatal(err)
			}
			move, err := rediscluster.StartMove(ctx, rdb, slot, to)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = move.Finish(ctx) })
			if err := move.Migrate(ctx, k.Claims()); err != nil {
				t.Fatal(err)
			}
			retried := rediscluster.Retried(rediscluster.KindTryAgain)
			replies := rediscluster.ErrorReplies(rediscluster.KindTryAgain)
			if status, m := h.open(id, "split"); status != 503 {
				t.Fatalf("open while the campaign's keys are split: %d %v, want 503", status, m)
			}
			if d := rediscluster.Retried(rediscluster.KindTryAgain) - retried; d < rediscluster.Retries {
				t.Errorf("%d claim calls sent again after TRYAGAIN, want at least %d", d, rediscluster.Retries)
			}
			if d := rediscluster.ErrorReplies(rediscluster.KindTryAgain) - replies; d < rediscluster.Retries+1 {
				t.Errorf("%d TRYAGAIN replies counted, want at least %d", d, rediscluster.Retries+1)
			}
			if err := move.Finish(ctx); err != nil {
				t.Fatal(err)
			}
			if status, m := h.open(id, "split"); status != 200 {
				t.Fatalf("the 503'd user after the migration: %d %v, want 200 (no call ran)", status, m)
			}
			if status, m := h.open(id, "warm-up"); status != 409 {
				t.Fatalf("warm-up user again: %d %v, want 409", status, m)
			}
			if n := h.claims(id); n != 2 {
				t.Fatalf("redis holds %d claims, want 2", n)
			}
		})
	}
}
