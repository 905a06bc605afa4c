package edge

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/lua"
)

// The open path keeps a little state per campaign in memory (hotCampaign):
// its Redis keys, built once, and what lets two kinds of request be answered
// without Redis, giving exactly the answer claim.lua would:
//
//   - a repeat by a user this instance has seen claim (or seen refused as
//     ALREADY_OPENED): claims are never taken back, so the amount stays
//     true; the answer is 409 with it until the campaign ends (then the
//     script's ENDED comes first);
//   - any open of a campaign seen sold out. Once the script says SOLD_OUT no
//     claim can be added, so the instance copies the campaign's claims hash
//     (in the background; opens go to Redis meanwhile) and, from then on,
//     answers every open from memory: 409 with the amount for a user in the
//     copy, 410 for anyone else. The flag holds for Config.SoldOutTTL, then
//     one open goes to Redis again; its SOLD_OUT reply carries the number of
//     claims, and a copy that no longer matches (stock added back, or claims
//     put back after a Redis crash) is taken again. A campaign with more
//     claims than the memory bound allows is never copied: its opens all go
//     to Redis.
//
// Claimants are kept per campaign, so the check on a sold-out flood looks
// in a map the size of the campaign's stock (cache-resident), not in one
// map of every claim the instance has seen (pprof: a miss in a 250k-entry
// map cost 12% of the sold-out path).

// hotCampaign is one campaign's in-process state.
type hotCampaign struct {
	keys         *lua.Keys
	endMs        atomic.Int64 // the campaign's end, unix ms, once a reply told it
	soldOutUntil atomic.Int64 // unix ms; set only while claimed is a whole copy
	copying      atomic.Bool  // a copy of the claims hash is being taken
	queue        claimQueue   // opens waiting for the next claim call (batch.go)

	mu      sync.RWMutex
	claimed map[string]int64 // user → amount
}

// hotCampaigns maps campaign ids to their state. Reads are lock-free loads
// of an immutable map (campaigns are few and long-lived); a new campaign
// copies it. Memory is bounded: past maxHot campaigns or maxClaims
// remembered claims in all, everything is forgotten and refilled.
type hotCampaigns struct {
	maxClaims int64 // 0: claimants are not remembered
	soldOutMs int64 // 0: sold out is not remembered
	redis     rueidis.Client
	keys      lua.Keyspace
	log       *slog.Logger
	claims    atomic.Int64
	mu        sync.Mutex
	m         atomic.Pointer[map[int64]*hotCampaign]
}

// maxHot bounds the campaigns tracked (a flood of unknown ids cannot grow
// the map without bound).
const maxHot = 4096

// peek returns the state of campaign id, or nil when there is none: the
// open path creates state only for campaigns Redis knows, so a flood of
// opens of made-up ids cannot make it copy the map on every request.
func (h *hotCampaigns) peek(id int64) *hotCampaign {
	if m := h.m.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

// get returns the state of campaign id, creating it.
func (h *hotCampaigns) get(id int64) *hotCampaign {
	if c := h.peek(id); c != nil {
		return c
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.m.Load()
	if old != nil {
		if c, ok := (*old)[id]; ok {
			return c
		}
	}
	next := make(map[int64]*hotCampaign, 8)
	if old != nil && len(*old) < maxHot {
		for id, c := range *old {
			next[id] = c
		}
	}
	c := &hotCampaign{keys: h.keys.Of(id), claimed: make(map[string]int64)}
	next[id] = c
	h.m.Store(&next)
	return c
}

// forget drops every remembered claim and flag (memory bound reached).
func (h *hotCampaigns) forget() {
	h.mu.Lock()
	h.m.Store(nil)
	h.claims.Store(0)
	h.mu.Unlock()
}

// claimedAmount returns the amount user claimed, if remembered and the
// campaign has not ended. user may be a slice of a request buffer: the map
// lookup does not keep it.
func (c *hotCampaign) claimedAmount(user []byte, nowMs int64) (int64, bool) {
	c.mu.RLock()
	amount, ok := c.claimed[string(user)]
	c.mu.RUnlock()
	return amount, ok && nowMs < c.endMs.Load()
}

// remember records a user's claim.
func (h *hotCampaigns) remember(c *hotCampaign, user string, r lua.Result) {
	c.endMs.Store(r.EndMs)
	if h.maxClaims == 0 {
		return
	}
	c.mu.Lock()
	_, known := c.claimed[user]
	c.claimed[user] = r.Amount
	c.mu.Unlock()
	if !known && h.claims.Add(1) > h.maxClaims {
		h.forget()
	}
}

// soldOut reports whether the campaign is flagged sold out at nowMs, with
// a whole copy of its claims in claimed.
func (c *hotCampaign) soldOut(nowMs int64) bool {
	return nowMs < c.soldOutUntil.Load()
}

// markSoldOut handles a SOLD_OUT from the script: if the copy of the claims
// is whole (as many as Redis counts), the flag is set for the TTL, never
// past the campaign's end; otherwise a copy is taken in the background and
// the flag set when it is done.
func (h *hotCampaigns) markSoldOut(c *hotCampaign, r lua.Result) {
	c.endMs.Store(r.EndMs)
	if h.soldOutMs == 0 || r.Claims > h.maxClaims/2 {
		return
	}
	c.mu.RLock()
	whole := int64(len(c.claimed)) == r.Claims
	c.mu.RUnlock()
	if whole {
		c.soldOutUntil.Store(min(time.Now().UnixMilli()+h.soldOutMs, r.EndMs))
		return
	}
	if c.copying.CompareAndSwap(false, true) {
		go h.copyClaims(c, r)
	}
}

// copyClaims replaces the campaign's remembered claims with a copy of its
// claims hash and sets the sold-out flag.
func (h *hotCampaigns) copyClaims(c *hotCampaign, r lua.Result) {
	defer c.copying.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	claimed := make(map[string]int64, r.Claims)
	err := lua.ScanClaims(ctx, h.redis, c.keys, func(user string, amount, _ int64) error {
		claimed[user] = amount
		return nil
	})
	if err != nil {
		h.log.Warn("copy of a sold-out campaign's claims failed; its opens go to Redis", "campaign_id", c.keys.ID, "err", err)
		return
	}
	n := int64(len(claimed)) // read before the map is shared
	c.mu.Lock()
	h.claims.Add(n - int64(len(c.claimed)))
	c.claimed = claimed
	c.mu.Unlock()
	if n == r.Claims { // else claims moved meanwhile: the next SOLD_OUT copies again
		c.soldOutUntil.Store(min(time.Now().UnixMilli()+h.soldOutMs, r.EndMs))
	}
}
