package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/redpacket/rain/loadtest/harness"
	"github.com/redpacket/rain/lua"
)

// The checker judges a run's history (every open and merchant request
// with its answer and times, and when each fault held) against the final
// state of PostgreSQL and Redis. It is a pure function: Check.

// The invariants, in table order.
const (
	InvOnePacket = "one-packet"   // no user holds two packets
	InvOKKept    = "ok-kept"      // every OK is in claim_log and Redis with its amount; re-opens get 409 with it
	InvOversell  = "no-oversell"  // per amount, the claims never exceed the stock (restocks counted)
	InvStranded  = "no-strand"    // every packet is left or claimed: nothing stranded in a bucket, the pool or in transit
	InvStale410  = "no-stale-410" // no SOLD_OUT while stock was left, none to a user who holds a packet
	InvHealed    = "healed"       // once the faults healed, a new user is served within the bound (OK while stock is left)
	InvEnd       = "end"          // an end is answered, recorded, and no OK after it
	InvRestock   = "restock"      // a restock adds its count once, however often it is sent
	InvRedisLog  = "redis=log"    // claim_log holds exactly the claims Redis holds; opened_count agrees
	InvAnswers   = "answers"      // no 5xx but the designed 503, and a 503 claimed nothing; an answer unless the api was killed
)

// Invariants lists the verdicts of a run in table order (InvAlive is the
// runner's).
var Invariants = []string{InvOnePacket, InvOKKept, InvOversell, InvStranded, InvStale410, InvHealed, InvEnd, InvRestock,
	InvRedisLog, InvAnswers, harness.InvAlive}

// Tolerances, in ms.
const (
	// lossBefore and lossAfter frame a master-loss window: writes
	// acknowledged shortly before the kill may be lost, and until the
	// reconciler has put them back (2 s passes, 3 s grace) a user can claim
	// again.
	lossBefore, lossAfter = 1_000, 15_000
	// redisSlack frames a Redis node fault for "a 503 that had claimed": a
	// claim call is bounded to 2 s.
	redisSlack = 2_500
	// memoryGrace is how long an api may answer from memory after an end
	// or a restock was answered (MEMORY_REFRESH, SOLD_OUT_TTL).
	memoryGrace = 1_500
	// clockSlack: a claim's claimed_at (Redis TIME) against the driver's
	// clock, on one host.
	clockSlack = 100
)

// Window is when a step of the schedule held, as the nemesis applied it.
type Window struct {
	Step   int    `json:"step"` // index in the schedule's steps
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"`
	Node   string `json:"node,omitempty"`  // the Redis node it hit
	FromMs int64  `json:"from_ms"`         // since the load's start
	ToMs   int64  `json:"to_ms"`           // healed
	Loss   bool   `json:"loss,omitempty"`  // a master was lost (killed, or stopped until failed over)
	Err    string `json:"error,omitempty"` // it could not be applied (wholly)
}

// CampaignRun is a campaign as the run created it.
type CampaignRun struct {
	Index   int             `json:"index"`
	ID      int64           `json:"id"`
	Name    string          `json:"name"`
	K       int             `json:"k"`
	Initial map[int64]int64 `json:"initial"` // the inventory at creation
}

// History is what a run did and saw.
type History struct {
	Tier      string
	Ack       string
	Records   []harness.Record  // every open, probes and re-opens included
	Actions   []*harness.Action // restocks and ends, every attempt
	Windows   []Window
	Campaigns []CampaignRun
}

// Check judges h against the final state of its campaigns and returns a
// verdict per invariant but InvAlive.
func Check(h *History, states []*harness.CampaignState) []harness.Verdict {
	j := newJudge(h, states)
	for _, r := range h.Records {
		j.answer(&r)
	}
	for _, a := range h.Actions {
		j.action(a)
	}
	for _, hist := range harness.Histories(h.Records) {
		if st := j.state[hist[0].Campaign]; st != nil {
			j.user(st, hist)
		}
	}
	for _, c := range h.Campaigns {
		if st := j.state[c.ID]; st != nil {
			j.campaign(c, st)
		} else {
			j.fail(InvStranded, false, "campaign %d (%s): no final state", c.ID, c.Name)
		}
	}
	return j.verdicts()
}

