package engine

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redpacket/rain"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/lua"
)

// Sold-out floods answered from memory.
//
// Once claim.lua says SOLD_OUT no claim can be added (until stock is put
// back), so the campaign's claimants are a fixed set. The instance builds a
// Bloom filter of them (in the background; opens go to Redis meanwhile) and
// from then on answers 410 from memory to any user the filter does not
// hold: a Bloom filter has no false negatives, so such a user has no claim.
// A user it may hold — a claimant, or a false positive (about one
// non-claimant in soldOutFP⁻¹) — goes to Redis, whose script answers 409
// with the amount (or 410). A campaign with millions of claimants costs
// about 1.8 MB per million.
//
// The build is exact: the SOLD_OUT reply carries the number of claims N,
// the build reads every user id with HSCAN, then the number again with
// HLEN. Claims are never deleted, so an HLEN of N means the hash did not
// change from the reply to the end of the scan, and HSCAN returns every
// element present for the whole scan. Any other count (a claim arrived:
// stock was added back) drops the filter; the next SOLD_OUT tries again.
//
// The flag holds for Config.SoldOutTTL, never past the campaign's end.
// Every SOLD_OUT reply (a "maybe" open, or the first open after the flag
// expired) checks the filter's count against the reply's: equal renews the
// flag, different drops the filter and starts a new build. An OK reply
// (stock is back) drops it at once. So stock added back is served within
// SOLD_OUT_TTL.
//
// A bucketed campaign (K > 1, buckets.go) is sold out as a whole only when
// the global empty check has set 'final' on every bucket; a bucket's
// SOLD_OUT reply counts that bucket's claims only. So its build first reads,
// for every bucket, 'final' and the claims hash's length (one pipelined
// round, a command per bucket); any bucket not final stops it (the check is
// still setting them, or stock came back). Then it scans every bucket's
// claims into one filter and reads the lengths and the flags again: the
// filter is exact when every length and every flag is unchanged. The set
// keeps each bucket's count, and a reply of bucket b whose count differs
// from it drops the filter, as for K = 1. A reply that matches proves only
// its own bucket, so the flag is not renewed by it: once the TTL has run
// out the next SOLD_OUT reply starts a build, whose first round (K
// lengths) renews the set when no count moved, without a scan.
//
// Filters have their own memory budget (Config.SoldOutMemory), spent per
// campaign: a new filter evicts the least recently used campaign's (never
// all of them), and a campaign whose filter alone is over the budget is not
// kept (its opens go to Redis). One build per campaign runs at a time, and
// the next no sooner than SOLD_OUT_TTL or four times the last scan's
// duration after it, so campaigns evicting each other's filters cannot keep
// Redis scanning.

const (
	// soldOutFP is a filter's false-positive rate: the share of
	// non-claimants' opens still sent to Redis. 14.4 bits and 10 hashes
	// per claimant; a non-claimant is refused after about two probes.
	soldOutFP = 0.001
	// soldOutOverhead is what a kept filter costs besides its bits.
	soldOutOverhead = 256
	// scanCount is HSCAN's COUNT in a build. Larger saves round trips but
	// blocks Redis longer per call and costs it more per field: a 1M-claim
	// build measured 1.0 µs of Redis per field at 1000 (1 ms a call), 1.8 µs
	// at 10000 (18 ms a call), in about the same time.
	scanCount = 1000
)

// soldOutCost is the memory a filter of n claimants takes.
func soldOutCost(n int64) int64 {
	m, _ := bloom.EstimateParameters(uint(max(n, 1)), soldOutFP)
	return int64((m+63)/64*8) + soldOutOverhead
}

// soldOutSet is a sold-out campaign's claimants. The filter is read-only
// once the set is shared.
type soldOutSet struct {
	id     int64
	claims int64   // the claims the filter holds
	counts []int64 // per bucket (one for K = 1): its claims hash's length
	cost   int64   // soldOutCost(claims)
	filter *bloom.BloomFilter
	until  atomicMs     // answers from memory until then
	used   atomicMs     // the last open checked against it (LRU)
	owner  *hotCampaign // whose sold points here; under hotCampaigns.mu
}

// atomicMs is a unix ms time written from the hot path: it is stored only
// when it changes, so its cache line stays shared between cores.
type atomicMs struct{ atomic.Int64 }

func (a *atomicMs) touch(ms int64) {
	if a.Load() != ms {
		a.Store(ms)
	}
}

// soldOut reports whether the open of user is answered 410 from memory at
// nowMs: the campaign is flagged sold out and user holds none of its
// claims. user may be a slice of a request buffer (nothing keeps it).
func (c *hotCampaign) soldOut(user []byte, nowMs int64) bool {
	s := c.sold.Load()
	if s == nil || nowMs >= s.until.Load() {
		return false
	}
	s.used.touch(nowMs)
	return !s.filter.Test(user)
}

// flagged reports whether the campaign is flagged sold out at nowMs.
func (c *hotCampaign) flagged(nowMs int64) bool {
	s := c.sold.Load()
	return s != nil && nowMs < s.until.Load()
}

