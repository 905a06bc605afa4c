package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
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
	InvAlive    = "alive"     // every process came back; no panic; services up
)

// Invariants lists the invariants in table order.
var Invariants = []string{InvAcked, InvOneClaim, InvRetries, InvOpened, InvStock, InvRedisLog, InvRestock, InvEnd, InvAnswers, InvAlive}

// Verdict is the result of one invariant in one scenario.
type Verdict struct {
	Name     string   `json:"name"`
	OK       bool     `json:"ok"`
	Warn     bool     `json:"warn,omitempty"` // failed, but in a documented window: does not fail the run
	Short    string   `json:"short"`          // the number the table shows
	Detail   string   `json:"detail"`         // the numbers behind it
	Examples []string `json:"examples,omitempty"`
}

// Failed reports whether the verdict fails the run.
func (v Verdict) Failed() bool { return !v.OK && !v.Warn }

// CampaignState is what PostgreSQL and Redis hold for one campaign once a
// scenario is over.
type CampaignState struct {
	ID        int64
	Label     string           // what the campaign is for ("big", "small")
	SoldOutOK bool             // the campaign may sell out: 410 is an expected answer
	Total     map[int64]int64  // campaign_inventory.total_count per amount
	Opened    map[int64]int64  // campaign_inventory.opened_count per amount
	Log       map[string]int64 // claim_log: user → amount
	LogRows   int              // rows read from claim_log (above len(Log): a user twice)
	Loaded    bool             // Redis has the campaign (its meta hash)
	Remaining map[int64]int64  // Redis stock hash: amount → remaining (sold-out amounts absent)
	Redis     map[string]int64 // Redis claims hash: user → amount
	// What the merchant checks read (checkmerchant.go).
	LogAt        map[string]int64 // claim_log.claimed_at, unix ms, per user
	RedisAt      map[string]int64 // the claimed_at of the Redis claims, unix ms, per user
	EndMs        int64            // campaign.end_time, unix ms
	EndedEarly   bool             // campaign.ended_at is set (a merchant ended it)
	StockActions int              // stock actions in campaign_action
	PendingStock int              // ... of which Redis is not known to have (applied_at null)
	// A bucketed campaign (K > 1): Remaining and Redis are the sums over the
	// pool and the buckets; these are the parts (checkbuckets.go).
	K            int              // buckets (1: today's layout)
	ClaimBuckets map[string][]int // user → the buckets whose claims hash holds them
	BucketClaims []BucketClaim    // every claim as found, bucket by bucket
	BucketLeft   []int64          // packets left per bucket
	PoolLeft     int64            // packets left in the pool
	Pending      int64            // transfers taken and not yet credited (packets in transit)
}

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
	Actions []*Action
}

// maxExamples bounds the examples kept per invariant.
const maxExamples = 5

// tally counts violations of one invariant and keeps a few examples.
type tally struct {
	bad      int
	warn     int
	examples []string
}

func (t *tally) fail(format string, args ...any) {
	t.bad++
	t.note(format, args...)
}

func (t *tally) warnf(format string, args ...any) {
	t.warn++
	t.note(format, args...)
}

func (t *tally) note(format string, args ...any) {
	if len(t.examples) < maxExamples {
		t.examples = append(t.examples, fmt.Sprintf(format, args...))
	}
}

// verdict sums up the tally; n is what was checked (the table shows it
// when all is well, else the number of violations).
func (t *tally) verdict(name string, n int, detail string) Verdict {
	v := Verdict{Name: name, OK: t.bad == 0 && t.warn == 0, Warn: t.bad == 0 && t.warn > 0,
		Short: fmt.Sprint(n), Detail: detail, Examples: t.examples}
	switch {
	case t.bad > 0:
		v.Short = fmt.Sprintf("%d bad", t.bad)
	case t.warn > 0:
		v.Short = fmt.Sprintf("%d tolerated", t.warn)
	}
	return v
}