// judge is a check in progress: a tally per invariant and what it counted.
type judge struct {
	h       *History
	state   map[int64]*harness.CampaignState
	run     map[int64]CampaignRun
	tally   map[string]*harness.Tally
	n       map[string]int                         // what each invariant checked
	ends    map[int64]*harness.Action              // per campaign, its end
	stocks  map[int64][]*harness.Action            // per campaign, its restocks
	byCamp  map[int64][]*harness.Record            // per campaign, its records
	answers map[string]int                         // answers by harness.StatusKey
	probes  map[int64]map[string][]*harness.Record // per campaign, the probe users' histories
	told    map[int64]map[int64]int64              // per campaign and amount, the users told of a packet
}

func newJudge(h *History, states []*harness.CampaignState) *judge {
	j := &judge{h: h, state: map[int64]*harness.CampaignState{}, run: map[int64]CampaignRun{}, tally: map[string]*harness.Tally{},
		n: map[string]int{}, ends: map[int64]*harness.Action{}, stocks: map[int64][]*harness.Action{},
		byCamp: map[int64][]*harness.Record{}, answers: map[string]int{}, probes: map[int64]map[string][]*harness.Record{},
		told: map[int64]map[int64]int64{}}
	for _, inv := range Invariants {
		j.tally[inv] = &harness.Tally{}
	}
	for _, st := range states {
		j.state[st.ID] = st
	}
	for _, c := range h.Campaigns {
		j.run[c.ID] = c
	}
	for _, a := range h.Actions {
		if a.Kind == harness.ActionEnd {
			j.ends[a.Campaign] = a
		} else {
			j.stocks[a.Campaign] = append(j.stocks[a.Campaign], a)
		}
	}
	for i := range h.Records {
		r := &h.Records[i]
		j.byCamp[r.Campaign] = append(j.byCamp[r.Campaign], r)
	}
	return j
}

// fail counts a violation of inv; tolerated makes it a warning (a window
// the durability model documents as open in this ack mode).
func (j *judge) fail(inv string, tolerated bool, format string, args ...any) {
	if tolerated {
		j.tally[inv].Warnf(format+" [tolerated: "+j.h.Ack+"-ack, a master was lost]", args...)
		return
	}
	j.tally[inv].Fail(format, args...)
}

// lossWindows are the master-loss windows the ack mode documents as able
// to lose acknowledged claims (none in ack mode replica).
func (j *judge) lossWindows() []Window {
	if j.h.Ack != AckMaster {
		return nil
	}
	var out []Window
	for _, w := range j.h.Windows {
		if w.Loss {
			out = append(out, w)
		}
	}
	return out
}

// inLoss reports whether ms falls in a master-loss window's reach.
func (j *judge) inLoss(ms int64) bool {
	for _, w := range j.lossWindows() {
		if ms >= w.FromMs-lossBefore && ms <= w.ToMs+lossAfter {
			return true
		}
	}
	return false
}

// touchedLoss reports whether any attempt of a history falls in a
// master-loss window's reach.
func (j *judge) touchedLoss(h []*harness.Record) bool {
	return slices.ContainsFunc(h, func(r *harness.Record) bool { return j.inLoss(r.AtMs) })
}

// anyLoss reports whether the run lost a master in ack mode master: the
// campaign-wide counts may then be off by the claims it lost.
func (j *judge) anyLoss() bool { return len(j.lossWindows()) > 0 }

// inWindow reports whether [from, to] meets a window of one of kinds
// (widened by slack), and, for api-kill, of api (-1: any).
func (j *judge) inWindow(from, to, slack int64, api int, kinds ...string) bool {
	for _, w := range j.h.Windows {
		if !slices.Contains(kinds, w.Kind) || from > w.ToMs+slack || to < w.FromMs-slack {
			continue
		}
		if w.Kind == "api-kill" && api >= 0 && w.Target != fmt.Sprintf("api:%d", api) {
			continue
		}
		return true
	}
	return false
}

