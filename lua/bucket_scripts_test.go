package lua_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// bucketCampaign loads a campaign of k buckets with the window [start,
// end) and stock, removing its keys when the test ends.
func bucketCampaign(t testing.TB, c rueidis.Client, k int, start, end time.Time, stock map[int64]int64) *lua.Layout {
	t.Helper()
	l, err := testenv.Keys().Layout(nextID.Add(1), k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unlinkLayout(c, l) })
	loaded, err := lua.LoadBuckets(context.Background(), c, l, start.UnixMilli(), end.UnixMilli(), stock, nil)
	if err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
	return l
}

func liveBuckets(t testing.TB, c rueidis.Client, k int, stock map[int64]int64) *lua.Layout {
	return bucketCampaign(t, c, k, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), stock)
}

func unlinkLayout(c rueidis.Client, l *lua.Layout) {
	ctx := context.Background()
	keys := append(l.AllKeys(), l.Home.Loading())
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.B().Unlink().Key(k).Build()
	}
	c.DoMulti(ctx, cmds...)
}

// userOf returns a user id of bucket b (the n-th such, for a fresh one).
func userOf(l *lua.Layout, b, n int) string {
	for i := 0; ; i++ {
		u := fmt.Sprintf("u%d-%d", n, i)
		if lua.BucketOf(l.ID, u, l.K()) == b {
			return u
		}
	}
}

// claimIn claims for users of one bucket (the first user's) in one call.
func claimIn(t testing.TB, c rueidis.Client, l *lua.Layout, users ...string) ([]rain.Result, int64) {
	t.Helper()
	rnds := make([]uint64, len(users))
	for i := range rnds {
		rnds[i] = rand.Uint64()
	}
	out := make([]rain.Result, len(users))
	left, err := lua.ClaimBucket(context.Background(), c, l, lua.BucketOf(l.ID, users[0], l.K()), users, rnds, out)
	if err != nil {
		t.Fatalf("claim %v: %v", users, err)
	}
	return out, left
}

