package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/redpacket/rain/loadtest/harness"
)

// The invariants the checker verifies after each scenario, in table order
// (the durability model: nothing acknowledged is lost, nothing is claimed twice).
const (
	InvAcked    = "200→log"   // every 200 the driver saw is in claim_log once, with its amount
	InvOneClaim = "1/user"    // no user got two packets; every 409 names the user's one amount
	InvRetries  = "retries"   // a retry after no answer gets the original result
	InvOpened   = "opened"    // per amount, opened_count = rows in claim_log
	InvStock    = "stock"     // per amount, Redis remaining + Redis claims = total
	InvRedisLog = "redis=log" // claim_log holds exactly the claims Redis holds
	InvRestock  = "restock"   // a restock under the fault adds once and serves a sold-out campaign again
	InvEnd      = "end"       // an end under the fault: ENDED after it, no claim after it, earlier claims stand
	InvAnswers  = "answers"   // no 5xx but the designed 503 BUSY; nothing unexpected
)

// Invariants lists the invariants in table order.
var Invariants = []string{InvAcked, InvOneClaim, InvRetries, InvOpened, InvStock, InvRedisLog, InvRestock, InvEnd, InvAnswers, harness.InvAlive}

// CheckOptions tune what the checker tolerates.
type CheckOptions struct {
	// Tolerate503Claims turns "a 503 had claimed" into a warning: when Redis
	// goes away with a script's reply in flight the api cannot tell whether
	// the claim was made and answers 503.
	Tolerate503Claims bool
	// NoAnswerOK: the api may not answer (it is killed in the scenario).
	// Otherwise an open with no answer breaks InvAnswers: the api must keep
	// answering, with 503 if it cannot claim.
	NoAnswerOK bool
	// Actions are the merchant's requests during the load (merchant.go):
	// InvRestock and InvEnd check them; without one of a kind its verdict
	// is left out.
	Actions []*harness.Action
}

// Check compares the driver's records with the state of the campaigns they
// opened and returns one verdict per invariant but InvAlive (the runner's),
// InvRestock and InvEnd only when opts has an action of their kind.
// It is pure: everything it needs is in its arguments.
func Check(recs []harness.Record, states []*harness.CampaignState, opts CheckOptions) []harness.Verdict {
	c := &checker{opts: opts, recs: recs, statuses: map[string]int{}, byCampaign: make(map[int64]*harness.CampaignState, len(states)),
		ended: map[int64]bool{}, restocked: map[int64]bool{}}
	for _, st := range states {
		c.byCampaign[st.ID] = st
	}
	for _, a := range opts.Actions {
		switch a.Kind {
		case harness.ActionEnd:
			c.ended[a.Campaign] = true
		case harness.ActionRestock:
			c.restocked[a.Campaign] = true
		}
	}
	for i := range recs {
		c.answer(&recs[i])
	}
	users := harness.Histories(recs)
	for _, h := range users {
		if st := c.byCampaign[h[0].Campaign]; st != nil {
			c.user(st, h)
		}
	}
	for _, st := range states {
		c.campaign(st)
	}
	c.merchant()
	c.buckets(states)
	if c.statuses["200"] == 0 {
		c.answers.Fail("no open was answered 200: the run tested nothing")
	}
	return c.verdicts(len(users))
}

// checker holds a check in progress: a tally per invariant and the
// counts the verdicts' details report.
type checker struct {
	opts       CheckOptions
	recs       []harness.Record
	byCampaign map[int64]*harness.CampaignState
	statuses   map[string]int // answers by statusKey
	ended      map[int64]bool // campaigns a merchant ended during the load
	restocked  map[int64]bool // ... and restocked

	acked, oneClaim, retries, opened, stock, redisLog, restock, end, answers, bucketed harness.Tally

	nBucketed, nBucketClaims, nBucketsTouched int // bucketed campaigns; their claims; buckets holding one

	nAcked         int // users told of a claim
	nRetried       int // users who retried after no answer or a 503
	nUnknown       int // ... after no answer
	nClaimedUnseen int // ... whose attempt with no answer had claimed
	nNotClaimed    int // ... whose attempt with no answer had not
	nUnresolved    int // ... who never got an answer
	nToldNothing   int // users holding a claim no 200 or 409 told them of
	nVerified      int // re-opens after the run
	nVerified409   int // ... answered 409
	logRows        int
	redisClaims    int
	amounts        int // amounts checked, over all campaigns

	nRestocks, nSoldBefore, nServedAgain                      int // restocks; 410s before them; 200s after
	nEnds, nEnded, nAfterEnd, nAfterEndBusy, nClaimsBeforeEnd int // ends; ENDED answers; opens after an end (503 or none)
}

