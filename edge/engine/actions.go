package engine

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/lua"
)

// A merchant's actions on a campaign: create, end now, add stock. Each
// changes PostgreSQL first (with its audit record, in one transaction),
// then Redis, whose scripts every open runs, so Redis decides exactly from
// the moment its step ran. What replicas answer from memory follows within
// Config.MemoryRefresh (refresh.go); this process follows at once. If the
// Redis step did not run (Redis down, the process killed in between), every
// replica's sweep finishes it (refresh.go). The story: docs/design.md.

var (
	errDBNoCreate  = rain.Errorf(rain.EBUSY, "database unavailable; nothing was created")
	errDBNoChange  = rain.Errorf(rain.EBUSY, "database unavailable; nothing was changed")
	errDBRead      = rain.Errorf(rain.EBUSY, "database unavailable")
	errEndRedis    = rain.Errorf(rain.EBUSY, "Redis unavailable; the end was not recorded (it may have taken effect): retry")
	errEndDB       = rain.Errorf(rain.EBUSY, "database unavailable; the end was not recorded (it may have taken effect): retry")
	errStockLocked = rain.Errorf(rain.EBUSY, "the campaign is being loaded or restocked by another request; nothing was added")
)

// Create saves campaign c with its audit record (PostgreSQL, one
// transaction), then loads it into Redis. If Redis fails in between, the
// campaign is not visible to opens (its meta hash is missing); its first
// open or the next boot loads it, and the error (EBUSY) names its id.
// Errors are rain errors: EINVALID for what the database refused.
func (e *Engine) Create(ctx context.Context, c *rain.Campaign, by postgres.Actor) error {
	start := time.Now()
	err := postgres.DataError(e.store.CreateCampaignBy(ctx, c, by))
	pgCreate.UpdateDuration(start)
	if rain.ErrorCode(err) == rain.EINVALID {
		e.log.Info("create campaign refused by the database", "err", err)
		return err
	}
	if err != nil {
		e.log.Error("create campaign", "err", err)
		return errDBNoCreate
	}
	merchantActions[postgres.ActionCreate].Inc()
	// This process's opens know the campaign's bucket count from now on.
	e.catalog.update(c.ID, campaignWindowOf(c))
	_, err = backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, e.loader.Load(ctx, c) },
		backoff.WithBackOff(retry.BackOff(time.Second)), backoff.WithMaxTries(3))
	if err != nil {
		e.log.Error("campaign saved but not loaded into redis", "campaign_id", c.ID, "err", err)
		return rain.Errorf(rain.EBUSY,
			"campaign %d was saved but its stock is not in Redis yet; it loads on its first open or the next boot", c.ID)
	}
	return nil
}

// End ends campaign id now: in Redis (end.lua on every part) inside the
// PostgreSQL transaction that records it, so the end PostgreSQL keeps is
// the one Redis applied. Idempotent: the end never moves later.
func (e *Engine) End(ctx context.Context, id int64, by postgres.Actor) (postgres.Ended, error) {
	var redisErr error
	apply := func(ctx context.Context, end time.Time) (time.Time, bool, error) {
		at, loaded, err := e.endInRedis(ctx, id, end.UnixMilli())
		redisErr = err
		return time.UnixMilli(at), loaded, err
	}
	start := time.Now()
	ended, err := e.store.EndCampaign(ctx, id, by, apply)
	pgEnd.UpdateDuration(start)
	switch {
	case rain.ErrorCode(err) == rain.ENOTFOUND:
		return ended, err
	case redisErr != nil:
		e.log.Error("end campaign: redis", "campaign_id", id, "err", err)
		return ended, errEndRedis
	case err != nil:
		e.log.Error("end campaign", "campaign_id", id, "err", err)
		return ended, errEndDB
	}
	if c := e.hot.peek(id); c != nil {
		e.hot.lowerEnd(c, ended.End.UnixMilli())
	}
	merchantActions[postgres.ActionEnd].Inc()
	if ended.Changed {
		endedEarly.Inc()
		e.log.Info("campaign ended by a merchant", "campaign_id", id, "by", by.Name, "end_time", ended.End)
	}
	return ended, nil
}