func readBuckets(t testing.TB, c rueidis.Client, l *lua.Layout) lua.LayoutState {
	t.Helper()
	s, err := lua.ReadBuckets(context.Background(), c, l)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLoadBuckets: the stock is dealt, half into the buckets and half in
// the pool, nothing made or lost; a second load changes nothing; a
// campaign partly there is refused.
func TestLoadBuckets(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	stock := map[int64]int64{1: 600, 5: 300, 20: 99, 100: 1}
	l := liveBuckets(t, c, 3, stock)
	s := readBuckets(t, c, l)
	if !s.Loaded || s.Left != 1000 || s.PoolLeft != 500 || s.Claims != 0 || s.Pending != 0 || !reflect.DeepEqual(s.Remaining, stock) {
		t.Fatalf("loaded state %+v", s)
	}
	for b, bs := range s.Buckets {
		if !bs.Loaded || bs.Left < 166 || bs.Left > 167 || bs.Final || bs.Frozen {
			t.Errorf("bucket %d: %+v, want 166 or 167 packets", b, bs)
		}
	}
	meta, err := c.Do(ctx, c.B().Hgetall().Key(l.Home.Meta()).Build()).AsStrMap()
	if err != nil || meta["buckets"] != "3" || meta["fence"] == "" || meta["start"] == "" {
		t.Errorf("home meta %v %v", meta, err)
	}
	if again, err := lua.LoadBuckets(ctx, c, l, 0, 1, map[int64]int64{7: 7}, nil); again || err != nil {
		t.Errorf("second load: %v %v, want nothing done", again, err)
	}
	if s2 := readBuckets(t, c, l); !reflect.DeepEqual(s2, s) {
		t.Errorf("after a second load %+v, want %+v", s2, s)
	}
	c.Do(ctx, c.B().Unlink().Key(l.Buckets[1].Meta()).Build())
	if loaded, err := lua.LoadBuckets(ctx, c, l, 0, 1, stock, nil); loaded || !errors.Is(err, lua.ErrPartial) {
		t.Errorf("load of a campaign missing a bucket: %v %v, want ErrPartial", loaded, err)
	}
}

func TestClaimBucketBranches(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	now := time.Now()
	unknown, _ := testenv.Keys().Layout(nextID.Add(1), 3)
	future := bucketCampaign(t, c, 3, now.Add(time.Hour), now.Add(2*time.Hour), map[int64]int64{5: 9})
	past := bucketCampaign(t, c, 3, now.Add(-2*time.Hour), now.Add(-time.Hour), map[int64]int64{5: 9})
	for _, tc := range []struct {
		l    *lua.Layout
		want rain.Outcome
	}{{unknown, rain.NotFound}, {future, rain.NotStarted}, {past, rain.Ended}} {
		if got, left := claimIn(t, c, tc.l, userOf(tc.l, 2, 0)); got[0] != (rain.Result{Outcome: tc.want}) || left != -1 {
			t.Errorf("%v campaign: %+v left %d", tc.want, got, left)
		}
	}

	// Four packets: half dealt, one each into two buckets, none into the
	// third; two stay in the pool.
	l := liveBuckets(t, c, 3, map[int64]int64{20: 4})
	s := readBuckets(t, c, l)
	full := -1
	for b, bs := range s.Buckets {
		if bs.Left == 1 {
			full = b
		}
	}
	empty := (full + 1) % 3
	for s.Buckets[empty].Left != 0 {
		empty = (empty + 1) % 3
	}
	alice, bob := userOf(l, full, 0), userOf(l, full, 1)
	got, left := claimIn(t, c, l, alice, alice, bob)
	if got[0].Outcome != rain.OK || got[0].Amount != 20 || left != 0 ||
		got[1].Outcome != rain.AlreadyOpened || got[1].Amount != 20 || got[1].ClaimedAt != got[0].ClaimedAt ||
		got[2].Outcome != rain.Empty {
		t.Errorf("alice, alice, bob in a bucket of one packet: %+v, left %d; want OK, ALREADY_OPENED, EMPTY, left 0", got, left)
	}
	if got, left := claimIn(t, c, l, alice); got[0].Outcome != rain.AlreadyOpened || left != -1 {
		t.Errorf("alice again: %+v left %d, want ALREADY_OPENED and the stock not read", got, left)
	}
	if got, _ := claimIn(t, c, l, userOf(l, empty, 0)); got[0].Outcome != rain.Empty {
		t.Errorf("a user of an empty bucket: %+v, want EMPTY", got)
	}

	// A user of another bucket is refused before Redis: nothing written.
	out := make([]rain.Result, 2)
	if _, err := lua.ClaimBucket(ctx, c, l, full, []string{userOf(l, full, 5), userOf(l, empty, 5)}, []uint64{1, 2}, out); err == nil {
		t.Error("a batch with a user of another bucket: no error")
	}
	if _, err := lua.ClaimBucket(ctx, c, l, 3, []string{"x"}, []uint64{1}, out[:1]); err == nil {
		t.Error("bucket 3 of 3: no error")
	}
	if n := readBuckets(t, c, l).Claims; n != 1 {
		t.Errorf("%d claims, want alice's alone", n)
	}

	// 'final' turns EMPTY into SOLD_OUT with the bucket's claims; frozen is BUSY.
	ls, err := lua.Lock(ctx, c, l, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if sold, err := ls.CheckSoldOut(ctx); sold || err != nil {
		t.Errorf("check with packets in the pool and a bucket: %v %v, want not sold out", sold, err)
	}
	_ = ls.Unlock(ctx)
	if _, err := lua.Freeze(ctx, c, l); err != nil {
		t.Fatal(err)
	}
	if got, _ := claimIn(t, c, l, alice, userOf(l, full, 3)); got[0].Outcome != rain.Busy || got[1].Outcome != rain.Busy {
		t.Errorf("frozen: %+v, want BUSY for all", got)
	}
	if _, err := lua.Lock(ctx, c, l, time.Second); !errors.Is(err, lua.ErrFrozen) {
		t.Errorf("lock of a frozen campaign: %v, want ErrFrozen", err)
	}
}

// TestBucketSoldOutOnlyWhenAllEmpty: a bucket answers SOLD_OUT only after
// the global check saw every part empty; stock added back reopens every
// bucket and is served.
func TestBucketSoldOutOnlyWhenAllEmpty(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{5: 6})
	claimed := 0
	for i := 0; claimed < 6 && i < 1000; i++ {
		u := fmt.Sprint("user-", i)
		got, _ := claimIn(t, c, l, u)
		switch got[0].Outcome {
		case rain.OK:
			claimed++
		case rain.Empty:
			mv, err := lua.Rebalance(ctx, c, l, lua.BucketOf(l.ID, u, 3), 2, nil)
			if err != nil || mv.Kind == lua.MoveSoldOut || mv.Moved == 0 {
				t.Fatalf("rebalance with %d of 6 claimed: %+v %v", claimed, mv, err)
			}
		default:
			t.Fatalf("user %d: %+v with %d of 6 claimed", i, got[0], claimed)
		}
	}
	if claimed != 6 {
		t.Fatalf("%d claimed", claimed)
	}
	for b := range 3 {
		if got, _ := claimIn(t, c, l, userOf(l, b, 99)); got[0].Outcome != rain.Empty {
			t.Errorf("bucket %d before the check: %+v, want EMPTY", b, got[0])
		}
	}
	mv, err := lua.Rebalance(ctx, c, l, 0, 2, nil)
	if err != nil || mv.Kind != lua.MoveSoldOut {
		t.Fatalf("rebalance of an empty campaign: %+v %v, want sold out", mv, err)
	}
	for b := range 3 {
		got, _ := claimIn(t, c, l, userOf(l, b, 99))
		if got[0].Outcome != rain.SoldOut || got[0].Claims != readBuckets(t, c, l).Buckets[b].Claims {
			t.Errorf("bucket %d after the check: %+v, want SOLD_OUT with its claims", b, got[0])
		}
	}
	gen, loaded, err := lua.AddStockBuckets(ctx, c, l, 50, 3)
	if err != nil || !loaded || gen != 1 {
		t.Fatalf("add stock: %d %v %v", gen, loaded, err)
	}
	for b := range 3 {
		u := userOf(l, b, 99)
		got, _ := claimIn(t, c, l, u)
		if got[0].Outcome == rain.Empty {
			if mv, err := lua.Rebalance(ctx, c, l, b, 1, nil); err != nil || mv.Kind != lua.MoveRefill {
				t.Fatalf("refill after stock added: %+v %v", mv, err)
			}
			got, _ = claimIn(t, c, l, u)
		}
		if got[0].Outcome != rain.OK || got[0].Amount != 50 {
			t.Errorf("bucket %d after stock added: %+v, want OK 50", b, got[0])
		}
	}
	if s := readBuckets(t, c, l); s.Claims != 9 || s.Left != 0 {
		t.Errorf("after stock added and claimed: %d claims, %d left", s.Claims, s.Left)
	}
}

// TestTransferHalfDone: a transfer debited but never credited (its process
// died between the two) is finished by the sweeper, once; replaying the
// credit or retrying the take changes nothing.
func TestTransferHalfDone(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{1: 60, 10: 30})
	before := readBuckets(t, c, l)
	ls, err := lua.Lock(ctx, c, l, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	taken, list, err := lua.Take(ctx, ls, -1, 2, "t1", 10, 12345)
	if err != nil || taken != 10 {
		t.Fatalf("take: %d %q %v", taken, list, err)
	}
	if again, list2, err := lua.Take(ctx, ls, -1, 2, "t1", 10, 999); again != 10 || list2 != list || err != nil {
		t.Errorf("take retried: %d %q %v, want the first take's %q", again, list2, err, list)
	}
	mid := readBuckets(t, c, l)
	if mid.PoolLeft != before.PoolLeft-10 || mid.Buckets[2].Left != before.Buckets[2].Left || mid.Pending != 1 {
		t.Fatalf("after the debit: pool %d (was %d), bucket 2 %d (was %d), pending %d",
			mid.PoolLeft, before.PoolLeft, mid.Buckets[2].Left, before.Buckets[2].Left, mid.Pending)
	}
	for range 2 {
		n, err := ls.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s := readBuckets(t, c, l); s.Buckets[2].Left != before.Buckets[2].Left+10 || s.Pending != 0 || s.Left != before.Left {
			t.Fatalf("after sweeping (%d finished): bucket 2 %d, pending %d, left %d", n, s.Buckets[2].Left, s.Pending, s.Left)
		}
	}
	if code, err := lua.Credit(ctx, ls, 2, "t1", list); code != 0 || err != nil {
		t.Errorf("credit replayed: %d %v, want 0", code, err)
	}
	if s := readBuckets(t, c, l); s.Left != before.Left || !reflect.DeepEqual(s.Remaining, before.Remaining) {
		t.Errorf("stock %v after the replays, want %v", s.Remaining, before.Remaining)
	}
	_ = ls.Unlock(ctx)
}

// TestLeaseFencing: a process whose lease expired cannot move stock once a
// newer lease has touched the slots; the lease is exclusive while held.
func TestLeaseFencing(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{1: 90})
	old, err := lua.Lock(ctx, c, l, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lua.Lock(ctx, c, l, time.Minute); !errors.Is(err, lua.ErrLeaseHeld) {
		t.Fatalf("second lock: %v, want ErrLeaseHeld", err)
	}
	c.Do(ctx, c.B().Del().Key(l.Rebal()).Build()) // the old lease expires
	cur, err := lua.Lock(ctx, c, l, time.Minute)
	if err != nil || cur.Fence <= old.Fence {
		t.Fatalf("new lease %+v %v after %d", cur, err, old.Fence)
	}
	before := readBuckets(t, c, l)
	if _, err := old.Transfer(ctx, -1, 1, 5, 1); !errors.Is(err, lua.ErrFenced) {
		t.Errorf("old lease takes from the pool: %v, want ErrFenced", err)
	}
	if n, err := cur.Transfer(ctx, 0, 1, 5, 1); n != 5 || err != nil {
		t.Fatalf("new lease steals: %d %v", n, err)
	}
	if _, err := old.Transfer(ctx, 1, 2, 5, 1); !errors.Is(err, lua.ErrFenced) {
		t.Errorf("old lease takes from a bucket the new one touched: %v, want ErrFenced", err)
	}
	if code, err := lua.Credit(ctx, old, 1, "stale", "1:40"); code != -2 || err != nil {
		t.Errorf("old lease credits a bucket the new one touched: %d %v, want -2", code, err)
	}
	if sold, err := old.CheckSoldOut(ctx); sold || !errors.Is(err, lua.ErrFenced) {
		t.Errorf("old lease's check: %v %v, want ErrFenced", sold, err)
	}
	if s := readBuckets(t, c, l); s.Left != before.Left || s.Pending != 0 {
		t.Errorf("after the old lease's tries: %d left, %d pending; want %d, 0", s.Left, s.Pending, before.Left)
	}
	if err := old.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lua.Lock(ctx, c, l, time.Minute); !errors.Is(err, lua.ErrLeaseHeld) {
		t.Errorf("the old lease's unlock released the new one: %v", err)
	}
	if err := cur.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if ls, err := lua.Lock(ctx, c, l, time.Minute); err != nil || ls.Fence <= cur.Fence {
		t.Errorf("lock after unlock: %+v %v", ls, err)
	}
}

// TestRebalanceRefillsThenSteals: refills come from the pool while it has
// stock, at most its K-th part at once; then an empty bucket steals half
// of the fullest; a bucket with stock is left alone at the tail.
func TestRebalanceRefillsThenSteals(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 4, map[int64]int64{1: 80})
	// 40 in the pool, 10 per bucket.
	mv, err := lua.Rebalance(ctx, c, l, 0, 100, nil)
	if err != nil || mv.Kind != lua.MoveRefill || mv.From != -1 || mv.Moved != 10 {
		t.Fatalf("first refill: %+v %v, want 10 (the pool's 4th part)", mv, err)
	}
	if mv, err := lua.Rebalance(ctx, c, l, 0, 5, nil); err != nil || mv.Kind != lua.MoveNone {
		t.Errorf("refill of a bucket holding 20 of 5 wanted: %+v %v, want none", mv, err)
	}
	for i := 0; readBuckets(t, c, l).PoolLeft > 0; i++ {
		if _, err := lua.Rebalance(ctx, c, l, 1+i%3, 1000, nil); err != nil || i > 100 {
			t.Fatal(err)
		}
	}
	// Empty bucket 3 by hand (as claims would), then it steals.
	c.Do(ctx, c.B().Del().Key(l.Buckets[3].Stock()).Build())
	s := readBuckets(t, c, l)
	fullest := 0
	for b, bs := range s.Buckets {
		if bs.Left > s.Buckets[fullest].Left {
			fullest = b
		}
	}
	mv, err = lua.Rebalance(ctx, c, l, 3, 1000, nil)
	if err != nil || mv.Kind != lua.MoveSteal || mv.From != fullest || mv.Moved != (s.Buckets[fullest].Left+1)/2 {
		t.Errorf("steal: %+v %v, want half of bucket %d's %d", mv, err, fullest, s.Buckets[fullest].Left)
	}
	if mv, err := lua.Rebalance(ctx, c, l, 3, 1000, nil); err != nil || mv.Kind != lua.MoveNone {
		t.Errorf("steal into a bucket with stock: %+v %v, want none", mv, err)
	}
	if _, err := lua.Rebalance(ctx, c, l, 4, 1, nil); err == nil {
		t.Error("rebalance of bucket 4 of 4: no error")
	}
}

