package engine

import (
	"context"
	"encoding/json"
	"math"
	"time"

	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
)

// Keeping answers from memory exact when a merchant ends a campaign early
// or adds stock through any replica.
//
// A replica answers two kinds of open from memory (hot.go): repeats (409,
// until the campaign's end) and floods of a sold-out campaign (410). Both
// rest on what Redis replies told it: the end, and that no stock was left.
// An end or a restock changes Redis (end.lua, restock.lua), which every
// script call then sees at once, but not what other replicas remember. So
// every MemoryRefresh each replica re-reads, in one pipelined round trip,
// the end and the stock generation (meta 'gen', bumped by every restock)
// of the campaigns it answers from memory, and
//   - lowers the end it holds to Redis's (a reply read before the end may
//     have stored the old one back since: the next pass lowers it again),
//     which stops both kinds of answer at the new end;
//   - when the generation moved, drops the campaign's sold-out state and
//     voids a filter being built, and keeps doing so for soldOutSettle
//     after the move (a SOLD_OUT reply from before the restock, read after
//     it, may start a filter meanwhile).
// The replica that took the merchant's request does the same at once.
//
// Every sweepEvery a loop of its own (sweepPass) finishes merchant actions
// whose Redis step did not run (Redis down, or the process killed between
// PostgreSQL and Redis): stock actions not yet applied (settle, merchant.go), and the
// ends of campaigns ended early within sweepLookback, applied again (an end
// is idempotent; a load that read the campaign before its end may have
// written the old one).

const (
	sweepEvery    = 5 * time.Second
	sweepAge      = 2 * time.Second // a stock action younger than this is its request's
	sweepLookback = 24 * time.Hour
	soldOutSettle = time.Second
)

// refresher is a server's background loop (started by Serve).
type refresher struct {
	loop  Loop
	sweep Loop // sweepPass, every sweepEvery
	// The refresher loop's own state.
	gens  map[int64]genSeen
	keys  []*lua.Keys
	camps []*hotCampaign
	wins  []lua.Window
}

type genSeen struct {
	gen       int64
	changedAt time.Time
}

// startRefresh starts the server's refresher, once.
func (e *Engine) startRefresh() {
	r := &e.refresh
	every := e.cfg.MemoryRefresh
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	r.loop.Start(every, false, e.failLog, "memory refresh", func() { e.refreshPass(every) })
	r.sweep.Start(sweepEvery, true, e.failLog, "sweep", e.sweepPass)
}

// refreshPass is one pass of the refresher.
func (e *Engine) refreshPass(every time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), max(every, time.Second))
	defer cancel()
	if err := e.refreshMemory(ctx); err != nil {
		e.failLog.Warn("memory refresh failed; answers from memory follow an end or a restock late", "err", err)
	}
}

// sweepPass is one pass of the sweep's own loop. The sweep is not a step of
// the refresher's pass: its work grows with the campaigns ended within
// sweepLookback (each end applied again), and while it ran, memory did not
// follow an end or a restock (a replica answered SOLD_OUT from memory two
// seconds after a restock, TestMerchantRaceTwoReplicas under a loaded
// suite).
func (e *Engine) sweepPass() {
	ctx, cancel := context.WithTimeout(context.Background(), sweepEvery)
	defer cancel()
	e.sweep(ctx)
}

// refreshMemory is one pass over the campaigns answered from memory.
func (e *Engine) refreshMemory(ctx context.Context) error {
	r := &e.refresh
	if r.gens == nil {
		r.gens = make(map[int64]genSeen)
	}
	m := e.hot.m.Load()
	if m == nil {
		clear(r.gens)
		return nil
	}
	now := time.Now()
	nowMs := now.UnixMilli()
	r.keys, r.camps = r.keys[:0], r.camps[:0]
	for _, c := range *m {
		if c.endMs.Load() > nowMs || c.sold.Load() != nil || c.building.Load() {
			r.keys, r.camps = append(r.keys, c.keys), append(r.camps, c)
		}
	}
	for id := range r.gens {
		if (*m)[id] == nil {
			delete(r.gens, id)
		}
	}
	if len(r.keys) == 0 {
		return nil
	}
	r.wins = append(r.wins[:0], make([]lua.Window, len(r.keys))...)
	if err := lua.ReadWindows(ctx, e.redis, r.keys, r.wins); err != nil {
		return err
	}
	for i, w := range r.wins {
		c := r.camps[i]
		if !w.Loaded {
			continue
		}
		e.hot.lowerEnd(c, w.EndMs)
		g, seen := r.gens[c.keys.ID]
		switch {
		case !seen:
			// First pass over it: a restock may have come between the
			// reply that made its state and now.
			if w.Gen > 0 {
				g.changedAt = now
			}
		case g.gen != w.Gen:
			g.changedAt = now
		}
		g.gen = w.Gen
		r.gens[c.keys.ID] = g
		if now.Sub(g.changedAt) < soldOutSettle {
			e.hot.stockBack(c)
		}
	}
	return nil
}

// lowerEnd makes c's end no later than endMs: repeats are answered from
// memory only before it, and a sold-out flag holds no longer.
func (h *hotCampaigns) lowerEnd(c *hotCampaign, endMs int64) {
	for {
		cur := c.endMs.Load()
		if cur <= endMs || c.endMs.CompareAndSwap(cur, endMs) {
			break
		}
	}
	if s := c.sold.Load(); s != nil && s.until.Load() > endMs {
		s.until.Store(endMs)
	}
}

