package lua_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/writer"
)

// TestBucketShardLoss: one slot of a 3-bucket campaign loses its data (a
// bucket's shard, or the home's) while claims are being made, some not yet
// in claim_log. The design's procedure: the loss is seen (the lost
// bucket's users get NOT_FOUND, the layout is partial, a load refuses),
// the parts still there are frozen (BUSY, nothing claimed, no stock
// moves), the claims they hold are written to claim_log, and the whole
// campaign is rebuilt from PostgreSQL: every bucket's claims restored
// before it serves. Afterwards every claim claim_log holds or a surviving
// part held is answered ALREADY_OPENED with its amount; the only users who
// can claim again are those whose claim existed solely on the lost shard
// (as with a whole Redis lost); stock + claims = total; a lease of before
// the loss moves nothing.
func TestBucketShardLoss(t *testing.T) {
	c := testenv.Redis(t)
	store := testenv.Store(t)
	w := writer.New(store)
	ctx := context.Background()
	for _, lost := range []int{1, -1} { // bucket 1's shard; the home's
		t.Run(fmt.Sprint("lost=", lost), func(t *testing.T) {
			inv := map[int64]int64{1: 300, 10: 100}
			id := testenv.LiveCampaign(t, store.DB, inv)
			l, err := testenv.Keys().Layout(id, 3)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { unlinkLayout(c, l) })
			camp, err := store.Campaign(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			totals := map[int64]int64{}
			for _, s := range camp.Inventory {
				totals[s.Amount] = s.Total
			}
			start, end := camp.StartTime.UnixMilli(), camp.EndTime.UnixMilli()
			if ok, err := lua.LoadBuckets(ctx, c, l, start, end, totals, nil); !ok || err != nil {
				t.Fatalf("load: %v %v", ok, err)
			}
			// 150 users claim; the pipeline delivers all but 12 claims
			// (six of the lost bucket's users, six of the others).
			var events []pipeline.Event
			unpersisted := map[string]bool{}
			var lostOnly []string
			for i := range 150 {
				user := fmt.Sprint("s-", i)
				r, err := open(ctx, c, l, user, 8, rand.Uint64)
				if err != nil || r.Outcome != rain.OK {
					t.Fatalf("claim %s: %+v %v", user, r, err)
				}
				inLost := lua.BucketOf(id, user, 3) == lost
				if n := len(unpersisted); n < 12 && (inLost && len(lostOnly) < 6 || !inLost && n-len(lostOnly) < 6) {
					unpersisted[user] = true
					if inLost {
						lostOnly = append(lostOnly, user)
					}
					continue
				}
				events = append(events, pipeline.Event{CampaignID: id, UserID: user, Amount: r.Amount, ClaimedAt: r.ClaimedAt})
			}
			if _, err := w.Write(ctx, events); err != nil {
				t.Fatal(err)
			}
			lease, err := lua.Lock(ctx, c, l, time.Minute) // held by a process across the loss
			if err != nil {
				t.Fatal(err)
			}
			before := allClaims(t, c, l)

			// The shard loses its data.
			var gone []string
			if lost < 0 {
				gone = []string{l.Home.Meta(), l.Pool(), l.Out(), l.Rebal()}
				lostOnly = nil // the home holds no claims
			} else {
				b := l.Buckets[lost]
				gone = []string{b.Meta(), b.Stock(), b.Claims(), b.In(), b.Out()}
			}
			for _, k := range gone {
				c.Do(ctx, c.B().Unlink().Key(k).Build())
			}

			// Seen: NOT_FOUND in the lost bucket, a partial layout, a load refused.
			if lost >= 0 {
				if got, _ := claimIn(t, c, l, userOf(l, lost, 0)); got[0].Outcome != rain.NotFound {
					t.Errorf("a user of the lost bucket: %+v, want NOT_FOUND", got[0])
				}
			}
			h, err := lua.CheckLayout(ctx, c, l)
			if err != nil || h.Whole() || h.None() {
				t.Fatalf("layout after the loss: %+v %v, want partial", h, err)
			}
			if ok, err := lua.LoadBuckets(ctx, c, l, start, end, totals, nil); ok || !errors.Is(err, lua.ErrPartial) {
				t.Fatalf("load after the loss: %v %v, want ErrPartial", ok, err)
			}
			if err := lua.Rebuild(ctx, c, l, start, end, totals, nil); !errors.Is(err, lua.ErrNotFrozen) {
				t.Fatalf("rebuild before freezing: %v, want ErrNotFrozen", err)
			}

			// Frozen: the survivors claim nothing and move nothing.
			if n, err := lua.Freeze(ctx, c, l); err != nil || n != 3 {
				t.Fatalf("freeze: %d parts, %v; want the 3 left", n, err)
			}
			survivor := (lost + 1 + 3) % 3
			if got, _ := claimIn(t, c, l, userOf(l, survivor, 1000)); got[0].Outcome != rain.Busy {
				t.Errorf("a survivor's new user: %+v, want BUSY", got[0])
			}
			if _, err := lease.Transfer(ctx, survivor, (survivor+1)%3, 1, 1); err == nil {
				t.Error("a transfer out of a frozen bucket went through")
			}

			// The survivors' claims go to claim_log (the reconciler's full
			// scan), then the rebuild from PostgreSQL.
			var rest []pipeline.Event
			for b, bk := range l.Buckets {
				if b == lost {
					continue
				}
				err := lua.ScanClaims(ctx, c, bk.Keys, func(user string, amount, at int64) error {
					rest = append(rest, pipeline.Event{CampaignID: id, UserID: user, Amount: amount, ClaimedAt: at})
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if _, err := w.Write(ctx, rest); err != nil {
				t.Fatal(err)
			}
			persisted := map[string]string{}
			err = store.ForEachClaim(ctx, id, func(user string, amount int64, at time.Time) error {
				persisted[user] = lua.ClaimValue(amount, at.UnixMilli())
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := lua.Rebuild(ctx, c, l, start, end, totals, persisted); err != nil {
				t.Fatal(err)
			}

			// After: whole, not frozen, the claims exactly claim_log's.
			s := readBuckets(t, c, l)
			if !s.Loaded || s.Frozen || s.Claims != int64(len(persisted)) || s.Claims+s.Left != 400 || s.Pending != 0 {
				t.Fatalf("after the rebuild: %+v (%d persisted)", s, len(persisted))
			}
			if want := 150 - len(lostOnly); len(persisted) != want {
				t.Errorf("%d claims persisted, want %d (all but the lost shard's unpersisted %d)", len(persisted), want, len(lostOnly))
			}
			for user, v := range before {
				amount, _, _ := lua.ParseClaimValue(v)
				got, _ := claimIn(t, c, l, user)
				switch {
				case slices.Contains(lostOnly, user):
					if got[0].Outcome != rain.OK {
						t.Errorf("%s, whose claim existed only on the lost shard: %+v", user, got[0])
					}
				case got[0].Outcome != rain.AlreadyOpened || got[0].Amount != amount:
					t.Errorf("%s held %s: after the rebuild %+v, want ALREADY_OPENED %d", user, v, got[0], amount)
				}
			}
			if _, err := lease.Transfer(ctx, -1, 0, 1, 1); !errors.Is(err, lua.ErrFenced) && !errors.Is(err, lua.ErrNotLoaded) {
				t.Errorf("a lease of before the loss, after the rebuild: %v, want fenced", err)
			}
			if code, err := lua.Credit(ctx, lease, 0, "old", "1:50"); code != -2 || err != nil {
				t.Errorf("a credit under a lease of before the loss: %d %v, want -2 (fenced)", code, err)
			}
			if s2 := readBuckets(t, c, l); s2.Left != s.Left-int64(len(lostOnly)) {
				t.Errorf("a stale credit changed the stock: %d left, want %d", s2.Left, s.Left-int64(len(lostOnly)))
			}
		})
	}
}
