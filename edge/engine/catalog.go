package engine

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
)

// Opens of campaigns Redis does not hold. Redis answers NOT_FOUND for an id
// it lacks, which is usually an id nobody created (a typo, a scan, a flood
// of made-up ids), sometimes a campaign that ended long ago and whose keys
// expired, and rarely a live campaign Redis lost (a create cut off between
// PostgreSQL and Redis, a Redis that lost its data). The catalog tells them
// apart without PostgreSQL: it holds every campaign's id and window (24
// bytes each), loaded at start and refreshed in the background, and at most
// once a second on demand for an id it does not know above its settled
// mark. So:
//   - an id it does not know is answered 404 from memory;
//   - a campaign that has not started or has ended is answered from its
//     window (the row, cached), and is never rebuilt into Redis;
//   - only a live campaign is rebuilt, behind a small limit of its own
//     (repairSlots at once, one per id, a failed one not retried for a
//     second); opens past it get 503 at once, nothing queues, and an open
//     waiting on a rebuild does not hold a slot of MAX_INFLIGHT.
//
// Creates commit out of order (each takes its id inside its transaction):
// a load may see id 101 and not 100, committed a moment later. So only the
// ids up to the highest of a campaign created more than settleAfter before
// a load (by PostgreSQL's clock) are settled: known, or never to exist.
// Every load re-reads the rows above that mark, and an unknown id above it
// is looked up in PostgreSQL (once a second at most) before it is answered
// 404.
//
// The same loop expires the Redis keys of ended campaigns: CAMPAIGN_KEY_TTL
// after the end (PEXPIREAT on the three keys, once per campaign per
// process; Loader.Load also sets it on meta and stock when it loads).

const (
	catalogEvery     = 30 * time.Second // new campaigns, then the sweep of ended ones
	catalogFullEvery = 10 * time.Minute // the whole table again (windows a merchant changed)
	aboveEvery       = time.Second      // an unknown id above the settled mark: PostgreSQL at most this often
	settleAfter      = 30 * time.Second // a create commits well within this of taking its id
	repairSlots      = 4                // rebuilds at once
	repairRetry      = time.Second      // a failed rebuild of an id is not tried again sooner
	sweepChunk       = 1000             // campaigns per PEXPIREAT pipeline
)

var (
	unknownFromMemory = metrics.NewCounter(`rain_campaign_lookups_total{source="memory"}`)
	unknownFromPG     = metrics.NewCounter(`rain_campaign_lookups_total{source="postgres"}`)
	repairsRefused    = metrics.NewCounter(`rain_campaign_repairs_refused_total`)
	keysExpired       = metrics.NewCounter(`rain_campaign_keys_expiry_set_total`)
)

type campaignWindow struct {
	startMs, endMs int64
	row            int64 // created_at in µs: the row's identity in Redis (loader.go)
	buckets        int32 // K (the sweep expires every bucket's keys); never changes
}

// catalog is every campaign's id and window, sorted by id.
type catalog struct {
	mu       sync.RWMutex
	ids      []int64
	wins     []campaignWindow
	swept    []bool // the keys' expiry is set (after the end)
	loaded   bool
	lastFull time.Time

	refresh   sync.Mutex     // one refresh from PostgreSQL at a time
	settle    *time.Duration // under refresh; nil: settleAfter (tests set their own)
	lastAbove atomic.Int64   // unix ms of the last refresh for an unknown id above the settled mark
	settled   int64          // ids up to it are settled; under mu

	repairSem chan struct{}
	repairMu  sync.Mutex
	repairs   map[int64]time.Time // in progress (zero time) or failed: not before then

	loop Loop // load, refresh, sweep
}

// lookup returns the window of campaign id, whether the catalog knows it,
// whether the catalog is loaded at all, and whether an id it does not know
// is settled (see the top of this file).
func (c *catalog) lookup(id int64) (w campaignWindow, found, loaded, settled bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if i, ok := slices.BinarySearch(c.ids, id); ok {
		return c.wins[i], true, c.loaded, true
	}
	return campaignWindow{}, false, c.loaded, id <= c.settled
}

func windowOf(start, end time.Time, buckets int) campaignWindow {
	return campaignWindow{startMs: start.UnixMilli(), endMs: end.UnixMilli(), buckets: int32(max(buckets, 1))}
}