// Check compares the driver's records with the state of the campaigns they
// opened and returns one verdict per invariant but InvAlive (the runner's),
// InvRestock and InvEnd only when opts has an action of their kind.
// It is pure: everything it needs is in its arguments.
func Check(recs []Record, states []*CampaignState, opts CheckOptions) []Verdict {
	c := &checker{opts: opts, recs: recs, statuses: map[string]int{}, byCampaign: make(map[int64]*CampaignState, len(states)),
		ended: map[int64]bool{}, restocked: map[int64]bool{}}
	for _, st := range states {
		c.byCampaign[st.ID] = st
	}
	for _, a := range opts.Actions {
		switch a.Kind {
		case ActionEnd:
			c.ended[a.Campaign] = true
		case ActionRestock:
			c.restocked[a.Campaign] = true
		}
	}
	for i := range recs {
		c.answer(&recs[i])
	}
	users := histories(recs)
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
		c.answers.fail("no open was answered 200: the run tested nothing")
	}
	return c.verdicts(len(users))
}

// checker holds a check in progress: a tally per invariant and the
// counts the verdicts' details report.
type checker struct {
	opts       CheckOptions
	recs       []Record
	byCampaign map[int64]*CampaignState
	statuses   map[string]int // answers by statusKey
	ended      map[int64]bool // campaigns a merchant ended during the load
	restocked  map[int64]bool // ... and restocked

	acked, oneClaim, retries, opened, stock, redisLog, restock, end, answers, bucketed tally

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
func (c *checker) answer(r *Record) {
	st := c.byCampaign[r.Campaign]
	c.statuses[statusKey(r)]++
	switch {
	case st == nil:
		c.answers.fail("%s: campaign %d is not one of the run's", r.User, r.Campaign)
	case !r.Answered():
		if !c.opts.NoAnswerOK {
			c.answers.fail("%s (%s #%d, campaign %d) at %dms: no answer (%s)", r.User, r.Kind, r.Attempt, r.Campaign, r.AtMs, r.Err)
		}
	case r.Status == 200 && r.Code == "OK", r.Status == 409 && r.Code == "ALREADY_OPENED", r.Busy():
	case r.Status == 410 && r.Code == "SOLD_OUT" && st.SoldOutOK:
	case r.Status == 400 && r.Code == "ENDED" && c.ended[r.Campaign]: // when: InvEnd
	default:
		c.answers.fail("%s (%s #%d, campaign %d): %d %s", r.User, r.Kind, r.Attempt, r.Campaign, r.Status, r.Code)
	}
}

// user checks one user's history, in attempt order, against the stores:
// what the user was told is in claim_log (InvAcked), one claim and one
// amount (InvOneClaim), and retries (InvRetries).
func (c *checker) user(st *CampaignState, h []*Record) {
	user := h[0].User
	logAmount, inLog := st.Log[user]
	var oks []*Record
	amounts := map[int64]bool{}
	for _, r := range h {
		if r.Kind == KindVerify {
			c.nVerified++
		}
		switch r.Status {
		case 200:
			oks = append(oks, r)
			amounts[r.Amount] = true
		case 409:
			amounts[r.Amount] = true
			if inLog && r.Amount != logAmount {
				c.oneClaim.fail("%s: 409 with amount %d, claim_log has %d", user, r.Amount, logAmount)
			}
			if r.Kind == KindVerify {
				c.nVerified409++
			}
		case 410:
			if amount, ok := claimAmount(st, user); ok {
				// "Already opened" is checked before stock, and the api's
				// sold-out answers from memory keep that order, so a
				// claimant must get 409.
				c.oneClaim.fail("%s (%s #%d): 410 SOLD_OUT though the user holds a claim (amount %d)", user, r.Kind, r.Attempt, amount)
			}
		}
	}
	// The claim the api told the user of: the first 200, else a 409.
	if told := firstClaim(h); told != nil {
		c.nAcked++
		switch {
		case !inLog:
			c.acked.fail("%s (campaign %d): %d amount %d at %dms, not in claim_log", user, st.ID, told.Status, told.Amount, told.AtMs)
		case logAmount != told.Amount:
			c.acked.fail("%s (campaign %d): %d amount %d, claim_log has %d", user, st.ID, told.Status, told.Amount, logAmount)
		}
	}
	if len(oks) > 1 {
		c.oneClaim.fail("%s: %d answers 200 (amounts %v)", user, len(oks), amountsOf(oks))
	}
	if len(amounts) > 1 {
		c.oneClaim.fail("%s: answers name amounts %v", user, slices.Sorted(maps.Keys(amounts)))
	}
	if h[0].Status == 409 {
		c.oneClaim.fail("%s: 409 on the first open of a new user (amount %d)", user, h[0].Amount)
	}
	c.retry(st, h, len(oks) > 0)
}

// retry checks what came after an attempt with no answer or a 503
// (InvRetries): a retry gets the original result, and a claim no 200 made
// came from an attempt with no answer, never from a 503 (which promises
// that nothing was claimed).
func (c *checker) retry(st *CampaignState, h []*Record, got200 bool) {
	user := h[0].User
	if r, unknown, busy := firstResolution(h); unknown || busy {
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
			if want, ok := claimAmount(st, user); ok && want != r.Amount {
				c.retries.fail("%s: retry got 409 with amount %d, the claim is %d", user, r.Amount, want)
			}
		case r.Status == 200:
			if unknown {
				c.nNotClaimed++
			}
		}
	}
	amount, holds := claimAmount(st, user)
	if !holds || got200 {
		return
	}
	if firstClaim(h) == nil {
		c.nToldNothing++
	}
	if !hasNoAnswer(h) {
		msg := "%s: holds a claim (amount %d) though every open was answered, none 200 (%s): a 503 had claimed"
		if c.opts.Tolerate503Claims {
			c.retries.warnf(msg, user, amount, answersOf(h))
		} else {
			c.retries.fail(msg, user, amount, answersOf(h))
		}
	}
}

