package lua_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

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
