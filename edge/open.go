package edge

import (
	"bytes"
	"context"
	"math/rand/v2"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/valyala/fasthttp"
)

var (
	campaignPrefix = []byte("/campaign/")
	openSuffix     = []byte("/open")
)

// isOpenPath matches /campaign/{id}/open as the router would: any one
// non-empty segment in place of {id}.
func isOpenPath(path []byte) bool {
	if len(path) <= len(campaignPrefix)+len(openSuffix) ||
		!bytes.HasPrefix(path, campaignPrefix) || !bytes.HasSuffix(path, openSuffix) {
		return false
	}
	return bytes.IndexByte(path[len(campaignPrefix):len(path)-len(openSuffix)], '/') < 0
}

// openCampaignID takes the id out of /campaign/{id}/open without the
// router's user values (which box a string per request).
func openCampaignID(path []byte) (int64, bool) {
	path = bytes.TrimPrefix(path, campaignPrefix)
	path = bytes.TrimSuffix(path, openSuffix)
	return rain.ParseCampaignID(path)
}

// open is POST /campaign/{id}/open, the hot path: parse, one Redis round
// trip (claim.lua), a push into the ring, a response built on the stack.
func (s *Server) open(ctx *fasthttp.RequestCtx) {
	id, ok := openCampaignID(ctx.Path())
	if !ok {
		writeError(ctx, errCampaignID)
		return
	}
	user, c, answered := s.openRequest(ctx, id)
	if answered {
		return
	}
	// The cap counts only opens bound for Redis: answers from memory above
	// cost no Redis slot (and two atomics less on their path).
	if s.inflight.Add(1) > int64(s.cfg.MaxInflight) {
		s.inflight.Add(-1)
		claimsBusy.Inc()
		writeBusy(ctx, "too many opens in flight")
		return
	}
	defer s.inflight.Add(-1)
	s.claim(ctx, id, c, user, true)
}

// openRequest reads the open's body and answers it from memory when it
// can. Otherwise it returns the user id, as a string that may outlive the
// request (Redis, the claim event), and the campaign's state (nil while
// Redis has not shown the campaign exists). The parser goes back to its
// pool on the one way out: the user id is a slice of its memory until copied.
func (s *Server) openRequest(ctx *fasthttp.RequestCtx, id int64) (user string, c *hotCampaign, answered bool) {
	p := openParsers.Get()
	defer openParsers.Put(p)
	userID, err := parseOpenBody(p, ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return "", nil, true
	}
	if !s.guard.admitOpen(ctx, id, userID) { // who is opening, and how often (security.go)
		return "", nil, true
	}
	c = s.hot.peek(id)
	if c != nil {
		nowMs := time.Now().UnixMilli()
		if amount, ok := c.claimedAmount(userID, nowMs); ok {
			claimsMemo.Inc()
			claimsByOutcome[rain.AlreadyOpened].Inc()
			writeOutcome(ctx, rain.Result{Outcome: rain.AlreadyOpened, Amount: amount})
			return "", nil, true
		}
		if c.soldOut(userID, nowMs) {
			claimsSoldOutFlag.Inc()
			claimsByOutcome[rain.SoldOut].Inc()
			writeOutcome(ctx, rain.Result{Outcome: rain.SoldOut})
			return "", nil, true
		}
	}
	return string(userID), c, false
}

// confirmLayout reads campaign id's bucket count from Redis and marks the
// state of a campaign of one bucket as checked.
func (s *Server) confirmLayout(id int64) (*lua.Layout, error) {
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	l, loaded, err := s.keys.LayoutOf(ctx, s.redis, id)
	if err != nil {
		return nil, err
	}
	if !loaded || l.K() == 1 {
		if c := s.hot.get(id); c != nil {
			c.checked.Store(true)
		}
		return s.keys.Layout(id, 1)
	}
	return l, nil
}

// claim runs claim.lua for one user and answers. c is the campaign's
// in-process state, nil while Redis has not shown the campaign exists.
// mayRepair is false on the second try after a campaign was loaded from
// PostgreSQL.
func (s *Server) claim(ctx *fasthttp.RequestCtx, id int64, c *hotCampaign, user string, mayRepair bool) {
	// Room for the event is taken before the claim: if the pipeline cannot
	// carry one more, nothing is claimed.
	if !s.ring.Reserve() {
		claimsBusy.Inc()
		writeBusy(ctx, "claim pipeline is full")
		return
	}
	var k *lua.Keys
	if c != nil {
		k = c.keys
	} else { // an id Redis may not know: no state is made for it before the script answers
		k = s.keys.Of(id)
	}
	start := time.Now()
	var res rain.Result
	var err error
	switch {
	case c != nil && c.layout != nil:
		res, err = s.claimBuckets(c, user)
	case c != nil:
		res, err = s.batch.claim(&c.queue, k, user)
	default: // no queue for an id Redis may not know
		res, err = lua.Claim(context.Background(), s.redis, k, user, rand.Uint64())
	}
	if err == nil && res.Outcome == rain.SoldOut && (c == nil || c.layout == nil && !c.checked.Load()) {
		// claim.lua answers SOLD_OUT on the home of a bucketed campaign
		// (its stock is in the buckets): the first SOLD_OUT a state sees
		// reads the campaign's bucket count, once.
		var l *lua.Layout
		if l, err = s.confirmLayout(id); err == nil && l.K() > 1 {
			c = s.hot.getLayout(id, l)
			res, err = s.claimBuckets(c, user)
		}
	}
	redisClaim.UpdateDuration(start)
	if err != nil || res.Outcome != rain.OK {
		s.ring.Release()
	}
	if err != nil {
		claimsError.Inc()
		s.guard.failLog.Warn("claim failed", "campaign_id", id, "err", err)
		writeBusy(ctx, "redis unavailable")
		return
	}
	if res.Outcome == rain.Empty || res.Outcome == rain.Busy {
		claimsBusy.Inc()
		writeBusy(ctx, "campaign stock is being moved; retry shortly")
		return
	}
	if c == nil && res.Outcome != rain.NotFound {
		c = s.hot.get(id)
	}
	switch res.Outcome {
	case rain.OK:
		s.ring.Push(pipeline.Event{CampaignID: id, UserID: user, Amount: res.Amount, ClaimedAt: res.ClaimedAt})
		s.hot.remember(c, user, res)
	case rain.AlreadyOpened:
		s.hot.remember(c, user, res)
	case rain.SoldOut:
		b := 0 // the reply counts the claims of the user's bucket
		if c.layout != nil {
			b = lua.BucketOf(id, user, c.layout.K())
		}
		s.hot.markSoldOut(c, res, b)
	}
	if res.Outcome == rain.NotFound && mayRepair {
		s.openUnloaded(ctx, id, user)
		return
	}
	claimsByOutcome[res.Outcome].Inc()
	writeOutcome(ctx, res)
}
