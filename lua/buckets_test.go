package lua_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// Bucketed campaigns as a whole against real Redis (buckets.go), and the
// helpers the other bucket tests share.

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

// TestEndBucketsNoClaimAfterTheEnd: an end that reached the home but not
// the buckets (a request that failed half way: the shards of the buckets
// hung) and is then retried returns an end no earlier than any claim a
// bucket took meanwhile. Before, the retry returned the home's end and
// gave it to the buckets, and a claim taken after it stood: a claim after
// the campaign's recorded end (make torture, seed 15 on the cluster).
func TestEndBucketsNoClaimAfterTheEnd(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{5: 30})
	home, _, err := lua.EndNow(ctx, c, l.Home, time.Now().Add(time.Hour).UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	before := time.Now().UnixMilli()
	if got, _ := claimIn(t, c, l, userOf(l, 1, 0)); got[0].Outcome != rain.OK {
		t.Fatalf("a claim in a bucket the half-done end missed: %+v", got[0])
	}
	end, loaded, err := lua.EndBuckets(ctx, c, l, time.Now().Add(time.Hour).UnixMilli())
	if err != nil || !loaded {
		t.Fatalf("the retried end: %v %v", loaded, err)
	}
	if end < before {
		t.Errorf("the retried end is %d, %dms before a claim taken at %d or later (the home ended at %d)", end, before-end, before, home)
	}
	for b := range 3 {
		if got, _ := claimIn(t, c, l, userOf(l, b, 1)); got[0].Outcome != rain.Ended {
			t.Errorf("bucket %d after the end: %+v", b, got[0])
		}
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
