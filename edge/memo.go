package edge

import (
	"hash/maphash"
	"sync"
)

// The open path answers two kinds of request from memory, without Redis:
//
//   - a repeat by a user this instance has seen claim (or seen refused as
//     ALREADY_OPENED): claims are never taken back, so the user's amount
//     stays true; the answer is 409 with that amount, as claim.lua would
//     give, until the campaign ends (then the script's ENDED comes first);
//   - an open of a campaign this instance has seen sold out, for a short
//     while (Config.SoldOutTTL), after which Redis is asked again, so stock
//     that is ever added back is seen within that time.
//
// A user who claimed through another api replica and opens again after the
// sell-out gets 410 from this replica's flag instead of 409: both say there
// is no packet for this request; the claim itself is untouched (README).

// claimMemo remembers who claimed what, in bounded memory: shards of two
// generations; when the current generation of a shard is full it becomes
// the previous one and the oldest is dropped (no per-entry bookkeeping).
type claimMemo struct {
	seed     maphash.Seed
	perShard int
	shards   [64]memoShard
}

type memoKey struct {
	campaign int64
	user     string
}

type memoVal struct {
	amount int64
	endMs  int64 // the campaign's end, unix ms
}

type memoShard struct {
	mu        sync.Mutex
	cur, prev map[memoKey]memoVal
}

// newClaimMemo remembers about size claims (0 disables it).
func newClaimMemo(size int) *claimMemo {
	m := &claimMemo{seed: maphash.MakeSeed(), perShard: size / (2 * len(claimMemo{}.shards))}
	return m
}

func (m *claimMemo) shard(user string) *memoShard {
	return &m.shards[maphash.String(m.seed, user)%uint64(len(m.shards))]
}

// get returns the amount user claimed in campaign, if remembered and the
// campaign has not ended.
func (m *claimMemo) get(campaign int64, user string, nowMs int64) (int64, bool) {
	if m.perShard == 0 {
		return 0, false
	}
	s := m.shard(user)
	k := memoKey{campaign, user}
	s.mu.Lock()
	v, ok := s.cur[k]
	if !ok {
		v, ok = s.prev[k]
	}
	s.mu.Unlock()
	if !ok || nowMs >= v.endMs {
		return 0, false
	}
	return v.amount, true
}

func (m *claimMemo) put(campaign int64, user string, amount, endMs int64) {
	if m.perShard == 0 {
		return
	}
	s := m.shard(user)
	s.mu.Lock()
	if len(s.cur) >= m.perShard || s.cur == nil {
		s.prev, s.cur = s.cur, make(map[memoKey]memoVal, m.perShard)
	}
	s.cur[memoKey{campaign, user}] = memoVal{amount: amount, endMs: endMs}
	s.mu.Unlock()
}

// soldOut flags the campaigns seen sold out: campaign id → until when
// (unix ms) the flag holds, at most the campaign's end.
type soldOut struct {
	ttlMs int64 // 0: disabled
	mu    sync.RWMutex
	m     map[int64]int64
}

func (s *soldOut) has(campaign, nowMs int64) bool {
	if s.ttlMs == 0 {
		return false
	}
	s.mu.RLock()
	until, ok := s.m[campaign]
	s.mu.RUnlock()
	return ok && nowMs < until
}

func (s *soldOut) set(campaign, nowMs, endMs int64) {
	if s.ttlMs == 0 {
		return
	}
	until := min(nowMs+s.ttlMs, endMs)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= 10_000 {
		s.m = make(map[int64]int64)
	}
	s.m[campaign] = until
	s.mu.Unlock()
}
