package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/redpacket/rain/loadtest/harness"
)

// clockSlack is how far apart the driver's wall clock and Redis TIME may
// be when a record's time is compared with a claim's claimed_at: they read
// the same host's clock, but an answer's time is taken after the script ran.
const clockSlack = 100

// endGrace is how long after the end's answer an open may still be
// answered from what an api replica remembered: every open sent later
// must be answered ENDED.
const endGrace = time.Second

// merchant checks the actions of the scenario's merchant step against the
// records and the stores (InvRestock, InvEnd). An action never sent, or
// aimed at a campaign that is not the run's, counts, and fails its
// invariant: there is nothing else to check of it.
func (c *checker) merchant() {
	for _, a := range c.opts.Actions {
		t, n, check := &c.restock, &c.nRestocks, c.checkRestock
		switch a.Kind {
		case harness.ActionRestock:
		case harness.ActionEnd:
			t, n, check = &c.end, &c.nEnds, c.checkEnd
		default:
			continue
		}
		*n++
		st := c.byCampaign[a.Campaign]
		sent, ok := a.Sent()
		switch {
		case st == nil:
			t.Fail("%s: campaign %d is not one of the run's", a.Kind, a.Campaign)
		case !ok:
			t.Fail("campaign %d: the %s was never sent", st.ID, a.Kind)
		default:
			check(a, st, sent)
		}
	}
}

// campaignRecords are the records of campaign id.
func (c *checker) campaignRecords(id int64) []*harness.Record {
	var out []*harness.Record
	for i := range c.recs {
		if c.recs[i].Campaign == id {
			out = append(out, &c.recs[i])
		}
	}
	return out
}

// claimTimes are the claimed_at of every claim of st, sorted: Redis's,
// else claim_log's.
func claimTimes(st *harness.CampaignState) []int64 {
	var out []int64
	for u := range st.Redis {
		out = append(out, st.RedisAt[u])
	}
	for u := range st.Log {
		if _, ok := st.Redis[u]; !ok {
			out = append(out, st.LogAt[u])
		}
	}
	slices.Sort(out)
	return out
}

// claimedBy counts the claims of times made at or before wall ms.
func claimedBy(times []int64, ms int64) int64 {
	return int64(sort.Search(len(times), func(i int) bool { return times[i] > ms }))
}