// answer checks one open's answer against what the api may say.
func (j *judge) answer(r *harness.Record) {
	j.answers[harness.StatusKey(r)]++
	j.n[InvAnswers]++
	switch {
	case !r.Answered():
		if !j.inWindow(r.AtMs, r.Done(), 500, r.API, "api-kill") {
			j.fail(InvAnswers, false, "%s (%s #%d, campaign %d, api %d) at %dms: no answer (%s), no api was killed", r.User, r.Kind, r.Attempt, r.Campaign, r.API, r.AtMs, r.Err)
		}
	case r.Status == 200 && r.Code == "OK", r.Status == 409 && r.Code == "ALREADY_OPENED", r.Status == 410 && r.Code == "SOLD_OUT", r.Busy():
	case r.Status == 400 && r.Code == "ENDED" && j.ends[r.Campaign] != nil: // when: InvEnd
	default:
		j.fail(InvAnswers, false, "%s (%s #%d, campaign %d) at %dms: %d %s", r.User, r.Kind, r.Attempt, r.Campaign, r.AtMs, r.Status, r.Code)
	}
}

// action checks a merchant request's attempts: 200, 503 or none (an api killed).
func (j *judge) action(a *harness.Action) {
	for _, at := range a.Attempts {
		switch {
		case at.Status == 200, at.Status == 503 && at.Code == "BUSY":
		case at.Status == 0 && j.inWindow(at.AtMs, at.DoneMs(), 500, at.API, "api-kill"):
		default:
			j.fail(InvAnswers, false, "%s: attempt at %dms to api %d answered %s", a, at.AtMs, at.API, at.Answer())
		}
	}
}

// trail is a history as the report shows it: "200 8 @1.2s, none @3.4s, 409 8 @5.0s".
func trail(h []*harness.Record) string {
	parts := make([]string, len(h))
	for i, r := range h {
		s := harness.StatusKey(r)
		if r.Amount != 0 {
			s += fmt.Sprintf(" %d", r.Amount)
		}
		parts[i] = fmt.Sprintf("%s (%s, api %d) @%.1fs", s, r.Kind, r.API, float64(r.AtMs)/1000)
	}
	return strings.Join(parts, ", ")
}

// user checks one user's history, in attempt order, against the stores.
func (j *judge) user(st *harness.CampaignState, h []*harness.Record) {
	if h[0].Kind == harness.KindProbe {
		if j.probes[st.ID] == nil {
			j.probes[st.ID] = map[string][]*harness.Record{}
		}
		j.probes[st.ID][h[0].User] = h
	}
	j.n[InvOnePacket]++
	tol := j.touchedLoss(h)
	j.onePacket(st, h, tol)
	j.okKept(st, h, tol)
	j.claimed503(st, h)
	j.n[InvStale410]++
	for _, r := range h {
		if a, holds := st.ClaimAmount(r.User); r.Status == 410 && holds {
			j.fail(InvStale410, tol, "%s (campaign %d): 410 SOLD_OUT though the user holds a packet (amount %d): %s", r.User, st.ID, a, trail(h))
			break
		}
	}
}

// onePacket: no two 200s, one amount in every 200 and 409, no 409 to a
// new user's first open, and in the stores one claim in one bucket, the
// user's own.
func (j *judge) onePacket(st *harness.CampaignState, h []*harness.Record, tol bool) {
	user, oks, amounts := h[0].User, 0, map[int64]bool{}
	for _, r := range h {
		if r.Status == 200 || r.Status == 409 {
			amounts[r.Amount] = true
		}
		if r.Status == 200 {
			oks++
		}
	}
	switch {
	case oks > 1:
		j.fail(InvOnePacket, tol, "%s (campaign %d): %d answers 200: %s", user, st.ID, oks, trail(h))
	case len(amounts) > 1:
		j.fail(InvOnePacket, tol, "%s (campaign %d): answers name amounts %v: %s", user, st.ID, slices.Sorted(maps.Keys(amounts)), trail(h))
	case h[0].Status == 409:
		j.fail(InvOnePacket, tol, "%s (campaign %d): 409 to a new user's first open: %s", user, st.ID, trail(h))
	}
	if bs := st.ClaimBuckets[user]; len(bs) > 1 {
		j.fail(InvOnePacket, tol, "%s (campaign %d): claims in %d buckets %v", user, st.ID, len(bs), bs)
	} else if len(bs) == 1 && bs[0] != lua.BucketOf(st.ID, user, st.K) {
		j.fail(InvOnePacket, tol, "%s (campaign %d): claim in bucket %d, the user's is %d", user, st.ID, bs[0], lua.BucketOf(st.ID, user, st.K))
	}
}