// campaignWindowOf is c's window, with its identity.
func campaignWindowOf(c *rain.Campaign) campaignWindow {
	w := windowOf(c.StartTime, c.EndTime, c.K())
	w.row = c.CreatedAt.UnixMicro()
	return w
}

// rowWindow is windowOf for a catalog row, with its identity.
func rowWindow(r postgres.CampaignWindow) campaignWindow {
	w := windowOf(r.Start, r.End, r.Buckets)
	w.row = r.Created.UnixMicro()
	return w
}

// load reads the campaigns above the settled mark (all of them when full)
// from PostgreSQL, and moves the mark.
func (c *catalog) load(ctx context.Context, store *postgres.Store, full bool) error {
	c.refresh.Lock()
	defer c.refresh.Unlock()
	var after int64
	c.mu.RLock()
	if !full {
		after = c.settled
	}
	c.mu.RUnlock()
	settle := settleAfter
	if c.settle != nil {
		settle = *c.settle
	}
	rows, err := store.CampaignWindows(ctx, after, settle)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rows {
		if r.Settled {
			c.settled = max(c.settled, r.ID)
		}
	}
	if !full {
		for _, r := range rows {
			c.updateLocked(r.ID, rowWindow(r))
		}
		return nil
	}
	ids, wins, swept := make([]int64, len(rows)), make([]campaignWindow, len(rows)), make([]bool, len(rows))
	for i, r := range rows {
		ids[i], wins[i] = r.ID, rowWindow(r)
		if j, ok := slices.BinarySearch(c.ids, r.ID); ok && c.wins[j] == wins[i] {
			swept[i] = c.swept[j] // the same end: its keys' expiry stands
		}
	}
	c.ids, c.wins, c.swept, c.loaded, c.lastFull = ids, wins, swept, true, time.Now()
	return nil
}

// liveBucketed lists the bucketed campaigns whose window has not ended at
// nowMs.
func (c *catalog) liveBucketed(nowMs int64) []int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var ids []int64
	for i, w := range c.wins {
		if w.buckets > 1 && w.endMs > nowMs {
			ids = append(ids, c.ids[i])
		}
	}
	return ids
}

// update records a campaign's window as just read from PostgreSQL.
func (c *catalog) update(id int64, w campaignWindow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updateLocked(id, w)
}

func (c *catalog) updateLocked(id int64, w campaignWindow) {
	i, ok := slices.BinarySearch(c.ids, id)
	if ok {
		if c.wins[i] != w {
			c.wins[i], c.swept[i] = w, false
		}
		return
	}
	c.ids, c.wins, c.swept = slices.Insert(c.ids, i, id), slices.Insert(c.wins, i, w), slices.Insert(c.swept, i, false)
}

// refreshAbove reloads the campaigns above the settled mark, unless
// that was done less than aboveEvery ago or is being done: a flood of
// made-up ids costs PostgreSQL one query a second at most.
func (c *catalog) refreshAbove(e *Engine) bool {
	now := time.Now().UnixMilli()
	last := c.lastAbove.Load()
	if now-last < aboveEvery.Milliseconds() || !c.lastAbove.CompareAndSwap(last, now) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RepairTimeout)
	defer cancel()
	unknownFromPG.Inc()
	if err := c.load(ctx, e.store, false); err != nil {
		e.failLog.Warn("reading new campaigns", "err", err)
		return false
	}
	return true
}

// startRepair takes a repair slot for id, or reports why not (another
// rebuild of id runs, one failed a moment ago, or every slot is busy).
func (c *catalog) startRepair(id int64) (done func(ok bool), started bool) {
	c.repairMu.Lock()
	defer c.repairMu.Unlock()
	if c.repairs == nil {
		c.repairs = make(map[int64]time.Time)
		c.repairSem = make(chan struct{}, repairSlots)
	}
	if until, busy := c.repairs[id]; busy && (until.IsZero() || time.Now().Before(until)) {
		return nil, false
	}
	select {
	case c.repairSem <- struct{}{}:
	default:
		return nil, false
	}
	c.repairs[id] = time.Time{}
	if len(c.repairs) > 10*repairSlots { // forget failures that may be retried
		for k, until := range c.repairs {
			if !until.IsZero() && time.Now().After(until) {
				delete(c.repairs, k)
			}
		}
	}
	return func(ok bool) {
		c.repairMu.Lock()
		if ok {
			delete(c.repairs, id)
		} else {
			c.repairs[id] = time.Now().Add(repairRetry)
		}
		c.repairMu.Unlock()
		<-c.repairSem
	}, true
}