// sweep finishes merchant actions whose Redis step did not run.
func (e *Engine) sweep(ctx context.Context) {
	ids, err := e.store.PendingStockCampaigns(ctx, sweepAge)
	if err != nil {
		e.log.Warn("sweep: pending stock not read", "err", err)
	}
	for _, id := range ids {
		if err := e.settle(ctx, id); err != nil {
			e.log.Warn("sweep: pending stock not settled", "campaign_id", id, "err", err)
		}
	}
	e.sweepEnds(ctx)
}

// sweepActor is the audit's record of an end the sweep finishes.
var sweepActor = postgres.Actor{Name: "sweep",
	Request: json.RawMessage(`{"reason":"an end that reached only part of the campaign's keys in Redis, finished on every part"}`)}

// sweepEnds finishes ends that did not reach every part of a campaign in
// Redis: an end PostgreSQL recorded whose Redis step did not run (or a
// load that read the campaign before it wrote the old end back), and an
// end that reached a bucketed campaign's home but not every bucket (its
// request failed half way and PostgreSQL rolled back; the merchant was
// told to retry). Every part of each campaign ended within sweepLookback,
// and of every live bucketed campaign, is read. Where a part is still open
// while another part (or PostgreSQL) has ended, the end is finished on
// every part: PostgreSQL's where it recorded one (what the merchant was
// told), else each open part's own now; and recorded in PostgreSQL when
// earlier than the row's. A bucketed campaign whose parts have all ended,
// each at its own time (EndBuckets ends each bucket at its own Redis time
// and the home at the latest), ends at the latest of them: every claim is
// before it. That end is recorded when PostgreSQL's row ends later (an end
// whose Redis step finished and whose transaction did not).
func (e *Engine) sweepEnds(ctx context.Context) {
	ended, err := e.store.EndedSince(ctx, time.Now().Add(-sweepLookback))
	if err != nil {
		e.log.Warn("sweep: ended campaigns not read", "err", err)
		return
	}
	pgEnd := make(map[int64]int64, len(ended))
	for _, w := range ended {
		pgEnd[w.ID] = w.End.UnixMilli()
	}
	for _, id := range e.catalog.liveBucketed(time.Now().UnixMilli()) {
		if _, ok := pgEnd[id]; !ok {
			pgEnd[id] = math.MaxInt64
		}
	}
	var layouts []*lua.Layout
	var keys []*lua.Keys
	for id := range pgEnd {
		k := 1
		if w, found, _, _ := e.catalog.lookup(id); found {
			k = int(w.buckets)
		}
		l, err := e.keys.Layout(id, k)
		if err != nil {
			continue
		}
		layouts = append(layouts, l)
		keys = append(keys, l.Home)
		if k > 1 {
			for b := range l.Buckets {
				keys = append(keys, l.Buckets[b].Keys)
			}
		}
	}
	if len(keys) == 0 {
		return
	}
	wins := make([]lua.Window, len(keys))
	if err := lua.ReadWindows(ctx, e.redis, keys, wins); err != nil {
		e.log.Warn("sweep: windows not read", "err", err)
		return
	}
	i := 0
	now := time.Now().UnixMilli()
	for _, l := range layouts {
		n := 1 // the home, and the buckets of a bucketed campaign
		if l.K() > 1 {
			n += l.K()
		}
		parts := wins[i : i+n]
		i += n
		pg := pgEnd[l.ID]
		lo, hi := pg, int64(math.MinInt64)
		for _, w := range parts {
			if w.Loaded {
				lo, hi = min(lo, w.EndMs), max(hi, w.EndMs)
			}
		}
		switch {
		case hi == math.MinInt64, lo > now:
			continue // nothing in Redis, or nothing ended yet
		case hi > now:
			// A part still open though the campaign ended: PostgreSQL's
			// end where it recorded one, else each open part's now.
			endMs := pg
			if pg > now {
				endMs = math.MaxInt64
			}
			e.log.Warn("sweep: a part of an ended campaign is still open in redis; ending it",
				"campaign_id", l.ID, "end_ms", min(endMs, now))
			if err := e.finishEnd(ctx, l, endMs, pg); err != nil {
				e.log.Warn("sweep: end not applied", "campaign_id", l.ID, "err", err)
			}
		case l.K() > 1 && hi < pg:
			e.log.Warn("sweep: a bucketed campaign ended in redis, not in postgres; recording its end",
				"campaign_id", l.ID, "end_ms", hi)
			if err := e.finishEnd(ctx, l, hi, pg); err != nil {
				e.log.Warn("sweep: end not recorded", "campaign_id", l.ID, "err", err)
			}
		}
	}
}

// finishEnd ends every part of the campaign of l no later than endMs
// (EndBuckets), and records the end it returns in PostgreSQL when it is
// earlier than pgEnd, the row's.
func (e *Engine) finishEnd(ctx context.Context, l *lua.Layout, endMs, pgEnd int64) error {
	end, loaded, err := lua.EndBuckets(ctx, e.redis, l, endMs)
	if err != nil || !loaded {
		return err
	}
	if c := e.hot.peek(l.ID); c != nil {
		e.hot.lowerEnd(c, end)
	}
	if end >= pgEnd {
		return nil
	}
	apply := func(context.Context, time.Time) (time.Time, bool, error) { return time.UnixMilli(end), true, nil }
	_, err = e.store.EndCampaign(ctx, l.ID, sweepActor, apply)
	return err
}
