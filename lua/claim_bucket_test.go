package lua_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

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

// TestClaimOnABucketedHome: claim.lua on the home of a bucketed campaign
// (the campaign's own keys, whose stock is in the buckets) claims nothing
// and answers BUCKETED with the bucket count, for every user of the call;
// outside the window the window's answer comes first.
func TestClaimOnABucketedHome(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{20: 4})
	out := make([]rain.Result, 2)
	if err := lua.ClaimBatch(ctx, c, l.Home, []string{"alice", "bob"}, []uint64{1, 2}, out); err != nil {
		t.Fatal(err)
	}
	for i, r := range out {
		if r != (rain.Result{Outcome: rain.Bucketed, Buckets: 3}) {
			t.Errorf("user %d on the home: %+v, want BUCKETED with 3 buckets", i, r)
		}
	}
	if n, err := c.Do(ctx, c.B().Hlen().Key(l.Home.Claims()).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("the home holds %d claims (%v), want none", n, err)
	}
	if s := readBuckets(t, c, l); s.Claims != 0 || s.Left != 4 {
		t.Errorf("after opens of the home: %d claims, %d left; want 0 and 4", s.Claims, s.Left)
	}
	past := bucketCampaign(t, c, 3, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour), map[int64]int64{5: 9})
	if r, err := lua.Claim(ctx, c, past.Home, "carol", 3); err != nil || r.Outcome != rain.Ended {
		t.Errorf("the home of an ended bucketed campaign: %+v %v, want ENDED", r, err)
	}
}