// checkRestock holds a restock, first sent at sent, to its contract
// (InvRestock): answered 200; PostgreSQL's total is the old one plus the
// count once, however many requests carried the key, with one stock action
// and none pending; the repeat on purpose answered as the first did, marked
// replayed; no claim beyond the new total, and none beyond the old one
// before the restock was sent; the campaign was sold out before it (every
// 410 then true: all packets claimed) and served again after it (a 200 to
// an open sent after the answer), and a 410 sent a second after the answer
// only once every new packet was claimed. Remaining + claims = the new
// total is InvStock's.
func (c *checker) checkRestock(a *harness.Action, st *harness.CampaignState, sent int64) {
	t := &c.restock
	want := a.Base + a.Count
	ack := a.Ack()
	switch {
	case ack == nil:
		t.Fail("campaign %d: the restock was never answered 200 (%s)", st.ID, a.Answers())
	case ack.Total != want:
		t.Fail("campaign %d: the restock answered total %d, want %d + %d", st.ID, ack.Total, a.Base, a.Count)
	}
	if got := st.Total[a.Amount]; got != want {
		t.Fail("campaign %d amount %d: total %d in PostgreSQL after %d requests with key %s, want %d + %d once",
			st.ID, a.Amount, got, len(a.Attempts), a.Key, a.Base, a.Count)
	}
	if st.StockActions != 1 {
		t.Fail("campaign %d: %d stock actions in campaign_action, want 1", st.ID, st.StockActions)
	}
	if st.PendingStock != 0 {
		t.Fail("campaign %d: %d stock actions not applied in Redis (applied_at null) at the end", st.ID, st.PendingStock)
	}
	replays := 0
	for _, at := range a.Attempts {
		if !at.Replay || at.Status != 200 {
			continue
		}
		replays++
		if !at.Replayed || at.Total != want {
			t.Fail("campaign %d: the restock sent again with key %s answered total %d, replayed %v: want %d, replayed",
				st.ID, a.Key, at.Total, at.Replayed, want)
		}
	}
	if ack != nil && replays == 0 {
		t.Fail("campaign %d: the restock sent again with key %s was not answered 200 (%s)", st.ID, a.Key, a.Answers())
	}

	// No packet beyond the total; none beyond the old one before the
	// restock was sent.
	redisBy, logBy := harness.CountBy(st.Redis), harness.CountBy(st.Log)
	for _, amt := range slices.Sorted(maps.Keys(st.Total)) {
		if n := max(redisBy[amt], logBy[amt]); n > st.Total[amt] {
			t.Fail("campaign %d amount %d: %d claims, beyond the total %d", st.ID, amt, n, st.Total[amt])
		}
	}
	var early int64
	for u, amt := range st.Redis {
		if amt == a.Amount && st.RedisAt[u] <= a.Wall(sent) {
			early++
		}
	}
	if early > a.Base {
		t.Fail("campaign %d amount %d: %d claims made before the restock was sent, beyond the %d there were", st.ID, a.Amount, early, a.Base)
	}

	// Sold out before, served again after.
	var total int64
	for _, n := range st.Total {
		total += n
	}
	oldTotal := total - st.Total[a.Amount] + a.Base
	times := claimTimes(st)
	soldBefore, servedAgain := 0, 0
	for _, r := range c.campaignRecords(st.ID) {
		d := r.Done()
		switch {
		case r.Status == 410 && d < sent:
			soldBefore++
			if n := claimedBy(times, a.Wall(d)+clockSlack); n < oldTotal {
				t.Fail("campaign %d: 410 to %s at %dms, before the restock, with %d of %d packets claimed", st.ID, r.User, d, n, oldTotal)
			}
		case r.Status == 410 && ack != nil && r.AtMs >= ack.DoneMs()+endGrace.Milliseconds():
			if n := claimedBy(times, a.Wall(d)+clockSlack); n < total {
				t.Fail("campaign %d: 410 to %s at %dms, %dms after the restock's answer, with %d of %d packets claimed",
					st.ID, r.User, d, r.AtMs-ack.DoneMs(), n, total)
			}
		case r.Status == 200 && ack != nil && r.AtMs >= ack.DoneMs():
			servedAgain++
		}
	}
	if soldBefore == 0 {
		t.Fail("campaign %d: no 410 before the restock was sent (at %dms): it did not test a sold-out campaign", st.ID, sent)
	}
	if ack != nil && servedAgain == 0 {
		t.Fail("campaign %d: no open sent after the restock's answer (at %dms) got 200: not served again", st.ID, ack.DoneMs())
	}
	c.nSoldBefore += soldBefore
	c.nServedAgain += servedAgain
}

