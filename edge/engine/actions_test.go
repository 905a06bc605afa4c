package engine

import (
	"context"
	"encoding/json"
	"fmt"
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