// TestEndBuckets: ending now closes every bucket.
func TestEndBuckets(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{5: 30})
	end, loaded, err := lua.EndBuckets(ctx, c, l, time.Now().Add(time.Hour).UnixMilli())
	if err != nil || !loaded || end > time.Now().UnixMilli() {
		t.Fatalf("end: %d %v %v", end, loaded, err)
	}
	for b := range 3 {
		if got, _ := claimIn(t, c, l, userOf(l, b, 0)); got[0].Outcome != rain.Ended {
			t.Errorf("bucket %d after the end: %+v", b, got[0])
		}
	}
	unknown, _ := testenv.Keys().Layout(nextID.Add(1), 3)
	if _, loaded, err := lua.EndBuckets(ctx, c, unknown, 1); loaded || err != nil {
		t.Errorf("end of a campaign not in redis: %v %v", loaded, err)
	}
}

// TestReaddBuckets: a claim Redis lost goes back into its user's bucket;
// when that bucket has no packet of its amount one is taken from the pool
// (or another bucket); oversold only when no part has one.
func TestReaddBuckets(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{7: 2, 9: 1})
	s := readBuckets(t, c, l)
	// Bucket b0 holds one 7 (or 9); the other amount is in the pool or b1.
	b := 0
	for s.Buckets[b].Left == 0 {
		b++
	}
	users := []string{userOf(l, b, 0), userOf(l, b, 1), userOf(l, b, 2)}
	var claims []lua.Record
	for i, u := range users {
		claims = append(claims, lua.Record{User: u, Amount: []int64{7, 9, 7}[i], ClaimedAtMs: 1000})
	}
	readded, oversold, err := lua.ReaddBuckets(ctx, c, l, claims)
	if err != nil || readded != 3 || oversold != 0 {
		t.Fatalf("readd of 3 claims for 3 packets: %d %d %v", readded, oversold, err)
	}
	after := readBuckets(t, c, l)
	if after.Left != 0 || after.Claims != 3 || after.Buckets[b].Claims != 3 {
		t.Errorf("after readd: %+v", after)
	}
	for _, u := range users {
		if got, _ := claimIn(t, c, l, u); got[0].Outcome != rain.AlreadyOpened || got[0].ClaimedAt != 1000 {
			t.Errorf("%s after readd: %+v", u, got[0])
		}
	}
	readded, oversold, err = lua.ReaddBuckets(ctx, c, l, append(claims, lua.Record{User: userOf(l, 2, 7), Amount: 9, ClaimedAtMs: 5}))
	if err != nil || readded != 1 || oversold != 1 {
		t.Errorf("readd with nothing left: %d readded, %d oversold, %v; want 1, 1", readded, oversold, err)
	}
}

