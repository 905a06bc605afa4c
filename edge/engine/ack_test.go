package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// TestOKWaitsForTheReplica (REDIS_ACK=replica): while the master's replica
// is stalled no open is answered OK and no event goes to the ring: each is
// 503 (the claim stands on the master), and only what a replica holds is
// answered from memory; once the replica resumes, a user told 503 is told
// 409 with the claim's amount, and new users get OK.
func TestOKWaitsForTheReplica(t *testing.T) {
	p := testenv.NewReplicaPair(t)
	ks := testenv.Keys().WithAck(lua.Ack{Replicas: 1, Timeout: 150 * time.Millisecond})
	h := newHarness(t, harnessOpt{redis: p.Master, keys: &ks})
	id := h.live(`{"5":100}`)
	if status, m := h.open(id, "before"); status != 200 {
		t.Fatalf("an open with the replica up: %d %v", status, m)
	}
	events := h.ring.Len()

	p.Stall(t)
	for i := range 5 {
		if status, m := h.open(id, fmt.Sprint("stalled", i)); status != 503 {
			p.Resume(t)
			t.Fatalf("open %d with the replica stalled: %d %v, want 503", i, status, m)
		}
	}
	// A repeat of an acknowledged claim is answered from memory (409):
	// that claim is on the replica.
	if status, m := h.open(id, "before"); status != 409 || m["amount"] != float64(5) {
		p.Resume(t)
		t.Fatalf("a repeat of an acknowledged claim with the replica stalled: %d %v, want 409 with 5", status, m)
	}
	if n := h.ring.Len(); n != events {
		p.Resume(t)
		t.Fatalf("%d events in the ring after the stalled opens, want %d (none of them)", n, events)
	}
	p.Resume(t)

	for i := range 5 {
		status, m := h.open(id, fmt.Sprint("stalled", i))
		if status != 409 || m["amount"] != float64(5) {
			t.Errorf("stalled%d after the replica resumed: %d %v, want 409 with 5", i, status, m)
		}
	}
	if status, m := h.open(id, "after"); status != 200 {
		t.Errorf("a new user after the replica resumed: %d %v", status, m)
	}
	if status, m := h.open(id, "before"); status != 409 {
		t.Errorf("the first user after the replica resumed: %d %v", status, m)
	}
}

// TestBucketedOpensWaitForTheReplica: a bucketed campaign with its
// replica stalled moves no stock (no transfer is credited while its debit
// is on no replica) and answers no OK; once resumed, every packet is
// served, none twice.
func TestBucketedOpensWaitForTheReplica(t *testing.T) {
	p := testenv.NewReplicaPair(t)
	ks := testenv.Keys().WithAck(lua.Ack{Replicas: 1, Timeout: 150 * time.Millisecond})
	h := newHarness(t, harnessOpt{redis: p.Master, keys: &ks})
	id := h.createBuckets(2, `{"1":8}`)
	l, err := ks.Layout(id, 2)
	if err != nil {
		t.Fatal(err)
	}
	p.Stall(t)
	for i := range 20 {
		if status, m := h.open(id, fmt.Sprint("s", i)); status != 503 {
			p.Resume(t)
			t.Fatalf("open %d with the replica stalled: %d %v, want 503", i, status, m)
		}
	}
	st, err := lua.ReadBuckets(context.Background(), p.Master, l)
	p.Resume(t)
	if err != nil {
		t.Fatal(err)
	}
	for b, bs := range st.Buckets {
		if bs.Left > 2 { // half of 8 dealt at load, 2 a bucket; nothing credited since
			t.Errorf("bucket %d holds %d packets while the replica was stalled: a transfer was credited", b, bs.Left)
		}
	}
	// The stalled opens' claims stand (their users are told 409 from now
	// on); the other packets go to new users, then SOLD_OUT with every
	// packet claimed once.
	sold := false
	for i := 0; !sold && i < 500; i++ {
		switch status, m := h.open(id, fmt.Sprint("r", i)); status {
		case 200, 503: // an OK, or a refill in flight
		case 410:
			sold = true
		default:
			t.Fatalf("open of r%d after the replica resumed: %d %v", i, status, m)
		}
	}
	st, err = lua.ReadBuckets(context.Background(), p.Master, l)
	if !sold || err != nil || st.Claims != 8 || st.Left != 0 || st.Pending != 0 {
		t.Fatalf("after the sell-out: sold out %v, %d claims, %d left, %d pending (%v); want the 8 packets claimed once",
			sold, st.Claims, st.Left, st.Pending, err)
	}
}