// okKept: the claim the api told of (the first 200, else a 409) is in
// claim_log and in Redis with that amount, and every re-open after it
// was answered 409 with it (or ENDED, 503, nothing).
func (j *judge) okKept(st *harness.CampaignState, h []*harness.Record, tol bool) {
	told := harness.FirstClaim(h)
	if told == nil {
		return
	}
	j.n[InvOKKept]++
	if j.told[st.ID] == nil {
		j.told[st.ID] = map[int64]int64{}
	}
	j.told[st.ID][told.Amount]++
	user := told.User
	logA, inLog := st.Log[user]
	redisA, inRedis := st.Redis[user]
	switch {
	case !inLog || logA != told.Amount:
		j.fail(InvOKKept, tol, "%s (campaign %d): told %d amount %d, claim_log has %s: %s", user, st.ID, told.Status, told.Amount, have(logA, inLog), trail(h))
	case !inRedis || redisA != told.Amount:
		j.fail(InvOKKept, tol, "%s (campaign %d): told %d amount %d, Redis has %s: %s", user, st.ID, told.Status, told.Amount, have(redisA, inRedis), trail(h))
	}
	for _, r := range h {
		reopen := r.Kind == harness.KindRepeat || r.Kind == harness.KindVerify
		if reopen && r.AtMs > told.AtMs && r.Answered() && !r.Busy() && !(r.Status == 409 && r.Amount == told.Amount) && !(r.Status == 400 && r.Code == "ENDED") {
			j.fail(InvOKKept, tol, "%s (campaign %d): re-open at %dms answered %s %d, want 409 %d: %s", user, st.ID, r.AtMs, harness.StatusKey(r), r.Amount, told.Amount, trail(h))
			return
		}
	}
}

func have(a int64, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprint(a)
}

// claimed503: in ack mode master a 503 promises nothing was claimed. A
// user who holds a packet though every open was answered and none 200 had
// one claimed by a 503 — designed only when the Redis node went away with
// the reply in flight (a kill or a stop), which is tolerated. In ack mode
// replica it is designed: a claim whose replica wait ran past
// REDIS_ACK_TIMEOUT is answered 503 and stands (a retry gets 409 with its
// amount, which ok-kept checks).
func (j *judge) claimed503(st *harness.CampaignState, h []*harness.Record) {
	a, holds := st.ClaimAmount(h[0].User)
	if j.h.Ack == AckReplica || !holds || harness.HasNoAnswer(h) || slices.ContainsFunc(h, func(r *harness.Record) bool { return r.Status == 200 }) {
		return
	}
	for _, r := range h {
		if r.Busy() && j.inWindow(r.AtMs, r.Done(), redisSlack, -1, "redis-kill", "redis-stop") {
			j.tally[InvAnswers].Warnf("%s (campaign %d): holds amount %d though every open was answered, none 200: a 503 had claimed, with a Redis node down [tolerated: the reply was lost with it]: %s", h[0].User, st.ID, a, trail(h))
			return
		}
	}
	j.fail(InvAnswers, j.touchedLoss(h), "%s (campaign %d): holds amount %d though every open was answered, none 200: a 503 had claimed: %s", h[0].User, st.ID, a, trail(h))
}