// TestParseBucketClaims feeds the reply parser replies Redis makes from a
// script that returns them verbatim.
func TestParseBucketClaims(t *testing.T) {
	reply := verbatim(t, testenv.Redis(t))
	out := make([]rain.Result, 4)
	left, err := lua.ParseBucketClaims(reply("{100, 50, 7, 5, 20, 3, 5, 40, 4, 2, 6}"), out)
	if err != nil {
		t.Fatal(err)
	}
	want := []rain.Result{
		{Outcome: rain.OK, Amount: 20, ClaimedAt: 50, EndMs: 100},
		{Outcome: rain.AlreadyOpened, Amount: 5, ClaimedAt: 40, EndMs: 100},
		{Outcome: rain.SoldOut, EndMs: 100, Claims: 2},
		{Outcome: rain.Empty, EndMs: 100},
	}
	if !reflect.DeepEqual(out, want) || left != 7 {
		t.Errorf("parsed %+v left %d, want %+v left 7", out, left, want)
	}
	if left, err := lua.ParseBucketClaims(reply("{7}"), out); err != nil || left != -1 || out[3] != (rain.Result{Outcome: rain.Busy}) {
		t.Errorf("{7}: %+v %d %v, want BUSY for all", out, left, err)
	}
	for _, bad := range []struct {
		reply string
		users int
	}{
		{"{6}", 1},                   // EMPTY is per user
		{"{3}", 1},                   // not a whole-batch code
		{"{}", 1},                    // empty
		{"{100, 50, 5, 20}", 1},      // no left
		{"{100, 50, 1, 5}", 1},       // OK without its amount
		{"{100, 50, 1, 8}", 1},       // no such code
		{"{100, 50, 1, 6, 6}", 1},    // a user too many
		{"{100, 50, 1, 6}", 2},       // a user missing
		{"{100, 50, 'x', 6}", 1},     // left not an integer
		{"{100, 50, 1, 4}", 1},       // SOLD_OUT without its count
		{"{100, 50, 1, 0}", 1},       // a per-user NOT_FOUND
		{"{100, 50, 1, 7}", 1},       // a per-user BUSY
		{"{100, 50, 1, 5, {1}}", 1},  // a nested array
		{"{100, 50, 1, 3, 20}", 1},   // ALREADY_OPENED without its time
		{"{100, 50, 1, 262, 20}", 1}, // a code that is 6 in int8
	} {
		if _, err := lua.ParseBucketClaims(reply(bad.reply), make([]rain.Result, bad.users)); err == nil {
			t.Errorf("%s for %d users: parsed", bad.reply, bad.users)
		}
	}
}