// markSoldOut handles a SOLD_OUT reply of bucket b (0 for K = 1): a filter
// that holds as many of its claims as the reply counts is flagged for the
// TTL (K = 1; for K > 1 see the top of this file); one that does not is
// dropped, and a build is started when none runs and the campaign's filter
// would fit.
func (h *hotCampaigns) markSoldOut(c *hotCampaign, r rain.Result, b int) {
	c.endMs.Store(r.EndMs)
	if h.soldOutMs == 0 || h.soldOutBudget == 0 {
		return
	}
	now := time.Now().UnixMilli()
	claims := r.Claims
	if s := c.sold.Load(); s != nil {
		switch {
		case b >= len(s.counts) || s.counts[b] != r.Claims:
			h.dropSoldOut(c, s)
		case len(s.counts) == 1:
			s.until.touch(min(now+h.soldOutMs, r.EndMs))
			return
		case now < s.until.Load():
			return
		default: // K > 1, flag run out: the build renews it
			claims = s.claims
		}
	}
	if h.startBuild(c, claims, now) {
		go h.buildSoldOut(c, r, c.gen.Load())
	}
}

// startBuild reports whether a build of the filter of c's claims (claims
// of them) may start at nowMs, and if so marks it running: the filter
// would fit the budget, the last build is long enough ago, none runs.
func (h *hotCampaigns) startBuild(c *hotCampaign, claims, nowMs int64) bool {
	return soldOutCost(claims) <= h.soldOutBudget && nowMs >= c.buildAfter.Load() &&
		c.building.CompareAndSwap(false, true)
}

// stockBack handles an OK reply: stock was added back, so a filter of the
// campaign is dropped and one being built is not kept.
func (h *hotCampaigns) stockBack(c *hotCampaign) {
	if c.sold.Load() == nil && !c.building.Load() {
		return
	}
	c.gen.Add(1)
	if s := c.sold.Load(); s != nil {
		h.dropSoldOut(c, s)
	}
}

// buildSoldOut builds the filter of the campaign's claims hash, which the
// SOLD_OUT reply r counted, and keeps it if it is whole and no OK reply
// came meanwhile (gen unchanged).
func (h *hotCampaigns) buildSoldOut(c *hotCampaign, r rain.Result, gen int64) {
	wait := h.soldOutMs // until the next build may start, once this one ends
	defer func() {
		c.buildAfter.Store(time.Now().UnixMilli() + wait)
		c.building.Store(false)
	}()
	defer RecoverGoroutine(h.log, "sold-out filter build") // before the marks above are cleared
	// About 3 s per million claims on a busy 2-core box; the bound leaves
	// room for a slower Redis (rueidis retries reads until it).
	start := time.Now()
	claims := r.Claims // a bucket's reply counts its own: the campaign holds about K times as many
	if c.layout != nil {
		claims *= int64(c.layout.K())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second+time.Duration(claims)*10*time.Microsecond)
	defer cancel()
	var s *soldOutSet
	var err error
	if c.layout == nil {
		s, err = h.scanSoldOut(ctx, c.keys, r.Claims)
	} else {
		s, err = h.scanBuckets(ctx, c)
	}
	if err != nil { // Redis lost or slow: the next SOLD_OUT after the TTL tries again
		h.log.Warn("filter of a sold-out campaign's claimants not built; its opens go to Redis",
			"campaign_id", c.keys.ID, "err", err)
		return
	}
	wait = max(wait, 4*time.Since(start).Milliseconds())
	if s == nil || c.gen.Load() != gen {
		return // claims moved: the next SOLD_OUT tries again
	}
	now := time.Now().UnixMilli()
	// c.endMs: an end moved earlier during the build (refresh.go) holds.
	s.until.Store(min(now+h.soldOutMs, r.EndMs, c.endMs.Load()))
	s.used.Store(now)
	if c.sold.Load() != s { // not a renewal
		h.putSoldOut(c, s)
	}
}

// scanSoldOut reads the user ids of k's claims hash into a filter sized
// for claims, then the hash's length: nil when it is not claims (the hash
// changed since the count, so the filter may miss a claimant).
func (h *hotCampaigns) scanSoldOut(ctx context.Context, k *lua.Keys, claims int64) (*soldOutSet, error) {
	f := bloom.NewWithEstimates(uint(max(claims, 1)), soldOutFP)
	if err := scanUsers(ctx, h.redis, k.Claims(), func(user string) { f.AddString(user) }); err != nil {
		return nil, err
	}
	if h.afterScan != nil {
		h.afterScan()
	}
	n, err := h.redis.Do(ctx, h.redis.B().Hlen().Key(k.Claims()).Build()).AsInt64()
	if err != nil {
		return nil, err
	}
	if n != claims {
		return nil, nil
	}
	return &soldOutSet{id: k.ID, claims: claims, counts: []int64{claims}, cost: soldOutCost(claims), filter: f}, nil
}