// campaign checks one campaign's counts and stores.
func (j *judge) campaign(c CampaignRun, st *harness.CampaignState) {
	j.oversell(st)
	j.stranded(st)
	j.redisLog(st)
	j.stale410(st)
	j.healed(st)
	if a := j.ends[st.ID]; a != nil {
		j.end(a, st)
	}
	if as := j.stocks[st.ID]; len(as) > 0 {
		j.restock(c, as, st)
	}
}

// oversell: per amount, the users told of a packet, the claims in Redis
// and the rows in claim_log never exceed the total (restocks counted).
func (j *judge) oversell(st *harness.CampaignState) {
	told := j.told[st.ID]
	redisBy, logBy := harness.CountBy(st.Redis), harness.CountBy(st.Log)
	for _, a := range slices.Sorted(maps.Keys(st.Total)) {
		j.n[InvOversell]++
		if n := max(told[a], redisBy[a], logBy[a]); n > st.Total[a] {
			j.fail(InvOversell, j.anyLoss(), "campaign %d amount %d: %d users told of a packet, %d claims in Redis, %d in claim_log: total %d",
				st.ID, a, told[a], redisBy[a], logBy[a], st.Total[a])
		}
	}
	for _, m := range []map[int64]int64{told, redisBy, logBy, st.Remaining} {
		for a, n := range m {
			if _, ok := st.Total[a]; !ok && n > 0 {
				j.fail(InvOversell, false, "campaign %d: %d packets of amount %d, not in the inventory", st.ID, n, a)
			}
		}
	}
}

// stranded: per amount, Redis remaining + claims = the total, with
// nothing in transit between buckets and no stock action pending once
// the run settled: once sold out, claims = stock exactly.
func (j *judge) stranded(st *harness.CampaignState) {
	j.n[InvStranded]++
	if !st.Loaded {
		j.fail(InvStranded, false, "campaign %d: not loaded in Redis (no meta hash)", st.ID)
	}
	if st.Pending > 0 {
		j.fail(InvStranded, false, "campaign %d: %d packets in transit between buckets after the run settled (buckets %v, pool %d)", st.ID, st.Pending, st.BucketLeft, st.PoolLeft)
	}
	if st.PendingStock > 0 {
		j.fail(InvStranded, false, "campaign %d: %d stock actions not applied in Redis after the run settled", st.ID, st.PendingStock)
	}
	redisBy := harness.CountBy(st.Redis)
	for _, a := range slices.Sorted(maps.Keys(st.Total)) {
		if sum := st.Remaining[a] + redisBy[a]; sum < st.Total[a] {
			j.fail(InvStranded, j.anyLoss(), "campaign %d amount %d: %d left + %d claimed = %d of %d: %d packets neither left nor claimed",
				st.ID, a, st.Remaining[a], redisBy[a], sum, st.Total[a], st.Total[a]-sum)
		}
	}
}

// redisLog: claim_log holds exactly the claims Redis holds, one row a
// user, and opened_count counts them.
func (j *judge) redisLog(st *harness.CampaignState) {
	j.n[InvRedisLog] += len(st.Redis)
	tol := j.anyLoss()
	if st.LogRows != len(st.Log) {
		j.fail(InvRedisLog, false, "campaign %d: claim_log has %d rows for %d users", st.ID, st.LogRows, len(st.Log))
	}
	for _, u := range slices.Sorted(maps.Keys(st.Redis)) {
		if la, ok := st.Log[u]; !ok || la != st.Redis[u] {
			j.fail(InvRedisLog, tol, "campaign %d: %s has amount %d in Redis, %s in claim_log", st.ID, u, st.Redis[u], have(la, ok))
		}
	}
	for _, u := range slices.Sorted(maps.Keys(st.Log)) {
		if _, ok := st.Redis[u]; !ok {
			j.fail(InvRedisLog, tol, "campaign %d: %s (amount %d) is in claim_log, not in Redis", st.ID, u, st.Log[u])
		}
	}
	logBy := harness.CountBy(st.Log)
	for _, a := range slices.Sorted(maps.Keys(st.Total)) {
		if st.Opened[a] != logBy[a] {
			j.fail(InvRedisLog, false, "campaign %d amount %d: opened_count %d, claim_log rows %d", st.ID, a, st.Opened[a], logBy[a])
		}
	}
}

