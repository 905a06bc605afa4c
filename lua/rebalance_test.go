package lua_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

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
