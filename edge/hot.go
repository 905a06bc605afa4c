package edge

import (
	"sync"
	"sync/atomic"

	"github.com/redpacket/rain/lua"
)

// The open path keeps a little state per campaign in memory (hotCampaign):
// its Redis keys, built once, and what lets two kinds of request be answered
// without Redis:
//
//   - a repeat by a user this instance has seen claim (or seen refused as
//     ALREADY_OPENED): claims are never taken back, so the amount stays
//     true; the answer is 409 with it, as claim.lua would give, until the
//     campaign ends (then the script's ENDED comes first);
//   - an open of a campaign this instance has seen sold out, for a short
//     while (Config.SoldOutTTL), after which Redis is asked again, so stock
//     ever added back is served within that time. Remembered claimants
//     still get their 409 first.
//
// A user who claimed through another api replica and opens again during a
// sold-out flood gets 410 from this replica instead of 409: both say there
// is no packet for this request; the claim is untouched (README).
//
// Claimants are kept per campaign, so the check on a sold-out flood looks
// in a map the size of the campaign's stock (cache-resident), not in one
// map of every claim the instance has seen (pprof: a miss in a 250k-entry
// map cost 12% of the sold-out path).

// hotCampaign is one campaign's in-process state.
type hotCampaign struct {
	keys         *lua.Keys
	endMs        atomic.Int64 // the campaign's end, unix ms, once a reply told it
	soldOutUntil atomic.Int64 // unix ms; 0 = not known sold out

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
	claims    atomic.Int64
	mu        sync.Mutex
	m         atomic.Pointer[map[int64]*hotCampaign]
}

// maxHot bounds the campaigns tracked (a flood of unknown ids cannot grow
// the map without bound).
const maxHot = 4096

// get returns the state of campaign id, creating it.
func (h *hotCampaigns) get(id int64) *hotCampaign {
	if m := h.m.Load(); m != nil {
		if c, ok := (*m)[id]; ok {
			return c
		}
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
	c := &hotCampaign{keys: lua.KeysOf(id), claimed: make(map[string]int64)}
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
	if h.claims.Add(1) > h.maxClaims {
		h.forget()
		return
	}
	c.mu.Lock()
	c.claimed[user] = r.Amount
	c.mu.Unlock()
}

// soldOut reports whether the campaign is flagged sold out at nowMs.
func (c *hotCampaign) soldOut(nowMs int64) bool {
	return nowMs < c.soldOutUntil.Load()
}

// markSoldOut flags the campaign sold out for the TTL, never past its end.
func (h *hotCampaigns) markSoldOut(c *hotCampaign, nowMs, endMs int64) {
	c.endMs.Store(endMs)
	if h.soldOutMs > 0 {
		c.soldOutUntil.Store(min(nowMs+h.soldOutMs, endMs))
	}
}