// endInRedis ends campaign id in Redis no later than endMs and returns the
// end Redis applied (false: Redis does not hold the campaign); this
// process's answers from memory follow at once.
func (e *Engine) endInRedis(ctx context.Context, id int64, endMs int64) (int64, bool, error) {
	start := time.Now()
	l, err := e.layoutOf(ctx, id)
	if err != nil {
		return 0, false, err
	}
	end, loaded, err := lua.EndBuckets(ctx, e.redis, l, endMs)
	redisMerchant.UpdateDuration(start)
	if err != nil || !loaded {
		return 0, false, err
	}
	if c := e.hot.peek(id); c != nil {
		e.hot.lowerEnd(c, end)
	}
	return end, true, nil
}

// AddStock adds r.Count packets of r.Amount to campaign r.Campaign. Under
// the campaign's Redis loading lock (so no load from PostgreSQL and no
// other restock of it runs meanwhile): PostgreSQL adds to the total and
// records the action and its Idempotency-Key in one transaction, then
// restock.lua adds to the stock. A retry with the same key answers what
// the first did and adds nothing. Applied false: Redis does not have it
// yet (the sweep adds it within seconds).
func (e *Engine) AddStock(ctx context.Context, r postgres.Restock) (postgres.Restocked, error) {
	k := e.keys.Of(r.Campaign)
	unlock, err := e.lockCampaign(ctx, k)
	if err != nil {
		return postgres.Restocked{}, err
	}
	defer unlock()
	start := time.Now()
	res, err := e.store.AddStock(ctx, r)
	pgStock.UpdateDuration(start)
	if err != nil {
		switch rain.ErrorCode(err) {
		case rain.EINVALID, rain.ECONFLICT, rain.EENDED, rain.ENOTFOUND:
		default:
			e.log.Error("add stock", "campaign_id", r.Campaign, "err", err)
			err = errDBNoChange
		}
		return res, err
	}
	if !res.Replayed {
		merchantActions[postgres.ActionStock].Inc()
		restocked.Inc()
		e.log.Info("stock added by a merchant", "campaign_id", r.Campaign, "by", r.By.Name, "amount", r.Amount, "count", r.Count)
	}
	if !res.Applied {
		if res.Replayed { // the first request's Redis step may or may not have run: count
			res.Applied, err = e.settleLocked(ctx, k)
		} else {
			res.Applied, err = e.restockRedis(ctx, k, r.Amount, r.Count, res.Action)
		}
		if err != nil {
			e.log.Warn("stock added in postgres, not yet in redis; the sweep adds it", "campaign_id", r.Campaign, "err", err)
		}
	}
	return res, nil
}

// restockRedis runs restock.lua for a new stock action and records that
// Redis has it. false with no error: the campaign is not in Redis (its load
// counts the stock; the sweep then marks the action).
func (e *Engine) restockRedis(ctx context.Context, k *lua.Keys, amount, count, action int64) (bool, error) {
	start := time.Now()
	l, err := e.layoutOf(ctx, k.ID)
	if err != nil {
		return false, err
	}
	_, loaded, err := lua.AddStockBuckets(ctx, e.redis, l, amount, count)
	redisMerchant.UpdateDuration(start)
	if err != nil || !loaded {
		return false, err
	}
	e.stockBack(k.ID)
	return true, e.store.MarkStockApplied(ctx, []int64{action})
}

// stockBack drops this process's sold-out state of campaign id at once
// (the other replicas' refreshers see the generation move).
func (e *Engine) stockBack(id int64) {
	if c := e.hot.peek(id); c != nil {
		e.hot.stockBack(c)
	}
}