// TestBucketScriptsRefuseBadArguments: the scripts check their arguments
// before writing.
func TestBucketScriptsRefuseBadArguments(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{1: 30})
	before := readBuckets(t, c, l)
	ls, err := lua.Lock(ctx, c, l, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ls.Unlock(ctx) }()
	for _, n := range []int64{0, -1} {
		if _, _, err := lua.Take(ctx, ls, -1, 1, "x", n, 1); err == nil {
			t.Errorf("take of %d: no error", n)
		}
	}
	if _, _, err := lua.Take(ctx, ls, -1, 1, "", 1, 1); err == nil {
		t.Error("take with an empty id: no error")
	}
	if _, err := lua.Credit(ctx, ls, 1, "", "1:1"); err == nil {
		t.Error("credit with an empty id: no error")
	}
	if _, err := ls.Transfer(ctx, 1, 1, 1, 1); err == nil {
		t.Error("transfer from a bucket to itself: no error")
	}
	if s := readBuckets(t, c, l); !reflect.DeepEqual(s, before) {
		t.Errorf("state %+v after refused calls, want %+v", s, before)
	}
	if _, err := lua.Lock(ctx, c, l, 0); !errors.Is(err, lua.ErrLeaseHeld) {
		t.Errorf("lock while held: %v", err)
	}
	k1, _ := testenv.Keys().Layout(nextID.Add(1), 1)
	if _, err := lua.Rebalance(ctx, c, k1, 0, 1, nil); err == nil {
		t.Error("rebalance of a campaign of one bucket: no error")
	}
	if _, err := lua.Lock(ctx, c, func() *lua.Layout { l, _ := testenv.Keys().Layout(nextID.Add(1), 3); return l }(), time.Second); !errors.Is(err, lua.ErrNotLoaded) {
		t.Errorf("lock of a campaign not loaded: %v", err)
	}
}