// scanBuckets is scanSoldOut for bucketed campaign c (see the top of this
// file): nil when a bucket is not final or its claims changed during the
// scan; c's kept set itself when no bucket's count moved since it was
// built (a renewal, nothing scanned).
func (h *hotCampaigns) scanBuckets(ctx context.Context, c *hotCampaign) (*soldOutSet, error) {
	before, err := h.bucketCounts(ctx, c.layout)
	if before == nil || err != nil {
		return nil, err
	}
	if s := c.sold.Load(); s != nil && slices.Equal(s.counts, before) {
		return s, nil
	}
	var claims int64
	for _, n := range before {
		claims += n
	}
	if soldOutCost(claims) > h.soldOutBudget {
		return nil, nil
	}
	f := bloom.NewWithEstimates(uint(max(claims, 1)), soldOutFP)
	for _, b := range c.layout.Buckets {
		if err := scanUsers(ctx, h.redis, b.Claims(), func(user string) { f.AddString(user) }); err != nil {
			return nil, err
		}
	}
	if h.afterScan != nil {
		h.afterScan()
	}
	after, err := h.bucketCounts(ctx, c.layout)
	if after == nil || err != nil || !slices.Equal(before, after) {
		return nil, err
	}
	return &soldOutSet{id: c.keys.ID, claims: claims, counts: before, cost: soldOutCost(claims), filter: f}, nil
}

// bucketCounts reads the length of every bucket's claims hash of l, in one
// pipelined round: nil when a bucket is not final (the campaign is not
// sold out as a whole).
func (h *hotCampaigns) bucketCounts(ctx context.Context, l *lua.Layout) ([]int64, error) {
	cmds := make(rueidis.Commands, 0, 2*l.K())
	for _, b := range l.Buckets {
		cmds = append(cmds,
			h.redis.B().Hexists().Key(b.Meta()).Field("final").Build(),
			h.redis.B().Hlen().Key(b.Claims()).Build())
	}
	counts := make([]int64, l.K())
	for i, r := range h.redis.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			return nil, err
		}
		if i%2 == 0 && n == 0 {
			return nil, nil
		}
		counts[i/2] = n
	}
	return counts, nil
}

// scanUsers calls fn with every field of the hash at key (HSCAN). The next
// page is asked for before fn runs on a page's fields, so Redis works while
// they are hashed.
func scanUsers(ctx context.Context, rdb rueidis.Client, key string, fn func(string)) error {
	type page struct {
		rueidis.ScanEntry
		err error
	}
	fetch := func(cursor uint64, to chan<- page) {
		defer func() { // the reader waits on to: a panic becomes its error
			if v := recover(); v != nil {
				to <- page{err: fmt.Errorf("panic scanning %s: %v", key, v)}
			}
		}()
		e, err := rdb.Do(ctx, rdb.B().Hscan().Key(key).Cursor(cursor).Count(scanCount).Build()).AsScanEntry()
		to <- page{e, err}
	}
	pages := make(chan page, 1)
	fetch(0, pages)
	for {
		p := <-pages
		if p.err != nil {
			return p.err
		}
		if p.Cursor != 0 {
			go fetch(p.Cursor, pages)
		}
		for i := 0; i < len(p.Elements); i += 2 { // field, value, field, value…
			fn(p.Elements[i])
		}
		if p.Cursor == 0 {
			return nil
		}
	}
}

// putSoldOut keeps s as its campaign's filter, evicting the least recently
// used others until it fits the budget; false when s alone does not fit.
func (h *hotCampaigns) putSoldOut(c *hotCampaign, s *soldOutSet) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.cost > h.soldOutBudget {
		return false
	}
	if old := h.soldOutSets[s.id]; old != nil {
		h.removeSoldOutLocked(old)
	}
	for len(h.soldOutSets) > 0 && (h.soldOutBytes+s.cost > h.soldOutBudget || len(h.soldOutSets) >= maxHot) {
		var lru *soldOutSet
		for _, o := range h.soldOutSets {
			if lru == nil || o.used.Load() < lru.used.Load() {
				lru = o
			}
		}
		h.removeSoldOutLocked(lru)
	}
	if h.soldOutSets == nil {
		h.soldOutSets = make(map[int64]*soldOutSet)
	}
	// The campaign's current state: the map may have been refilled since c
	// was taken (then get attaches s to the state it makes).
	if m := h.m.Load(); m != nil && (*m)[s.id] != nil {
		c = (*m)[s.id]
	}
	s.owner = c
	h.soldOutSets[s.id] = s
	h.soldOutBytes += s.cost
	c.sold.Store(s)
	return true
}

// dropSoldOut forgets c's filter s.
func (h *hotCampaigns) dropSoldOut(c *hotCampaign, s *soldOutSet) {
	h.mu.Lock()
	if h.soldOutSets[s.id] == s {
		h.removeSoldOutLocked(s)
	}
	h.mu.Unlock()
	c.sold.CompareAndSwap(s, nil)
}

func (h *hotCampaigns) removeSoldOutLocked(s *soldOutSet) {
	delete(h.soldOutSets, s.id)
	h.soldOutBytes -= s.cost
	s.owner.sold.CompareAndSwap(s, nil)
}