// campaign checks one campaign's counters and stores: opened_count per
// amount (InvOpened), Redis stock (InvStock) and Redis against claim_log
// (InvRedisLog).
func (c *checker) campaign(st *CampaignState) {
	c.logRows += st.LogRows
	c.redisClaims += len(st.Redis)
	if st.LogRows != len(st.Log) {
		c.oneClaim.fail("campaign %d: claim_log has %d rows for %d users", st.ID, st.LogRows, len(st.Log))
	}
	logBy, redisBy := countBy(st.Log), countBy(st.Redis)
	for _, a := range slices.Sorted(maps.Keys(st.Total)) {
		c.amounts++
		if st.Opened[a] != logBy[a] {
			c.opened.fail("campaign %d amount %d: opened_count %d, claim_log rows %d", st.ID, a, st.Opened[a], logBy[a])
		}
		// Packets in a transfer not yet credited are in no part: while one
		// is in flight (Pending) the sum may fall short, never exceed.
		if sum := st.Remaining[a] + redisBy[a]; sum > st.Total[a] || (sum != st.Total[a] && st.Pending == 0) || st.Remaining[a] < 0 {
			c.stock.fail("campaign %d amount %d: remaining %d + claimed %d != total %d", st.ID, a, st.Remaining[a], redisBy[a], st.Total[a])
		}
	}
	for a, n := range logBy {
		if _, ok := st.Total[a]; !ok {
			c.opened.fail("campaign %d: %d claim_log rows with amount %d, not in the inventory", st.ID, n, a)
		}
	}
	for a, n := range st.Remaining {
		if _, ok := st.Total[a]; !ok {
			c.stock.fail("campaign %d: Redis stock has amount %d (%d left), not in the inventory", st.ID, a, n)
		}
	}
	for a, n := range redisBy {
		if _, ok := st.Total[a]; !ok {
			c.stock.fail("campaign %d: %d Redis claims with amount %d, not in the inventory", st.ID, n, a)
		}
	}
	if !st.Loaded {
		c.stock.fail("campaign %d: not loaded in Redis (no meta hash)", st.ID)
	}
	left := int64(0)
	for _, n := range st.Remaining {
		left += n
	}
	if left > 0 && !c.restocked[st.ID] { // a restocked campaign's 410s: InvRestock
		for _, r := range c.recs {
			if r.Campaign == st.ID && r.Status == 410 {
				c.stock.fail("campaign %d: answered 410 SOLD_OUT (%s at %dms) but %d packets are left", st.ID, r.User, r.AtMs, left)
				break
			}
		}
	}
	for _, u := range slices.Sorted(maps.Keys(st.Redis)) {
		la, ok := st.Log[u]
		switch {
		case !ok:
			c.redisLog.fail("campaign %d: %s (amount %d) is in Redis, not in claim_log", st.ID, u, st.Redis[u])
		case la != st.Redis[u]:
			c.redisLog.fail("campaign %d: %s has amount %d in Redis, %d in claim_log", st.ID, u, st.Redis[u], la)
		}
	}
	for _, u := range slices.Sorted(maps.Keys(st.Log)) {
		if _, ok := st.Redis[u]; !ok {
			c.redisLog.fail("campaign %d: %s (amount %d) is in claim_log, not in Redis", st.ID, u, st.Log[u])
		}
	}
}