// openUnloaded answers an open of a campaign Redis does not hold (claim
// found it NOT_FOUND); see the top of this file.
func (e *Engine) openUnloaded(id int64, user string) (rain.Result, error) {
	w, found, loaded, settled := e.catalog.lookup(id)
	if loaded && !found && !settled && e.catalog.refreshAbove(e) {
		w, found, loaded, _ = e.catalog.lookup(id)
	}
	if loaded {
		unknownFromMemory.Inc()
		if !found {
			return answer(rain.NotFound), nil
		}
		if o := windowOutcome(w, time.Now().UnixMilli()); o != rain.OK {
			return answer(o), nil
		}
	}
	// A live campaign (or a catalog PostgreSQL has not filled yet): rebuild.
	done, ok := e.catalog.startRepair(id)
	if !ok {
		repairsRefused.Inc()
		claimsBusy.Inc()
		return rain.Result{}, errRepairBusy
	}
	// The rebuild has its own limit: the open's in-flight slot is given back
	// meanwhile (it is taken again for the claim that follows).
	e.inflight.Add(-1)
	c, err := e.repair(id)
	e.inflight.Add(1)
	done(err == nil)
	switch {
	case rain.ErrorCode(err) == rain.ENOTFOUND:
		return answer(rain.NotFound), nil
	case err != nil:
		claimsBusy.Inc()
		if rain.ErrorCode(err) != rain.EBUSY {
			e.failLog.Error("campaign rebuild failed", "campaign_id", id, "err", err)
		}
		return rain.Result{}, errRepairBusy
	}
	if o := windowOutcome(campaignWindowOf(c), time.Now().UnixMilli()); o != rain.OK {
		return answer(o), nil
	}
	return e.claim(id, e.hot.peek(id), user, false)
}

// repair reads campaign id from PostgreSQL and, when it is live, rebuilds
// it into Redis.
func (e *Engine) repair(id int64) (*rain.Campaign, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RepairTimeout)
	defer cancel()
	unknownFromPG.Inc()
	c, err := e.loader.campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	w := campaignWindowOf(c)
	e.catalog.update(id, w)
	if windowOutcome(w, time.Now().UnixMilli()) != rain.OK {
		return c, nil // answered from the row, never rebuilt
	}
	return c, e.loader.Load(ctx, c)
}

// windowOutcome is what claim.lua would say of the window at nowMs before
// looking at users and stock: NOT_STARTED, ENDED, or OK (live).
func windowOutcome(w campaignWindow, nowMs int64) rain.Outcome {
	switch {
	case nowMs < w.startMs:
		return rain.NotStarted
	case nowMs >= w.endMs:
		return rain.Ended
	}
	return rain.OK
}

// answer is the answer o of the script's first checks (a campaign's
// existence and window), counted.
func answer(o rain.Outcome) rain.Result {
	claimsByOutcome[o].Inc()
	return rain.Result{Outcome: o}
}

// tick is one pass of the catalog's loop.
func (c *catalog) tick(e *Engine) {
	ctx, cancel := context.WithTimeout(context.Background(), catalogEvery)
	defer cancel()
	c.mu.RLock()
	full := !c.loaded || time.Since(c.lastFull) >= catalogFullEvery
	c.mu.RUnlock()
	if err := c.load(ctx, e.store, full); err != nil {
		e.failLog.Warn("reading the campaign catalog", "err", err)
		return
	}
	if ttl := e.cfg.CampaignKeyTTL; ttl > 0 {
		if err := c.sweep(ctx, e.redis, e.keys, ttl); err != nil {
			e.failLog.Warn("setting the expiry of ended campaigns' keys", "err", err)
		}
	}
	if err := c.checkRows(ctx, e); err != nil {
		e.failLog.Warn("checking live campaigns' keys against their rows", "err", err)
	}
}