// lockCampaign takes the campaign's loading lock (loader.go), waiting a
// little for another holder, or fails with a rain.EBUSY error.
func (e *Engine) lockCampaign(ctx context.Context, k *lua.Keys) (func(), error) {
	wait := 5 * time.Millisecond
	for deadline := time.Now().Add(2 * time.Second); ; {
		unlock, err := e.loader.lock(ctx, k)
		if !errors.Is(err, errRebuilding) {
			return unlock, err
		}
		if time.Now().After(deadline) {
			return nil, errStockLocked
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, errStockLocked
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// settleLocked makes Redis hold the stock of the campaign's pending stock
// actions, whose Redis step may or may not have run, and marks them
// applied; the caller holds the campaign's loading lock, so no restock and
// no load runs meanwhile. Per amount with pending actions Redis's packets
// (in stock and claimed, each slot counted in one atomic step, a bucketed
// campaign under its rebalancing lease: lua.SettleStock) are compared with
// PostgreSQL's total, and the shortfall, at most what is pending, added.
// It reports whether nothing is pending any more; false with no error
// when the campaign is not in Redis (its load counts the stock from
// PostgreSQL; the next sweep marks the actions).
func (e *Engine) settleLocked(ctx context.Context, k *lua.Keys) (bool, error) {
	pending, totals, err := e.store.PendingStock(ctx, k.ID)
	if err != nil || len(pending) == 0 {
		return err == nil, err
	}
	l, err := e.layoutOf(ctx, k.ID)
	if err != nil {
		return false, err
	}
	want := make(map[int64]int64) // amount -> packets the pending actions add
	ids := make([]int64, 0, len(pending))
	for _, p := range pending {
		want[p.Amount] += p.Count
		ids = append(ids, p.Action)
	}
	added, loaded, err := lua.SettleStock(ctx, e.redis, l, totals, want)
	for amount, n := range added {
		pendingSettled.Add(int(n))
		e.log.Info("pending stock added to redis", "campaign_id", k.ID, "amount", amount, "count", n)
	}
	if len(added) > 0 {
		e.stockBack(k.ID)
	}
	if err != nil || !loaded {
		return false, err
	}
	return true, e.store.MarkStockApplied(ctx, ids)
}

// settle is settleLocked under the campaign's lock, for the sweep; a lock
// held elsewhere leaves the campaign to the next sweep.
func (e *Engine) settle(ctx context.Context, id int64) error {
	k := e.keys.Of(id)
	unlock, err := e.loader.lock(ctx, k)
	if errors.Is(err, errRebuilding) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	_, err = e.settleLocked(ctx, k)
	return err
}

// Claim is a user's claim as Redis holds it.
type Claim struct {
	Amount      int64
	ClaimedAtMs int64
}

// ClaimOf returns user's claim in campaign id as Redis holds it (found
// false: none there), for a claim on its way to PostgreSQL.
func (e *Engine) ClaimOf(ctx context.Context, id int64, user string) (Claim, bool, error) {
	l, err := e.layoutOf(ctx, id)
	if err != nil {
		return Claim{}, false, busyIf(err)
	}
	amount, at, found, err := lua.ClaimOf(ctx, e.redis, l.BucketOf(user).Keys, user)
	if err != nil {
		return Claim{}, false, busyIf(err)
	}
	return Claim{Amount: amount, ClaimedAtMs: at}, found, nil
}

// Campaign reads campaign id from PostgreSQL (a rain.ENOTFOUND error when
// there is none, rain.EBUSY when the database is unavailable).
func (e *Engine) Campaign(ctx context.Context, id int64) (*rain.Campaign, error) {
	c, err := e.loader.campaign(ctx, id)
	if err != nil && rain.ErrorCode(err) != rain.ENOTFOUND {
		e.log.Error("read campaign", "campaign_id", id, "err", err)
		return nil, errDBRead
	}
	return c, err
}

// Live is a campaign's state in Redis.
type Live struct {
	Loaded    bool            // Redis holds it (opens are served)
	Remaining int64           // packets left
	Claims    int64           // users who hold a packet
	ByAmount  map[int64]int64 // packets left per amount
	// A bucketed campaign's parts (K > 1 only): the undealt pool and the
	// packets in transfers not settled, and each bucket.
	PoolLeft, InTransit int64
	Buckets             []BucketLive
}

// BucketLive is one bucket's state.
type BucketLive struct {
	Loaded    bool
	Remaining int64
	Claims    int64
	SoldOut   bool // the global check set its final flag
}

// Live reads campaign c's state in Redis.
func (e *Engine) Live(ctx context.Context, c *rain.Campaign) (Live, error) {
	l, err := e.keys.Layout(c.ID, c.K())
	if err != nil {
		return Live{}, err
	}
	ls, err := lua.ReadBuckets(ctx, e.redis, l)
	if err != nil {
		return Live{}, busyIf(err)
	}
	v := Live{Loaded: ls.Loaded, Remaining: ls.Left, Claims: ls.Claims, ByAmount: ls.Remaining}
	if l.K() > 1 {
		v.PoolLeft, v.InTransit = ls.PoolLeft, ls.Pending
		for _, b := range ls.Buckets {
			v.Buckets = append(v.Buckets, BucketLive{Loaded: b.Loaded, Remaining: b.Left, Claims: b.Claims, SoldOut: b.Final})
		}
	}
	return v, nil
}