// checkEnd holds an end, first sent at sent, to its contract (InvEnd):
// answered 200; PostgreSQL records the end (ended_at set) at a moment
// between the first request and the answer; no claim, in Redis or
// claim_log, after it (claimed_at <= end is allowed), and claims made
// before it (they stand: 200→log and redis=log check them); no ENDED
// before the end was asked; every open sent a second after the answer is
// answered 400 ENDED (or 503 BUSY, or nothing where the api may be down:
// nothing claimed either way).
func (c *checker) checkEnd(a *harness.Action, st *harness.CampaignState, sent int64) {
	t := &c.end
	ack := a.Ack()
	if ack == nil {
		t.Fail("campaign %d: the end was never answered 200 (%s)", st.ID, a.Answers())
	}
	if !st.EndedEarly {
		t.Fail("campaign %d: ended_at not set in PostgreSQL", st.ID)
	}
	if st.EndMs < a.Wall(sent)-clockSlack || ack != nil && st.EndMs > a.Wall(ack.DoneMs())+clockSlack {
		t.Fail("campaign %d: end_time %s outside the end's request: sent %s, answered %s", st.ID, unixMs(st.EndMs),
			unixMs(a.Wall(sent)), map[bool]string{true: unixMs(a.Wall(ackDone(ack))), false: "never"}[ack != nil])
	}
	for _, u := range slices.Sorted(maps.Keys(st.RedisAt)) {
		if at := st.RedisAt[u]; at > st.EndMs {
			t.Fail("campaign %d: %s claimed at %s in Redis, %dms after the end", st.ID, u, unixMs(at), at-st.EndMs)
		}
	}
	for _, u := range slices.Sorted(maps.Keys(st.LogAt)) {
		if at := st.LogAt[u]; at > st.EndMs {
			t.Fail("campaign %d: %s claimed at %s in claim_log, %dms after the end", st.ID, u, unixMs(at), at-st.EndMs)
		}
	}
	c.nClaimsBeforeEnd += len(st.Redis)
	if len(st.Redis) == 0 {
		t.Fail("campaign %d: no claim before the end: it did not test claims that stand", st.ID)
	}
	ended := 0
	for _, r := range c.campaignRecords(st.ID) {
		isEnded := r.Status == 400 && r.Code == "ENDED"
		if isEnded {
			ended++
			if r.Done() < sent {
				t.Fail("campaign %d: %s answered ENDED at %dms, before the end was sent (%dms)", st.ID, r.User, r.Done(), sent)
			}
		}
		if ack == nil || r.AtMs < ack.DoneMs()+endGrace.Milliseconds() {
			continue
		}
		c.nAfterEnd++
		switch {
		case isEnded:
		case r.Busy() || !r.Answered():
			c.nAfterEndBusy++
		default:
			t.Fail("campaign %d: %s (%s #%d) sent %dms after the end's answer: %s, want 400 ENDED",
				st.ID, r.User, r.Kind, r.Attempt, r.AtMs-ack.DoneMs(), harness.StatusKey(r))
		}
	}
	c.nEnded += ended
	if ended == 0 {
		t.Fail("campaign %d: no open answered ENDED", st.ID)
	}
}

func ackDone(at *harness.Attempt) int64 {
	if at == nil {
		return 0
	}
	return at.DoneMs()
}

func unixMs(ms int64) string { return time.UnixMilli(ms).UTC().Format("15:04:05.000") }

// merchantVerdicts are the verdicts of the merchant step's invariants, for
// the kinds of action it took.
func (c *checker) merchantVerdicts() []harness.Verdict {
	var out []harness.Verdict
	if c.nRestocks > 0 {
		out = append(out, c.restock.Verdict(InvRestock, c.nServedAgain, fmt.Sprintf(
			"%d restocked; %d answers 410 before the restock, %d 200s to opens sent after its answer; %d violations: %s",
			c.nRestocks, c.nSoldBefore, c.nServedAgain, c.restock.Bad, c.actionsOf(harness.ActionRestock))))
	}
	if c.nEnds > 0 {
		out = append(out, c.end.Verdict(InvEnd, c.nEnded, fmt.Sprintf(
			"%d ended; %d claims made before it; %d answers ENDED; %d opens sent %s after the end's answer, %d of them answered 503 or not at all, the rest ENDED; %d violations: %s",
			c.nEnds, c.nClaimsBeforeEnd, c.nEnded, c.nAfterEnd, endGrace, c.nAfterEndBusy, c.end.Bad, c.actionsOf(harness.ActionEnd))))
	}
	return out
}

func (c *checker) actionsOf(kind string) string {
	var s string
	for _, a := range c.opts.Actions {
		if a.Kind == kind {
			if s != "" {
				s += "; "
			}
			s += a.String()
		}
	}
	return s
}
