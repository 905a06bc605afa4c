package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
)

// The 503s of an open: nothing was claimed (or, for errRedis, the outcome
// is unknown: a retry finds the claim if it was made). Made once, so the
// hot path allocates none.
var (
	errInflight   = rain.Errorf(rain.EBUSY, "too many opens in flight")
	errRingFull   = rain.Errorf(rain.EBUSY, "claim pipeline is full")
	errRedis      = rain.Errorf(rain.EBUSY, "redis unavailable")
	errMoving     = rain.Errorf(rain.EBUSY, "campaign stock is being moved; retry shortly")
	errRepairBusy = rain.Errorf(rain.EBUSY, "campaign is being loaded; retry shortly")
	// errNotAcked (REDIS_ACK=replica): the claims stand on the master, no
	// replica had them in time; a retry is answered 409 with the amount
	// if the claim survives, and may claim afresh if it does not.
	errNotAcked = rain.Errorf(rain.EBUSY, "claim not yet on a replica; retry")
)

// Open decides user's open of campaign id: from memory when it can (a
// repeat this process has seen, a flood of a sold-out campaign), else by
// the claim script in Redis, after room for the claim's event is taken in
// the ring. user may be a slice of a request's buffer: it is copied only
// when it must outlive the call. An error is a rain.EBUSY one: nothing was
// claimed, or the outcome is unknown (a retry finds it).
func (e *Engine) Open(id int64, user []byte) (rain.Result, error) {
	c := e.hot.peek(id)
	if c != nil {
		nowMs := time.Now().UnixMilli()
		if amount, ok := c.claimedAmount(user, nowMs); ok {
			claimsMemo.Inc()
			claimsByOutcome[rain.AlreadyOpened].Inc()
			c.live.add(answerAlreadyOpened)
			return rain.Result{Outcome: rain.AlreadyOpened, Amount: amount}, nil
		}
		if c.soldOut(user, nowMs) {
			claimsSoldOutFlag.Inc()
			claimsByOutcome[rain.SoldOut].Inc()
			c.live.add(answerSoldOut)
			return rain.Result{Outcome: rain.SoldOut}, nil
		}
	}
	// The cap counts only opens bound for Redis: answers from memory above
	// cost no Redis slot (and two atomics less on their path).
	if e.inflight.Add(1) > int64(e.cfg.MaxInflight) {
		e.inflight.Add(-1)
		claimsBusy.Inc()
		if c != nil {
			c.live.add(answerBusy)
		}
		return rain.Result{}, errInflight
	}
	defer e.inflight.Add(-1)
	res, err := e.claim(id, c, string(user), true)
	if c == nil { // the campaign's first opens here: its state may be new
		c = e.hot.peek(id)
	}
	if c != nil {
		c.live.record(res, err)
	}
	return res, err
}

// claim runs the claim script for one user. c is the campaign's
// in-process state, nil while Redis has not shown the campaign exists.
// mayRepair is false on the second try after a campaign was loaded from
// PostgreSQL.
func (e *Engine) claim(id int64, c *hotCampaign, user string, mayRepair bool) (rain.Result, error) {
	// Room for the event is taken before the claim: if the pipeline cannot
	// carry one more, nothing is claimed.
	if !e.ring.Reserve() {
		claimsBusy.Inc()
		return rain.Result{}, errRingFull
	}
	if c == nil {
		// The catalog knows every campaign's bucket count (PostgreSQL's):
		// a bucketed campaign gets its state of K buckets before its first
		// claim call.
		if w, found, _, _ := e.catalog.lookup(id); found && w.buckets > 1 {
			c = e.hot.getBuckets(id, int(w.buckets))
		}
	}
	start := time.Now()
	var res rain.Result
	var err error
	switch {
	case c != nil && c.layout != nil:
		res, err = e.claimBuckets(c, user)
	case c != nil:
		res, err = e.batch.claim(&c.queue, c.keys, user)
	default: // an id Redis may not know: no queue, no state made for it before the script answers
		res, err = lua.Claim(context.Background(), e.redis, e.keys.Of(id), user, rand.Uint64())
	}
	if err == nil && res.Outcome == rain.Bucketed {
		// The home of a campaign this process did not know to be bucketed
		// (created through another replica a moment ago) says how many
		// buckets it has: a campaign keeps its count for life.
		if c = e.hot.getBuckets(id, int(res.Buckets)); c == nil || c.layout == nil {
			err = fmt.Errorf("campaign %d: home says %d buckets", id, res.Buckets)
		} else {
			res, err = e.claimBuckets(c, user)
		}
	}
	redisClaim.UpdateDuration(start)
	if err != nil || res.Outcome != rain.OK {
		e.ring.Release()
	}
	if errors.Is(err, lua.ErrNotAcked) {
		// Nothing is promised, nothing goes to the ring: a claim that
		// stands reaches claim_log through the reconciler.
		claimsNotAcked.Inc()
		return rain.Result{}, errNotAcked
	}
	if err != nil {
		claimsError.Inc()
		e.failLog.Warn("claim failed", "campaign_id", id, "err", err)
		return rain.Result{}, errRedis
	}
	if res.Outcome == rain.Empty || res.Outcome == rain.Busy {
		if res.Outcome == rain.Busy {
			// Frozen for a rebuild: if the process rebuilding it died, only
			// a rebuild started here thaws it (the loading lock keeps it
			// to one at a time).
			e.repairAsync(id)
		}
		claimsBusy.Inc()
		return rain.Result{}, errMoving
	}
	if c == nil && res.Outcome != rain.NotFound {
		c = e.hot.get(id)
	}
	switch res.Outcome {
	case rain.OK:
		e.ring.Push(pipeline.Event{CampaignID: id, UserID: user, Amount: res.Amount, ClaimedAt: res.ClaimedAt})
		e.hot.remember(c, user, res)
	case rain.AlreadyOpened:
		e.hot.remember(c, user, res)
	case rain.SoldOut:
		b := 0 // the reply counts the claims of the user's bucket
		if c.layout != nil {
			b = c.layout.BucketOf(user).Index
		}
		e.hot.markSoldOut(c, res, b)
	case rain.NotFound:
		if mayRepair {
			return e.openUnloaded(id, user)
		}
	}
	claimsByOutcome[res.Outcome].Inc()
	return res, nil
}

// repairAsync lays campaign id out again from PostgreSQL in the
// background (a lost part of a bucketed campaign, keys of another row),
// behind the catalog's repair slots: at most one per id at a time, and no
// sooner than repairRetry after a failed one.
func (e *Engine) repairAsync(id int64) {
	done, ok := e.catalog.startRepair(id)
	if !ok {
		return
	}
	go func() {
		defer RecoverGoroutine(e.failLog, "campaign repair")
		_, err := e.repair(id)
		done(err == nil)
		if err != nil && rain.ErrorCode(err) != rain.EBUSY {
			e.failLog.Warn("campaign repair failed", "campaign_id", id, "err", err)
		}
	}()
}