// checkRows compares the identity in the keys of every live campaign with
// its row (a database restored from a backup hands ids out again, and
// Redis may hold another row's keys under an id): a campaign whose keys
// are another row's is laid out again from PostgreSQL (repairAsync; the
// loader clears them). Keys loaded before rows were recorded are compared
// by start and bucket count.
func (c *catalog) checkRows(ctx context.Context, e *Engine) error {
	nowMs := time.Now().UnixMilli()
	var ids []int64
	var wins []campaignWindow
	c.mu.RLock()
	for i, w := range c.wins {
		if w.endMs > nowMs {
			ids, wins = append(ids, c.ids[i]), append(wins, w)
		}
	}
	c.mu.RUnlock()
	for len(ids) > 0 {
		n := min(len(ids), sweepChunk)
		keys := make([]*lua.Keys, n)
		for i, id := range ids[:n] {
			keys[i] = e.keys.Of(id)
		}
		out := make([]lua.Identity, n)
		if err := lua.ReadIdentities(ctx, e.redis, keys, out); err != nil {
			return err
		}
		for i, id := range out {
			w := wins[i]
			same := id.Row == strconv.FormatInt(w.row, 10) ||
				id.Row == "" && id.StartMs == w.startMs && id.Buckets == int(w.buckets)
			if id.Loaded && !same {
				e.failLog.Warn("a live campaign's keys are another row's: laying it out again", "campaign_id", ids[i])
				e.repairAsync(ids[i])
			}
		}
		ids, wins = ids[n:], wins[n:]
	}
	return nil
}

// expiringKeys are the keys of campaign id of k buckets that outlive its
// end: the home's three, and every bucket's and the pool's with k > 1.
func expiringKeys(ks lua.Keyspace, id int64, k int) []string {
	if k > 1 {
		if l, err := ks.Layout(id, k); err == nil {
			return l.ExpiringKeys()
		}
	}
	h := ks.Of(id)
	return []string{h.Meta(), h.Stock(), h.Claims()}
}

// keysExpireAt is when the Redis keys of a campaign that ends at endMs and
// was created at createdMs expire: ttl after its end, or after its
// creation if it was created already ended. Redis answers an open of a
// campaign from its keys, and a replica whose catalog has not read a new
// campaign yet (up to catalogEvery, and its lookup of unknown ids runs at
// most once a second) relies on them: keys that expired at once would
// make a campaign created with a window in the past (1969-12-31T23:59:59.999Z
// to 1970-01-01T00:00:00.001Z, say) a 404 there instead of its 400 ENDED.
func keysExpireAt(endMs, createdMs int64, ttl time.Duration) int64 {
	return max(endMs, createdMs) + ttl.Milliseconds()
}

// sweep sets the expiry of the keys of every ended campaign not yet swept:
// ttl after its end, or after its creation (keysExpireAt); at once for
// those that ended longer ago.
func (c *catalog) sweep(ctx context.Context, r rueidis.Client, ks lua.Keyspace, ttl time.Duration) error {
	nowMs := time.Now().UnixMilli()
	from := 0 // where the last chunk's scan stopped
	for {
		var ids []int64
		cmds := make(rueidis.Commands, 0, 3*sweepChunk)
		c.mu.RLock()
		for i := min(from, len(c.ids)); i < len(c.ids); i++ {
			if len(ids) == sweepChunk || len(cmds) >= 3*sweepChunk {
				break
			}
			from = i + 1
			if !c.swept[i] && c.wins[i].endMs <= nowMs {
				at := keysExpireAt(c.wins[i].endMs, c.wins[i].row/1000, ttl)
				for _, key := range expiringKeys(ks, c.ids[i], int(c.wins[i].buckets)) {
					cmds = append(cmds, r.B().Pexpireat().Key(key).MillisecondsTimestamp(at).Build())
				}
				ids = append(ids, c.ids[i])
			}
		}
		c.mu.RUnlock()
		if len(ids) == 0 {
			return nil
		}
		for _, res := range r.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				return err
			}
		}
		c.mu.Lock()
		for _, id := range ids {
			if i, ok := slices.BinarySearch(c.ids, id); ok {
				c.swept[i] = true
			}
		}
		c.mu.Unlock()
		keysExpired.Add(len(ids))
	}
}