// verdicts sums the tallies up, in table order.
func (c *checker) verdicts(users int) []Verdict {
	out := []Verdict{
		c.acked.verdict(InvAcked, c.nAcked, fmt.Sprintf("%d users told of a claim (200, or 409 only); %d not in claim_log with that amount", c.nAcked, c.acked.bad)),
		c.oneClaim.verdict(InvOneClaim, users, fmt.Sprintf("%d users; %d of %d re-opens after the run answered 409; %d violations, %d tolerated", users, c.nVerified409, c.nVerified, c.oneClaim.bad, c.oneClaim.warn)),
		c.retries.verdict(InvRetries, c.nRetried, fmt.Sprintf("%d users retried after no answer or 503; %d had no answer: %d had claimed (409 later), %d had not (200 later), %d never answered; %d hold a claim they were never told of (no 200 or 409); %d violations, %d tolerated",
			c.nRetried, c.nUnknown, c.nClaimedUnseen, c.nNotClaimed, c.nUnresolved, c.nToldNothing, c.retries.bad, c.retries.warn)),
		c.opened.verdict(InvOpened, c.logRows, fmt.Sprintf("%d amounts, %d claim_log rows; %d mismatches", c.amounts, c.logRows, c.opened.bad)),
		c.stock.verdict(InvStock, c.amounts, fmt.Sprintf("%d amounts, %d Redis claims; %d mismatches", c.amounts, c.redisClaims, c.stock.bad)),
		c.redisLog.verdict(InvRedisLog, c.redisClaims, fmt.Sprintf("%d in Redis, %d in claim_log; %d differences", c.redisClaims, c.logRows, c.redisLog.bad)),
	}
	out = append(out, c.merchantVerdicts()...)
	if c.nBucketed > 0 {
		out = append(out, c.bucketVerdict())
	}
	return append(out, c.answers.verdict(InvAnswers, len(c.recs), fmt.Sprintf("%s; %d unexpected", formatStatuses(c.statuses), c.answers.bad)))
}

// histories groups the records by campaign and user, each in attempt order.
func histories(recs []Record) [][]*Record {
	type key struct {
		c int64
		u string
	}
	idx := make(map[key]int)
	var out [][]*Record
	for i := range recs {
		k := key{recs[i].Campaign, recs[i].User}
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, nil)
		}
		out[j] = append(out[j], &recs[i])
	}
	for _, h := range out {
		sort.SliceStable(h, func(a, b int) bool { return h[a].Attempt < h[b].Attempt })
	}
	return out
}

// claimAmount is the user's claim as the stores hold it: claim_log first,
// else Redis.
func claimAmount(st *CampaignState, user string) (int64, bool) {
	if a, ok := st.Log[user]; ok {
		return a, true
	}
	a, ok := st.Redis[user]
	return a, ok
}

// firstClaim is the first 200 of a history, else its first 409, else nil.
func firstClaim(h []*Record) *Record {
	var first409 *Record
	for _, r := range h {
		switch {
		case r.Status == 200:
			return r
		case r.Status == 409 && first409 == nil:
			first409 = r
		}
	}
	return first409
}

// hasNoAnswer reports whether an attempt of h got no answer.
func hasNoAnswer(h []*Record) bool {
	for _, r := range h {
		if !r.Answered() {
			return true
		}
	}
	return false
}