// answer checks one record's answer against what the api may say (InvAnswers).
func (c *checker) answer(r *harness.Record) {
	st := c.byCampaign[r.Campaign]
	c.statuses[harness.StatusKey(r)]++
	switch {
	case st == nil:
		c.answers.Fail("%s: campaign %d is not one of the run's", r.User, r.Campaign)
	case !r.Answered():
		if !c.opts.NoAnswerOK {
			c.answers.Fail("%s (%s #%d, campaign %d) at %dms: no answer (%s)", r.User, r.Kind, r.Attempt, r.Campaign, r.AtMs, r.Err)
		}
	case r.Status == 200 && r.Code == "OK", r.Status == 409 && r.Code == "ALREADY_OPENED", r.Busy():
	case r.Status == 410 && r.Code == "SOLD_OUT" && st.SoldOutOK:
	case r.Status == 400 && r.Code == "ENDED" && c.ended[r.Campaign]: // when: InvEnd
	default:
		c.answers.Fail("%s (%s #%d, campaign %d): %d %s", r.User, r.Kind, r.Attempt, r.Campaign, r.Status, r.Code)
	}
}

// user checks one user's history, in attempt order, against the stores:
// what the user was told is in claim_log (InvAcked), one claim and one
// amount (InvOneClaim), and retries (InvRetries).
func (c *checker) user(st *harness.CampaignState, h []*harness.Record) {
	user := h[0].User
	logAmount, inLog := st.Log[user]
	var oks []*harness.Record
	amounts := map[int64]bool{}
	for _, r := range h {
		if r.Kind == harness.KindVerify {
			c.nVerified++
		}
		switch r.Status {
		case 200:
			oks = append(oks, r)
			amounts[r.Amount] = true
		case 409:
			amounts[r.Amount] = true
			if inLog && r.Amount != logAmount {
				c.oneClaim.Fail("%s: 409 with amount %d, claim_log has %d", user, r.Amount, logAmount)
			}
			if r.Kind == harness.KindVerify {
				c.nVerified409++
			}
		case 410:
			if amount, ok := st.ClaimAmount(user); ok {
				// "Already opened" is checked before stock, and the api's
				// sold-out answers from memory keep that order, so a
				// claimant must get 409.
				c.oneClaim.Fail("%s (%s #%d): 410 SOLD_OUT though the user holds a claim (amount %d)", user, r.Kind, r.Attempt, amount)
			}
		}
	}
	// The claim the api told the user of: the first 200, else a 409.
	if told := harness.FirstClaim(h); told != nil {
		c.nAcked++
		switch {
		case !inLog:
			c.acked.Fail("%s (campaign %d): %d amount %d at %dms, not in claim_log", user, st.ID, told.Status, told.Amount, told.AtMs)
		case logAmount != told.Amount:
			c.acked.Fail("%s (campaign %d): %d amount %d, claim_log has %d", user, st.ID, told.Status, told.Amount, logAmount)
		}
	}
	if len(oks) > 1 {
		c.oneClaim.Fail("%s: %d answers 200 (amounts %v)", user, len(oks), harness.AmountsOf(oks))
	}
	if len(amounts) > 1 {
		c.oneClaim.Fail("%s: answers name amounts %v", user, slices.Sorted(maps.Keys(amounts)))
	}
	if h[0].Status == 409 {
		c.oneClaim.Fail("%s: 409 on the first open of a new user (amount %d)", user, h[0].Amount)
	}
	c.retry(st, h, len(oks) > 0)
}

// retry checks what came after an attempt with no answer or a 503
// (InvRetries): a retry gets the original result, and a claim no 200 made
// came from an attempt with no answer, never from a 503 (which promises
// that nothing was claimed).
func (c *checker) retry(st *harness.CampaignState, h []*harness.Record, got200 bool) {
	user := h[0].User
	if r, unknown, busy := harness.FirstResolution(h); unknown || busy {
		c.nRetried++
		if unknown {
			c.nUnknown++
		}
		switch {
		case r == nil:
			if unknown {
				c.nUnresolved++
			}
		case r.Status == 409:
			if unknown {
				c.nClaimedUnseen++ // an attempt with no answer had claimed
			}
			if want, ok := st.ClaimAmount(user); ok && want != r.Amount {
				c.retries.Fail("%s: retry got 409 with amount %d, the claim is %d", user, r.Amount, want)
			}
		case r.Status == 200:
			if unknown {
				c.nNotClaimed++
			}
		}
	}
	amount, holds := st.ClaimAmount(user)
	if !holds || got200 {
		return
	}
	if harness.FirstClaim(h) == nil {
		c.nToldNothing++
	}
	if !harness.HasNoAnswer(h) {
		msg := "%s: holds a claim (amount %d) though every open was answered, none 200 (%s): a 503 had claimed"
		if c.opts.Tolerate503Claims {
			c.retries.Warnf(msg, user, amount, harness.AnswersOf(h))
		} else {
			c.retries.Fail(msg, user, amount, harness.AnswersOf(h))
		}
	}
}