// TestBucketsSpreadOverMasters: on a Redis Cluster whose masters own equal
// ranges, K buckets land on min(K, masters) different masters, and
// CLUSTER KEYSLOT agrees with the slot each tag was chosen for.
func TestBucketsSpreadOverMasters(t *testing.T) {
	c := testenv.Redis(t)
	if c.Mode() != rueidis.ClientModeCluster {
		t.Skip("needs a Redis Cluster")
	}
	ctx := context.Background()
	slots, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	owner := make([]string, lua.Slots)
	for _, r := range slots {
		v, _ := r.ToArray()
		lo, _ := v[0].AsInt64()
		hi, _ := v[1].AsInt64()
		node, _ := v[2].ToArray()
		port, _ := node[1].AsInt64()
		for s := lo; s <= hi; s++ {
			owner[s] = fmt.Sprint(port)
		}
	}
	masters := map[string]bool{}
	for _, o := range owner {
		masters[o] = true
	}
	for _, k := range []int{3, 12} {
		l, _ := testenv.Keys().Layout(nextID.Add(1), k)
		on := map[string]bool{}
		for _, b := range l.Buckets {
			slot, err := c.Do(ctx, c.B().ClusterKeyslot().Key(b.Meta()).Build()).AsInt64()
			if err != nil || int(slot) != lua.KeySlot(b.Meta()) {
				t.Fatalf("CLUSTER KEYSLOT %s: %d %v, want %d", b.Meta(), slot, err, lua.KeySlot(b.Meta()))
			}
			on[owner[slot]] = true
		}
		if want := min(k, len(masters)); len(on) != want {
			t.Errorf("%d buckets on %d masters of %d, want %d", k, len(on), len(masters), want)
		}
	}
}

