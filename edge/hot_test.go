package edge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpacket/rain/lua"
)

func TestHotCampaignMemory(t *testing.T) {
	h := hotCampaigns{maxClaims: 100, soldOutMs: 1000}
	c := h.get(1)
	if h.get(1) != c || h.get(2) == c || c.keys.ID != 1 {
		t.Fatal("get must return one state per campaign")
	}
	h.remember(c, "alice", lua.Result{Outcome: lua.OK, Amount: 20, EndMs: 1000})
	if a, ok := c.claimedAmount([]byte("alice"), 999); !ok || a != 20 {
		t.Errorf("claimedAmount: %d %v", a, ok)
	}
	if _, ok := c.claimedAmount([]byte("alice"), 1000); ok {
		t.Error("remembered past the campaign's end")
	}
	if _, ok := h.get(2).claimedAmount([]byte("alice"), 0); ok {
		t.Error("remembered for another campaign")
	}
	for i := 0; i < 1000; i++ {
		h.remember(h.get(int64(i%7)), fmt.Sprint("u", i), lua.Result{Amount: 1, EndMs: 1000})
	}
	n := 0
	for _, c := range *h.m.Load() {
		n += len(c.claimed)
	}
	if n > 100 || h.claims.Load() > 100 {
		t.Errorf("%d claims remembered (counter %d), bound 100", n, h.claims.Load())
	}
	for i := 0; i < 2*maxHot; i++ {
		h.get(int64(i))
	}
	if len(*h.m.Load()) > maxHot {
		t.Errorf("%d campaigns tracked, bound %d", len(*h.m.Load()), maxHot)
	}
	off := hotCampaigns{}
	c = off.get(1)
	off.remember(c, "a", lua.Result{Amount: 1, EndMs: 1e15})
	if _, ok := c.claimedAmount([]byte("a"), 0); ok {
		t.Error("remembered with maxClaims 0")
	}
}

func TestSoldOutFlag(t *testing.T) {
	h := hotCampaigns{soldOutMs: 1000}
	c := h.get(7)
	h.markSoldOut(c, 10_000, 10_500)
	if !c.soldOut(10_499) || c.soldOut(10_500) || h.get(8).soldOut(10_000) {
		t.Error("flag must hold until min(now+ttl, end) for its campaign only")
	}
	h.markSoldOut(c, 20_000, 90_000)
	if !c.soldOut(20_999) || c.soldOut(21_000) {
		t.Error("flag must expire after the ttl")
	}
	off := hotCampaigns{}
	c = off.get(7)
	off.markSoldOut(c, 0, 1e9)
	if c.soldOut(1) {
		t.Error("flag held with the ttl off")
	}
}

// TestSoldOutFromMemory: after a sell-out, opens are answered 410 from the
// flag, the claimant still gets 409 with the amount, and stock added back in
// Redis is served once the flag expires.
func TestSoldOutFromMemory(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{SoldOutTTL: 200 * time.Millisecond}})
	id := h.live(`{"20":1}`)
	h.open(id, "alice")
	if status, _ := h.open(id, "bob"); status != 410 {
		t.Fatalf("bob: %d", status)
	}
	before := claimsSoldOutFlag.Get()
	if status, _ := h.open(id, "carol"); status != 410 {
		t.Errorf("carol: %d", status)
	}
	if claimsSoldOutFlag.Get() != before+1 {
		t.Error("the second sold-out open was not answered from the flag")
	}
	if status, m := h.open(id, "alice"); status != 409 || m["amount"] != float64(20) {
		t.Errorf("alice after sell-out: %d %v, want 409 with 20", status, m)
	}
	// The merchant's operator adds a packet straight in Redis.
	k := lua.KeysOf(id)
	ctx := context.Background()
	h.redis.Do(ctx, h.redis.B().Hset().Key(k.Stock()).FieldValue().FieldValue("5", "1").Build())
	deadline := time.Now().Add(5 * time.Second)
	status, m := h.open(id, "dave")
	for status == 410 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		status, m = h.open(id, "dave")
	}
	if status != 200 || m["amount"] != float64(5) {
		t.Errorf("after stock came back: %d %v, want 200 with 5", status, m)
	}
}

// TestRepeatFromMemoryStopsAtEnd: a remembered claimant gets 409 without
// Redis while the campaign runs, and ENDED (the script's order) after.
func TestRepeatFromMemoryStopsAtEnd(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	end := time.Now().Add(1500 * time.Millisecond)
	id := h.create(time.Now().Add(-time.Hour), end, `{"3":10}`)
	if status, _ := h.open(id, "erin"); status != 200 {
		t.Fatal(status)
	}
	before := claimsMemo.Get()
	if status, m := h.open(id, "erin"); status != 409 || m["amount"] != float64(3) || claimsMemo.Get() != before+1 {
		t.Errorf("repeat: %d %v, from memory %v", status, m, claimsMemo.Get() > before)
	}
	time.Sleep(time.Until(end) + 100*time.Millisecond)
	if status, m := h.open(id, "erin"); status != 400 || m["status"] != "ENDED" {
		t.Errorf("repeat after the end: %d %v, want 400 ENDED", status, m)
	}
}