// campaign checks one campaign's counters and stores: opened_count per
// amount (InvOpened), Redis stock (InvStock) and Redis against claim_log
// (InvRedisLog).
func (c *checker) campaign(st *harness.CampaignState) {
	c.logRows += st.LogRows
	c.redisClaims += len(st.Redis)
	if st.LogRows != len(st.Log) {
		c.oneClaim.Fail("campaign %d: claim_log has %d rows for %d users", st.ID, st.LogRows, len(st.Log))
	}
	logBy, redisBy := harness.CountBy(st.Log), harness.CountBy(st.Redis)
	for _, a := range slices.Sorted(maps.Keys(st.Total)) {
		c.amounts++
		if st.Opened[a] != logBy[a] {
			c.opened.Fail("campaign %d amount %d: opened_count %d, claim_log rows %d", st.ID, a, st.Opened[a], logBy[a])
		}
		// Packets in a transfer not yet credited are in no part: while one
		// is in flight (Pending) the sum may fall short, never exceed.
		if sum := st.Remaining[a] + redisBy[a]; sum > st.Total[a] || (sum != st.Total[a] && st.Pending == 0) || st.Remaining[a] < 0 {
			c.stock.Fail("campaign %d amount %d: remaining %d + claimed %d != total %d", st.ID, a, st.Remaining[a], redisBy[a], st.Total[a])
		}
	}
	for a, n := range logBy {
		if _, ok := st.Total[a]; !ok {
			c.opened.Fail("campaign %d: %d claim_log rows with amount %d, not in the inventory", st.ID, n, a)
		}
	}
	for a, n := range st.Remaining {
		if _, ok := st.Total[a]; !ok {
			c.stock.Fail("campaign %d: Redis stock has amount %d (%d left), not in the inventory", st.ID, a, n)
		}
	}
	for a, n := range redisBy {
		if _, ok := st.Total[a]; !ok {
			c.stock.Fail("campaign %d: %d Redis claims with amount %d, not in the inventory", st.ID, n, a)
		}
	}
	if !st.Loaded {
		c.stock.Fail("campaign %d: not loaded in Redis (no meta hash)", st.ID)
	}
	left := int64(0)
	for _, n := range st.Remaining {
		left += n
	}
	if left > 0 && !c.restocked[st.ID] { // a restocked campaign's 410s: InvRestock
		for _, r := range c.recs {
			if r.Campaign == st.ID && r.Status == 410 {
				c.stock.Fail("campaign %d: answered 410 SOLD_OUT (%s at %dms) but %d packets are left", st.ID, r.User, r.AtMs, left)
				break
			}
		}
	}
	for _, u := range slices.Sorted(maps.Keys(st.Redis)) {
		la, ok := st.Log[u]
		switch {
		case !ok:
			c.redisLog.Fail("campaign %d: %s (amount %d) is in Redis, not in claim_log", st.ID, u, st.Redis[u])
		case la != st.Redis[u]:
			c.redisLog.Fail("campaign %d: %s has amount %d in Redis, %d in claim_log", st.ID, u, st.Redis[u], la)
		}
	}
	for _, u := range slices.Sorted(maps.Keys(st.Log)) {
		if _, ok := st.Redis[u]; !ok {
			c.redisLog.Fail("campaign %d: %s (amount %d) is in claim_log, not in Redis", st.ID, u, st.Log[u])
		}
	}
}

// verdicts sums the tallies up, in table order.
func (c *checker) verdicts(users int) []harness.Verdict {
	out := []harness.Verdict{
		c.acked.Verdict(InvAcked, c.nAcked, fmt.Sprintf("%d users told of a claim (200, or 409 only); %d not in claim_log with that amount", c.nAcked, c.acked.Bad)),
		c.oneClaim.Verdict(InvOneClaim, users, fmt.Sprintf("%d users; %d of %d re-opens after the run answered 409; %d violations, %d tolerated", users, c.nVerified409, c.nVerified, c.oneClaim.Bad, c.oneClaim.Warned)),
		c.retries.Verdict(InvRetries, c.nRetried, fmt.Sprintf("%d users retried after no answer or 503; %d had no answer: %d had claimed (409 later), %d had not (200 later), %d never answered; %d hold a claim they were never told of (no 200 or 409); %d violations, %d tolerated",
			c.nRetried, c.nUnknown, c.nClaimedUnseen, c.nNotClaimed, c.nUnresolved, c.nToldNothing, c.retries.Bad, c.retries.Warned)),
		c.opened.Verdict(InvOpened, c.logRows, fmt.Sprintf("%d amounts, %d claim_log rows; %d mismatches", c.amounts, c.logRows, c.opened.Bad)),
		c.stock.Verdict(InvStock, c.amounts, fmt.Sprintf("%d amounts, %d Redis claims; %d mismatches", c.amounts, c.redisClaims, c.stock.Bad)),
		c.redisLog.Verdict(InvRedisLog, c.redisClaims, fmt.Sprintf("%d in Redis, %d in claim_log; %d differences", c.redisClaims, c.logRows, c.redisLog.Bad)),
	}
	out = append(out, c.merchantVerdicts()...)
	if c.nBucketed > 0 {
		out = append(out, c.bucketVerdict())
	}
	return append(out, c.answers.Verdict(InvAnswers, len(c.recs), fmt.Sprintf("%s; %d unexpected", harness.FormatStatuses(c.statuses), c.answers.Bad)))
}