// stale410: a 410 sent at t is stale when stock was left at t: the stock
// left at the end less what restocks that may have come after t added
// (claims only take stock away) is still above 0.
func (j *judge) stale410(st *harness.CampaignState) {
	left := st.Left() + st.Pending
	for _, r := range j.byCamp[st.ID] {
		if r.Status != 410 {
			continue
		}
		if atLeast := left - j.addedAfter(st.ID, r.AtMs); atLeast > 0 {
			j.fail(InvStale410, j.inLoss(r.AtMs), "campaign %d: 410 SOLD_OUT to %s (%s) at %dms, when at least %d packets were left (buckets %v, pool %d)",
				st.ID, r.User, r.Kind, r.AtMs, atLeast, st.BucketLeft, st.PoolLeft)
		}
	}
}

// addedAfter is the stock restocks of campaign id may have added after
// ms: those not answered 200 at least memoryGrace before it.
func (j *judge) addedAfter(id, ms int64) int64 {
	var n int64
	for _, a := range j.stocks[id] {
		if at := a.Ack(); at == nil || at.DoneMs()+memoryGrace > ms {
			n += a.Count
		}
	}
	return n
}

// healed: the probe's new users, sent once every fault had healed, were
// each answered within the bound (not only 503 or nothing), and while
// stock was left at least one got OK; an ended campaign answers ENDED.
func (j *judge) healed(st *harness.CampaignState) {
	probes := j.probes[st.ID]
	if len(probes) == 0 {
		return
	}
	ended := j.ends[st.ID] != nil && j.ends[st.ID].Ack() != nil
	oks := 0
	for _, u := range slices.Sorted(maps.Keys(probes)) {
		h := probes[u]
		j.n[InvHealed]++
		r, _, _ := harness.FirstResolution(h)
		switch {
		case r == nil:
			j.fail(InvHealed, false, "campaign %d: probe user %s not served after the faults healed: %s", st.ID, u, trail(h))
		case ended && !(r.Status == 400 && r.Code == "ENDED"):
			j.fail(InvHealed, false, "campaign %d (ended): probe user %s answered %s: %s", st.ID, u, harness.StatusKey(r), trail(h))
		case r.Status == 200:
			oks++
		}
	}
	if !ended && oks == 0 && st.Left()+st.Pending > 0 {
		j.fail(InvHealed, false, "campaign %d: %d packets left, yet none of %d probe users got OK after the faults healed", st.ID, st.Left()+st.Pending, len(probes))
	}
}

// end checks a merchant's end: answered 200, recorded (ended_at, an end
// time within the request), no claim after it, no ENDED before it was
// asked, and every open sent memoryGrace after its answer answered ENDED
// (or 503, or nothing while the api was down).
func (j *judge) end(a *harness.Action, st *harness.CampaignState) {
	j.n[InvEnd]++
	sent, _ := a.Sent()
	ack := a.Ack()
	tol := j.inLoss(sent)
	switch {
	case ack == nil:
		j.fail(InvEnd, false, "campaign %d: the end was never answered 200 (%s)", st.ID, a.Answers())
		return
	case !st.EndedEarly:
		j.fail(InvEnd, false, "campaign %d: ended_at not set in PostgreSQL", st.ID)
	case st.EndMs < a.Wall(sent)-clockSlack || st.EndMs > a.Wall(ack.DoneMs())+clockSlack:
		j.fail(InvEnd, false, "campaign %d: end_time %d outside the request (%d-%d)", st.ID, st.EndMs, a.Wall(sent), a.Wall(ack.DoneMs()))
	}
	for _, at := range []map[string]int64{st.RedisAt, st.LogAt} {
		for _, u := range slices.Sorted(maps.Keys(at)) {
			if at[u] > st.EndMs {
				j.fail(InvEnd, tol, "campaign %d: %s claimed %dms after the end", st.ID, u, at[u]-st.EndMs)
			}
		}
	}
	for _, r := range j.byCamp[st.ID] {
		isEnded := r.Status == 400 && r.Code == "ENDED"
		switch {
		case isEnded && r.Done() < sent:
			j.fail(InvEnd, false, "campaign %d: %s answered ENDED at %dms, before the end was sent (%dms)", st.ID, r.User, r.Done(), sent)
		case r.AtMs < ack.DoneMs()+memoryGrace, isEnded, r.Busy(), !r.Answered():
		default:
			j.fail(InvEnd, tol, "campaign %d: %s (%s) sent %dms after the end's answer: %s, want 400 ENDED", st.ID, r.User, r.Kind, r.AtMs-ack.DoneMs(), harness.StatusKey(r))
		}
	}
}