// TestTransferWaitsForReplicas: a lease that asks for more replicas of the
// debit than acknowledge it within the timeout leaves the transfer debited
// and not credited (a failover could still undo the debit); a sweep whose
// wait is met (as many replicas as the master has) finishes it.
func TestTransferWaitsForReplicas(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{1: 60})
	ls, err := lua.Lock(ctx, c, l, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ls.Unlock(ctx) }()
	before := readBuckets(t, c, l)
	ls.WaitReplicas, ls.WaitTimeout = 5, 20*time.Millisecond
	if n, err := ls.Transfer(ctx, -1, 0, 4, 1); err == nil {
		t.Fatalf("transfer waiting for 5 replicas: moved %d, no error", n)
	}
	mid := readBuckets(t, c, l)
	if mid.Pending != 1 || mid.Buckets[0].Left != before.Buckets[0].Left || mid.PoolLeft != before.PoolLeft-4 {
		t.Fatalf("after a wait not met: %+v, want debited and pending", mid)
	}
	// As many replicas as the pool's master has (REDIS_MODE=cluster: one).
	info, err := c.Do(ctx, c.B().Info().Section("replication").Build().SetSlot(l.Pool())).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "connected_slaves:"); ok {
			ls.WaitReplicas, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if n, err := ls.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if s := readBuckets(t, c, l); s.Pending != 0 || s.Buckets[0].Left != before.Buckets[0].Left+4 || s.Left != before.Left {
		t.Errorf("after the sweep: %+v", s)
	}
}

// TestSweepBuckets: the reconciler's sweep finishes a transfer a dead
// process left half done, and waits its turn while a lease is held.
func TestSweepBuckets(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{1: 60})
	before := readBuckets(t, c, l)
	dead, err := lua.Lock(ctx, c, l, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if n, _, err := lua.Take(ctx, dead, -1, 1, "dead", 5, 1); n != 5 || err != nil {
		t.Fatal(n, err)
	}
	if _, err := lua.SweepBuckets(ctx, c, l, nil); !errors.Is(err, lua.ErrLeaseHeld) {
		t.Errorf("sweep while the lease is held: %v, want ErrLeaseHeld", err)
	}
	c.Do(ctx, c.B().Del().Key(l.Rebal()).Build()) // the dead process's lease expires
	if n, err := lua.SweepBuckets(ctx, c, l, nil); n != 1 || err != nil {
		t.Fatalf("sweep: %d %v, want 1 finished", n, err)
	}
	if s := readBuckets(t, c, l); s.Pending != 0 || s.Buckets[1].Left != before.Buckets[1].Left+5 || s.Left != before.Left {
		t.Errorf("after the sweep: %+v", s)
	}
	k1, _ := testenv.Keys().Layout(nextID.Add(1), 1)
	if n, err := lua.SweepBuckets(ctx, c, k1, nil); n != 0 || err != nil {
		t.Errorf("sweep of a campaign of one bucket: %d %v", n, err)
	}
}
