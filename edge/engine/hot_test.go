package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redpacket/rain/internal/dev/testenv"
)

func TestHotCampaignMemory(t *testing.T) {
	h := hotCampaigns{maxClaims: 100, soldOutMs: 1000}
	c := h.get(1)
	if h.get(1) != c || h.get(2) == c || c.keys.ID != 1 {
		t.Fatal("get must return one state per campaign")
	}
	h.remember(c, "alice", rain.Result{Outcome: rain.OK, Amount: 20, EndMs: 1000})
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
		h.remember(h.get(int64(i%7)), fmt.Sprint("u", i), rain.Result{Amount: 1, EndMs: 1000})
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
	off.remember(c, "a", rain.Result{Amount: 1, EndMs: 1e15})
	if _, ok := c.claimedAmount([]byte("a"), 0); ok {
		t.Error("remembered with maxClaims 0")
	}
}

// waitSoldOutFlag waits until the instance answers the campaign's opens
// from memory (the filter of its claimants is built in the background).
func waitSoldOutFlag(t *testing.T, h *harness, id int64) {
	t.Helper()
	// A ceiling, not a pace: the filter of 200k claimants takes a few
	// seconds to build under -race on a busy 2-core machine.
	deadline := time.Now().Add(time.Minute)
	for !h.eng.hot.get(id).flagged(time.Now().UnixMilli()) {
		if time.Now().After(deadline) {
			t.Fatal("the sold-out flag was never set")
		}
		h.open(id, fmt.Sprint("probe-", time.Now().UnixNano()))
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSoldOutFromMemory: after a sell-out, opens get exactly the script's
// answers: 410 from memory for new users, 409 with the amount for every
// claimant, also those who claimed through another replica (the filter
// holds them: Redis answers); stock added back in Redis is served once the
// flag expires.
func TestSoldOutFromMemory(t *testing.T) {
	h := newHarness(t, harnessOpt{set: func(c *Config) { c.SoldOutTTL = 300 * time.Millisecond }})
	other := newHarness(t, harnessOpt{}) // a second api replica on the same Redis
	id := h.live(`{"20":1,"7":1}`)
	if status, _ := other.open(id, "bob"); status != 200 {
		t.Fatalf("bob through the other replica: %d", status)
	}
	_, alice := h.open(id, "alice")
	if status, _ := h.open(id, "carol"); status != 410 {
		t.Fatalf("carol: %d", status)
	}
	waitSoldOutFlag(t, h, id)

	before := claimsSoldOutFlag.Get()
	if status, _ := h.open(id, "dave"); status != 410 {
		t.Errorf("dave: %d", status)
	}
	if status, m := h.open(id, "bob"); status != 409 || m["amount"] == nil {
		t.Errorf("bob, who claimed through the other replica: %d %v, want 409 with his amount", status, m)
	}
	if status, m := h.open(id, "alice"); status != 409 || m["amount"] != alice["amount"] {
		t.Errorf("alice after sell-out: %d %v, want 409 with %v", status, m, alice["amount"])
	}
	if claimsSoldOutFlag.Get() < before+1 || !h.eng.hot.get(id).flagged(time.Now().UnixMilli()) {
		t.Error("opens during the flag were not answered from memory")
	}

	// The merchant's operator adds a packet straight in Redis.
	k := testenv.Keys().Of(id)
	h.redis.Do(context.Background(), h.redis.B().Hset().Key(k.Stock()).FieldValue().FieldValue("5", "1").Build())
	deadline := time.Now().Add(5 * time.Second)
	status, m := h.open(id, "erin")
	for status == 410 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		status, m = h.open(id, "erin")
	}
	if status != 200 || m["amount"] != float64(5) {
		t.Errorf("after stock came back: %d %v, want 200 with 5", status, m)
	}
	// Sold out again with one claim more: the filter is built again, erin in it.
	waitSoldOutFlag(t, h, id)
	if status, m := h.open(id, "erin"); status != 409 || m["amount"] != float64(5) {
		t.Errorf("erin after the second sell-out: %d %v, want 409 with 5", status, m)
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

// TestUnknownIDsMakeNoState: opens of ids Redis does not know leave no
// per-campaign state behind (a flood of made-up ids costs no memory).
func TestUnknownIDsMakeNoState(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	for i := int64(0); i < 20; i++ {
		if status, _ := h.open(1<<61+i, "u"); status != 404 {
			t.Fatalf("open of unknown id: %d", status)
		}
	}
	if m := h.eng.hot.m.Load(); m != nil && len(*m) > 0 {
		t.Errorf("%d campaigns tracked after opens of unknown ids, want 0", len(*m))
	}
	id := h.live(`{"5":10}`)
	h.open(id, "alice")
	if h.eng.hot.peek(id) == nil {
		t.Error("a known campaign has no state after an open")
	}
}