// restock checks a campaign's restocks: each answered 200, its repeat on
// purpose answered as a replay with the same total; PostgreSQL's total
// is the initial one plus each restock's count once (one answered only
// with 503 or nothing may or may not have been applied), with a stock
// action per restock applied in Redis.
func (j *judge) restock(c CampaignRun, as []*harness.Action, st *harness.CampaignState) {
	acked, maybe := map[int64]int64{}, map[int64]int64{}
	applied := 0
	for _, a := range as {
		j.n[InvRestock]++
		ack := a.Ack()
		if ack == nil {
			j.fail(InvRestock, false, "campaign %d: restock never answered 200 (%s)", st.ID, a.Answers())
			maybe[a.Amount] += a.Count
			continue
		}
		acked[a.Amount] += a.Count
		applied++
		for _, at := range a.Attempts {
			if at.Replay && at.Status == 200 && (!at.Replayed || at.Total != ack.Total) {
				j.fail(InvRestock, false, "campaign %d: the restock sent again with key %s answered total %d, replayed %v; want %d, replayed", st.ID, a.Key, at.Total, at.Replayed, ack.Total)
			}
		}
	}
	for _, amt := range slices.Sorted(maps.Keys(st.Total)) {
		lo := c.Initial[amt] + acked[amt]
		if got := st.Total[amt]; got < lo || got > lo+maybe[amt] {
			j.fail(InvRestock, false, "campaign %d amount %d: total %d in PostgreSQL, want %d + %d restocked once (+ up to %d unanswered)",
				st.ID, amt, got, c.Initial[amt], acked[amt], maybe[amt])
		}
	}
	if st.StockActions < applied || st.StockActions > len(as) {
		j.fail(InvRestock, false, "campaign %d: %d stock actions recorded for %d restocks (%d answered)", st.ID, st.StockActions, len(as), applied)
	}
}

// verdicts sums the tallies up, in table order.
func (j *judge) verdicts() []harness.Verdict {
	detail := map[string]string{
		InvOnePacket: "users checked: two 200s, two amounts, a 409 to a new user, claims in two buckets or another's",
		InvOKKept:    "users told of a packet (200, or 409 only): in claim_log and Redis with that amount, re-opens 409 with it",
		InvOversell:  "amounts: users told of a packet, Redis claims and claim_log rows ≤ the total with restocks",
		InvStranded:  "campaigns: Redis left + claimed = total per amount, nothing in transit, no stock action pending",
		InvStale410:  "users: no 410 to a holder; no 410 while stock was left (end state less later restocks)",
		InvHealed:    "probe users after the faults healed: served within the bound, OK while stock was left",
		InvEnd:       "ends: answered, recorded, no claim or OK after, ENDED after",
		InvRestock:   "restocks: answered, added once, replay answered as one",
		InvRedisLog:  "Redis claims: the same in claim_log; opened_count = rows",
		InvAnswers:   "answers: " + harness.FormatStatuses(j.answers),
	}
	var out []harness.Verdict
	for _, inv := range Invariants[:len(Invariants)-1] {
		t := j.tally[inv]
		out = append(out, t.Verdict(inv, j.n[inv], fmt.Sprintf("%d %s; %d violations, %d tolerated", j.n[inv], detail[inv], t.Bad, t.Warned)))
	}
	return out
}
