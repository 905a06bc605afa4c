package engine

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/redpacket/rain"

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
//     script's ENDED comes first). This memo is bounded by
//     Config.ClaimMemo claims in all (past it, every campaign's is dropped);
//   - an open of a campaign seen sold out by a user who holds none of its
//     claims: 410, from a filter of the campaign's claimants (soldout.go),
//     under a memory budget of its own, spent per campaign.
//
// Claimants are kept per campaign, so the check on a flood looks in a map
// the size of the campaign's memo (cache-resident), not in one map of every
// claim the instance has seen (pprof: a miss in a 250k-entry map cost 12%
// of the sold-out path).

// hotCampaign is one campaign's in-process state.
type hotCampaign struct {
	keys  *lua.Keys
	endMs atomic.Int64 // the campaign's end, unix ms, once a reply told it
	queue claimQueue   // opens waiting for the next claim call (batch.go)

	// A bucketed campaign's (buckets.go); nil with one bucket.
	layout *lua.Layout
	queues []claimQueue // one per bucket
	rebal  *rebalancer

	sold       atomic.Pointer[soldOutSet] // its claimants, while kept (soldout.go)
	building   atomic.Bool                // a filter of its claimants is being built
	buildAfter atomic.Int64               // unix ms: no build starts before
	gen        atomic.Int64               // OK replies seen while a filter is kept or built

	live *answerCounters // its answers, for the console's live view (live.go)

	mu      sync.RWMutex
	claimed map[string]int64 // user → amount
}

// hotCampaigns maps campaign ids to their state. Reads are lock-free loads
// of an immutable map (campaigns are few and long-lived); a new campaign
// copies it. Memory is bounded: past maxHot campaigns or maxClaims
// remembered claims in all, the map is forgotten and refilled. Sold-out
// filters are kept apart, under their own budget, and survive that: a
// campaign's new state takes its filter back.
type hotCampaigns struct {
	maxClaims     int64 // 0: claimants are not remembered
	soldOutMs     int64 // 0: sold out is not remembered
	soldOutBudget int64 // bytes of sold-out filters; 0: none kept
	redis         rueidis.Client
	keys          lua.Keyspace
	log           *slog.Logger
	lost          func(id int64) // a bucketed campaign's home is gone (the engine's repairAsync)
	claims        atomic.Int64
	afterScan     func() // tests: runs between a build's scan and its count
	mu            sync.Mutex
	m             atomic.Pointer[map[int64]*hotCampaign]
	soldOutSets   map[int64]*soldOutSet     // under mu
	soldOutBytes  int64                     // their cost; under mu
	counters      map[int64]*answerCounters // each campaign's answers (live.go); under mu
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

// get returns the state of campaign id, creating it (as a campaign of one
// bucket).
func (h *hotCampaigns) get(id int64) *hotCampaign { return h.getLayout(id, nil) }

// getBuckets returns the state of campaign id of k buckets (nil if k is
// out of range).
func (h *hotCampaigns) getBuckets(id int64, k int) *hotCampaign {
	l, err := h.keys.Layout(id, k)
	if err != nil {
		return nil
	}
	return h.getLayout(id, l)
}

// getLayout returns the state of campaign id, creating it with layout l
// (nil: one bucket, or whatever state there is). A state of one bucket is
// replaced by one of l's buckets: it was made before Redis told the
// bucket count, which a campaign keeps for life.
func (h *hotCampaigns) getLayout(id int64, l *lua.Layout) *hotCampaign {
	if l != nil && l.K() == 1 {
		l = nil
	}
	if c := h.peek(id); c != nil && c.sameLayout(l) {
		return c
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.m.Load()
	if old != nil {
		if c, ok := (*old)[id]; ok && c.sameLayout(l) {
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
	c.live = h.countersFor(id, next)
	if l != nil {
		c.layout, c.queues, c.rebal = l, make([]claimQueue, l.K()), newRebalancer(h.redis, l, nil, h.log, h.lost)
	}
	if s := h.soldOutSets[id]; s != nil {
		s.owner = c
		c.sold.Store(s)
	}
	next[id] = c
	h.m.Store(&next)
	return c
}

// sameLayout reports whether the state serves l (nil: any).
func (c *hotCampaign) sameLayout(l *lua.Layout) bool {
	return l == nil || c.layout != nil && c.layout.K() == l.K()
}

// forget drops every campaign's state (memory bound reached); sold-out
// filters stay, and go back to the campaigns' new states.
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

// remember records a user's claim (r is an OK or ALREADY_OPENED reply).
func (h *hotCampaigns) remember(c *hotCampaign, user string, r rain.Result) {
	c.endMs.Store(r.EndMs)
	if r.Outcome == rain.OK {
		h.stockBack(c)
	}
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
