package lua_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// acked is the tests' keyspace whose writes wait for one replica: long
// enough for a replica that is up on a busy 2-core machine, short enough
// that the waits on a stalled one keep the tests quick.
func acked() lua.Keyspace {
	return testenv.Keys().WithAck(lua.Ack{Replicas: 1, Timeout: 300 * time.Millisecond})
}

// TestAckedClaimWaitsForTheReplica: with a replica to wait for, a claim
// made while the replica is stalled comes back ErrNotAcked (it stands on
// the master, not promised), and so does a batch of repeats, which writes
// nothing of its own; a claim in master mode is answered at once, as
// before this mode existed. Once the replica resumes, the claim is there
// and a repeat is acknowledged.
func TestAckedClaimWaitsForTheReplica(t *testing.T) {
	p := testenv.NewReplicaPair(t)
	ctx := context.Background()
	k := acked().Of(nextID.Add(1))
	if loaded, err := lua.Load(ctx, p.Master, k, time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli(),
		map[int64]int64{5: 10}); err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
	if r, err := lua.Claim(ctx, p.Master, k, "alice", rand.Uint64()); err != nil || r.Outcome != rain.OK {
		t.Fatalf("alice with the replica up: %+v %v", r, err)
	}

	p.Stall(t)
	r, err := lua.Claim(ctx, p.Master, k, "bob", rand.Uint64())
	if !errors.Is(err, lua.ErrNotAcked) || r.Outcome != rain.OK {
		t.Fatalf("bob with the replica stalled: %+v %v, want OK on the master and ErrNotAcked", r, err)
	}
	if r, err := lua.Claim(ctx, p.Master, k, "bob", rand.Uint64()); !errors.Is(err, lua.ErrNotAcked) || r.Outcome != rain.AlreadyOpened {
		t.Fatalf("bob's repeat with the replica stalled: %+v %v, want ALREADY_OPENED and ErrNotAcked", r, err)
	}
	master := testenv.Keys().Of(k.ID) // the same keys, master mode
	if r, err := lua.Claim(ctx, p.Master, master, "carol", rand.Uint64()); err != nil || r.Outcome != rain.OK {
		t.Fatalf("carol in master mode: %+v %v, want OK at once", r, err)
	}
	if _, _, err := lua.AddStock(ctx, p.Master, k, 5, 1); !errors.Is(err, lua.ErrNotAcked) {
		t.Errorf("added stock with the replica stalled: %v, want ErrNotAcked", err)
	}

	p.Resume(t)
	if r, err := lua.Claim(ctx, p.Master, k, "bob", rand.Uint64()); err != nil || r.Outcome != rain.AlreadyOpened {
		t.Fatalf("bob after the replica resumed: %+v %v, want ALREADY_OPENED acknowledged", r, err)
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		if v, err := p.Replica.Do(ctx, p.Replica.B().Hget().Key(k.Claims()).Field(u).Build()).ToString(); err != nil || v == "" {
			t.Errorf("the replica lacks %s's claim after the acknowledged repeat: %q %v", u, v, err)
		}
	}
	p.Stall(t)
	defer p.Resume(t)
	if _, _, err := lua.EndNow(ctx, p.Master, k, time.Now().UnixMilli()); !errors.Is(err, lua.ErrNotAcked) {
		t.Errorf("an end with the replica stalled: %v, want ErrNotAcked", err)
	}
}

// TestAckedTransferNoCreditWhileStalled: with the source's replica
// stalled, a transfer's debit is not acknowledged, so nothing is credited:
// the packets stay in transit (pending), and neither the transfer nor a
// sweep credits them until the replica holds the debit; then a sweep
// does, once.
func TestAckedTransferNoCreditWhileStalled(t *testing.T) {
	p := testenv.NewReplicaPair(t)
	ctx := context.Background()
	l, err := acked().Layout(nextID.Add(1), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unlinkLayout(p.Master, l) })
	if loaded, err := lua.LoadBuckets(ctx, p.Master, l, time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli(),
		map[int64]int64{1: 60}, nil); err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
	ls, err := lua.Lock(ctx, p.Master, l, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	before := readBuckets(t, p.Master, l)

	p.Stall(t)
	if n, err := ls.Transfer(ctx, -1, 0, 4, 1); !errors.Is(err, lua.ErrNotAcked) {
		t.Fatalf("a transfer with the replica stalled: moved %d, %v; want ErrNotAcked", n, err)
	}
	if n, err := ls.Sweep(ctx); n != 0 || !errors.Is(err, lua.ErrNotAcked) {
		t.Fatalf("a sweep with the replica stalled: %d %v, want nothing credited and ErrNotAcked", n, err)
	}
	mid := readBuckets(t, p.Master, l)
	if mid.Pending != 1 || mid.Buckets[0].Left != before.Buckets[0].Left || mid.PoolLeft != before.PoolLeft-4 {
		t.Fatalf("while stalled: %+v, want the pool debited, the bucket not credited, one transfer pending", mid)
	}

	p.Resume(t)
	if n, err := ls.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("the sweep after the replica resumed: %d %v", n, err)
	}
	if s := readBuckets(t, p.Master, l); s.Pending != 0 || s.Buckets[0].Left != before.Buckets[0].Left+4 || s.Left != before.Left {
		t.Errorf("after the sweep: %+v", s)
	}
}

// TestAckedSettleCountsOnlyReplicatedStock: a restock that ran on the
// master while its replica was stalled (answered ErrNotAcked, so the
// action stays pending) must not be taken as settled by a settle that
// counts the master's stock: what it counted is not on a replica, and a
// failover now would lose the packets with the action marked applied
// (make chaos, failover-lost-writes: a restock's replay marked it so). The
// settle fails with ErrNotAcked while the replica is stalled, and once it
// resumes counts the packets as there, adding nothing.
func TestAckedSettleCountsOnlyReplicatedStock(t *testing.T) {
	p := testenv.NewReplicaPair(t)
	ctx := context.Background()
	l, err := acked().Layout(nextID.Add(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unlinkLayout(p.Master, l) })
	if loaded, err := lua.Load(ctx, p.Master, l.Home, time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli(),
		map[int64]int64{5: 10}); err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
	totals, want := map[int64]int64{5: 15}, map[int64]int64{5: 5}

	p.Stall(t)
	if _, _, err := lua.AddStock(ctx, p.Master, l.Home, 5, 5); !errors.Is(err, lua.ErrNotAcked) {
		t.Fatalf("restock with the replica stalled: %v, want ErrNotAcked", err)
	}
	if added, loaded, err := lua.SettleStock(ctx, p.Master, l, totals, want); !errors.Is(err, lua.ErrNotAcked) {
		t.Fatalf("settle with the replica stalled: added %v, loaded %v, %v; want ErrNotAcked (the master's count is not on a replica)", added, loaded, err)
	}

	p.Resume(t)
	if added, loaded, err := lua.SettleStock(ctx, p.Master, l, totals, want); err != nil || !loaded || len(added) != 0 {
		t.Fatalf("settle after the replica resumed: added %v, loaded %v, %v; want nothing added", added, loaded, err)
	}
	if n, err := p.Replica.Do(ctx, p.Replica.B().Hget().Key(l.Home.Stock()).Field("5").Build()).AsInt64(); err != nil || n != 15 {
		t.Errorf("the replica's stock of 5: %d %v, want 15", n, err)
	}
}