// answersOf lists the answers of a history briefly: "503 503 410".
func answersOf(h []*Record) string {
	var b strings.Builder
	for i, r := range h {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(statusKey(r))
	}
	return b.String()
}

// firstResolution looks at a history up to its first definitive answer
// (anything but no answer and 503). unknown and busy report whether an
// attempt with no answer, or a 503, came before it; r is that answer (nil
// if there is none).
func firstResolution(h []*Record) (r *Record, unknown, busy bool) {
	for _, r := range h {
		switch {
		case !r.Answered():
			unknown = true
		case r.Busy():
			busy = true
		default:
			return r, unknown, busy
		}
	}
	return nil, unknown, busy
}

func amountsOf(rs []*Record) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.Amount
	}
	return out
}

func countBy(claims map[string]int64) map[int64]int64 {
	out := make(map[int64]int64)
	for _, a := range claims {
		out[a]++
	}
	return out
}

// statusKey names an answer for the counts: "200", "503", "none", or the
// status with its code when it is not the usual one ("500 INTERNAL").
func statusKey(r *Record) string {
	switch {
	case !r.Answered():
		return "none"
	case r.Status == 200 && r.Code == "OK", r.Status == 409 && r.Code == "ALREADY_OPENED",
		r.Status == 410 && r.Code == "SOLD_OUT", r.Busy():
		return fmt.Sprint(r.Status)
	}
	return fmt.Sprintf("%d %s", r.Status, r.Code)
}

// formatStatuses prints answer counts in a stable order: 200 409 410 503,
// then the rest, then none.
func formatStatuses(m map[string]int) string {
	order := func(k string) string {
		switch k {
		case "200", "409", "410", "503":
			return "0" + k
		case "none":
			return "2"
		}
		return "1" + k
	}
	keys := slices.Collect(maps.Keys(m))
	sort.Slice(keys, func(i, j int) bool { return order(keys[i]) < order(keys[j]) })
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	if b.Len() == 0 {
		return "no requests"
	}
	return b.String()
}

// Liveness is what the runner saw of its processes and the services.
type Liveness struct {
	Kills      map[string]int // SIGKILLs the runner sent, per process (api, consumer)
	Outages    int            // services the runner stopped and started again
	Restarts   map[string]int // restarts that became ready again
	NotBack    []string       // restarts that did not become ready in time
	Crashes    []string       // exits the runner did not cause
	Panics     []string       // log lines that tell of a panic or a fatal error
	APIReady   bool           // api /readyz answered 200 at the end
	Healthy    bool           // consumer /healthz answered 200 at the end
	ServiceErr []string       // services that could not be stopped or brought back
}

// Verdict turns what was seen into the InvAlive verdict.
func (l *Liveness) Verdict() Verdict {
	var t tally
	for _, s := range l.NotBack {
		t.fail("did not come back: %s", s)
	}
	for _, s := range l.Crashes {
		t.fail("exited on its own: %s", s)
	}
	for _, s := range l.Panics {
		t.fail("log: %s", s)
	}
	for _, s := range l.ServiceErr {
		t.fail("service: %s", s)
	}
	if !l.APIReady {
		t.fail("api /readyz not 200 at the end")
	}
	if !l.Healthy {
		t.fail("consumer /healthz not 200 at the end")
	}
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(l.Kills)) {
		parts = append(parts, fmt.Sprintf("%s killed %d, back %d", p, l.Kills[p], l.Restarts[p]))
	}
	parts = append(parts, fmt.Sprintf("readyz %s, healthz %s, %d crashes, %d panics",
		okText(l.APIReady), okText(l.Healthy), len(l.Crashes), len(l.Panics)))
	faults := l.Outages
	for _, n := range l.Kills {
		faults += n
	}
	if l.Outages > 0 {
		parts = append([]string{fmt.Sprintf("%d service outages healed", l.Outages)}, parts...)
	}
	return t.verdict(InvAlive, faults, strings.Join(parts, "; "))
}

func okText(ok bool) string {
	if ok {
		return "200"
	}
	return "not 200"
}
