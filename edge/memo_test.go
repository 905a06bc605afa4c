package edge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpacket/rain/lua"
)

func TestClaimMemo(t *testing.T) {
	m := newClaimMemo(128) // 1 entry per generation per shard
	m.put(1, "alice", 20, 1000)
	if a, ok := m.get(1, "alice", 999); !ok || a != 20 {
		t.Errorf("get: %d %v", a, ok)
	}
	if _, ok := m.get(1, "alice", 1000); ok {
		t.Error("remembered past the campaign's end")
	}
	if _, ok := m.get(2, "alice", 0); ok {
		t.Error("remembered for another campaign")
	}
	for i := 0; i < 10_000; i++ {
		m.put(1, fmt.Sprint("u", i), 1, 1000)
	}
	n := 0
	for i := range m.shards {
		n += len(m.shards[i].cur) + len(m.shards[i].prev)
	}
	if n > 128 {
		t.Errorf("memo holds %d entries, bound 128", n)
	}
	if off := newClaimMemo(0); off.perShard != 0 {
		t.Error("size 0 must disable")
	} else if off.put(1, "a", 1, 9); true {
		if _, ok := off.get(1, "a", 0); ok {
			t.Error("disabled memo remembered")
		}
	}
}

func TestSoldOutFlag(t *testing.T) {
	s := soldOut{ttlMs: 1000}
	s.set(7, 10_000, 10_500)
	if !s.has(7, 10_499) || s.has(7, 10_500) || s.has(8, 10_000) {
		t.Error("flag must hold until min(now+ttl, end) for its campaign only")
	}
	s.set(7, 20_000, 90_000)
	if !s.has(7, 20_999) || s.has(7, 21_000) {
		t.Error("flag must expire after the ttl")
	}
	off := soldOut{}
	off.set(7, 0, 1e9)
	if off.has(7, 1) {
		t.Error("disabled flag held")
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
	h.redis.Do(ctx, h.redis.B().Hincrby().Key(k.Meta()).Field("left").Increment(1).Build())
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
