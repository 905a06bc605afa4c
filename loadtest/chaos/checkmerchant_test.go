package main

import (
	"strings"
	"testing"

	"github.com/redpacket/rain/loadtest/harness"
)

// t0 is the driver's start in the merchant fixture, unix ms.
const t0 = 1_800_000_000_000

// newMerchantFixture is newFixture plus the merchant step's campaigns and
// the records of a clean run on them:
//   - 3 "refill": 5×2 and 50×1 sold out by 200ms (410 at 300ms), restocked
//     with 5×2 (sent at 1000ms, answered at 1100ms, sent again on purpose
//     at 1200ms), served again (200s at 1500 and 1600ms), sold out again
//     (410 at 2500ms with all 5 claimed);
//   - 4 "ended": claims at 100 and 900ms, the end sent at 1000ms, recorded
//     at 1020ms, answered at 1050ms; ENDED at 1030ms and from 2100ms on, a
//     503 in between (the fault), and ENDED to the re-open of a claimant.
func newMerchantFixture() *fixture {
	f := newFixture()
	refill := &harness.CampaignState{ID: 3, Label: "refill", SoldOutOK: true, Loaded: true,
		Total: map[int64]int64{5: 4, 50: 1}, Opened: map[int64]int64{5: 4, 50: 1},
		Log:       map[string]int64{"r1": 5, "r2": 50, "r3": 5, "r5": 5, "r6": 5},
		Redis:     map[string]int64{"r1": 5, "r2": 50, "r3": 5, "r5": 5, "r6": 5},
		LogAt:     map[string]int64{"r1": t0 + 100, "r2": t0 + 150, "r3": t0 + 200, "r5": t0 + 1500, "r6": t0 + 1600},
		RedisAt:   map[string]int64{"r1": t0 + 100, "r2": t0 + 150, "r3": t0 + 200, "r5": t0 + 1500, "r6": t0 + 1600},
		Remaining: map[int64]int64{}, LogRows: 5, EndMs: t0 + 3_600_000, StockActions: 1}
	ended := &harness.CampaignState{ID: 4, Label: "ended", Loaded: true,
		Total: map[int64]int64{2: 100}, Opened: map[int64]int64{2: 2},
		Log:       map[string]int64{"e1": 2, "e2": 2},
		Redis:     map[string]int64{"e1": 2, "e2": 2},
		LogAt:     map[string]int64{"e1": t0 + 100, "e2": t0 + 900},
		RedisAt:   map[string]int64{"e1": t0 + 100, "e2": t0 + 900},
		Remaining: map[int64]int64{2: 98}, LogRows: 2, EndMs: t0 + 1020, EndedEarly: true}
	f.states = append(f.states, refill, ended)
	f.recs = append(f.recs,
		harness.Record{Campaign: 3, User: "r1", Kind: harness.KindFirst, Attempt: 1, AtMs: 99, Status: 200, Code: "OK", Amount: 5},
		harness.Record{Campaign: 3, User: "r2", Kind: harness.KindFirst, Attempt: 1, AtMs: 149, Status: 200, Code: "OK", Amount: 50},
		harness.Record{Campaign: 3, User: "r3", Kind: harness.KindFirst, Attempt: 1, AtMs: 199, Status: 200, Code: "OK", Amount: 5},
		harness.Record{Campaign: 3, User: "r4", Kind: harness.KindFirst, Attempt: 1, AtMs: 300, LatMs: 0.5, Status: 410, Code: "SOLD_OUT"},
		harness.Record{Campaign: 3, User: "r5", Kind: harness.KindFirst, Attempt: 1, AtMs: 1499, Status: 200, Code: "OK", Amount: 5},
		harness.Record{Campaign: 3, User: "r6", Kind: harness.KindFirst, Attempt: 1, AtMs: 1599, Status: 200, Code: "OK", Amount: 5},
		harness.Record{Campaign: 3, User: "r7", Kind: harness.KindFirst, Attempt: 1, AtMs: 2500, Status: 410, Code: "SOLD_OUT"},
		harness.Record{Campaign: 4, User: "e1", Kind: harness.KindFirst, Attempt: 1, AtMs: 99, Status: 200, Code: "OK", Amount: 2},
		harness.Record{Campaign: 4, User: "e2", Kind: harness.KindFirst, Attempt: 1, AtMs: 899, Status: 200, Code: "OK", Amount: 2},
		harness.Record{Campaign: 4, User: "e3", Kind: harness.KindFirst, Attempt: 1, AtMs: 1030, Status: 400, Code: "ENDED"},
		harness.Record{Campaign: 4, User: "e4", Kind: harness.KindFirst, Attempt: 1, AtMs: 2100, Status: 400, Code: "ENDED"},
		harness.Record{Campaign: 4, User: "e5", Kind: harness.KindFirst, Attempt: 1, AtMs: 2200, Status: 503, Code: "BUSY"},
		harness.Record{Campaign: 4, User: "e5", Kind: harness.KindRetry, Attempt: 2, AtMs: 3300, Status: 400, Code: "ENDED"},
		harness.Record{Campaign: 4, User: "e1", Kind: harness.KindVerify, Attempt: 1000, AtMs: 4000, Status: 400, Code: "ENDED"},
	)
	f.actions = []*harness.Action{
		{Kind: harness.ActionRestock, Campaign: 3, Amount: 5, Count: 2, Base: 2, Key: "k1", StartUnixMs: t0, Attempts: []harness.Attempt{
			{AtMs: 1000, LatMs: 100, Status: 200, Total: 4},
			{AtMs: 1200, LatMs: 5, Status: 200, Total: 4, Replay: true, Replayed: true},
		}},
		{Kind: harness.ActionEnd, Campaign: 4, StartUnixMs: t0, Attempts: []harness.Attempt{{AtMs: 1000, LatMs: 50, Status: 200}}},
	}
	return f
}

// rec is the record of user u in campaign id (the first, or the attempt-th).
func rec(f *fixture, id int64, u string) *harness.Record {
	for i := range f.recs {
		if f.recs[i].Campaign == id && f.recs[i].User == u {
			return &f.recs[i]
		}
	}
	panic("no record of " + u)
}

// drop removes the records of user u in campaign id.
func drop(f *fixture, id int64, u string) {
	out := f.recs[:0]
	for _, r := range f.recs {
		if r.Campaign != id || r.User != u {
			out = append(out, r)
		}
	}
	f.recs = out
}

func TestCheckMerchantCleanRun(t *testing.T) {
	got := verdicts(t, newMerchantFixture(), CheckOptions{})
	expect(t, got, nil, nil)
	if v := got[InvRestock]; v.Short != "2" || !strings.Contains(v.Detail, "1 answers 410 before the restock") {
		t.Errorf("restock: %+v", v)
	}
	if v := got[InvEnd]; v.Short != "4" || !strings.Contains(v.Detail, "1 of them answered 503") {
		t.Errorf("end: %+v", v)
	}
	if v := got[InvAnswers]; !strings.Contains(v.Detail, "400 ENDED:4") {
		t.Errorf("answers: %+v", v)
	}
}

// The restocked campaign need not sell out again: its 410s before the
// restock are not "410 with packets left" (InvStock) when the last
// packets are left at the end.
func TestCheckMerchantNotSoldOutAgain(t *testing.T) {
	f := newMerchantFixture()
	st := f.states[2]
	drop(f, 3, "r6")
	drop(f, 3, "r7")
	delete(st.Log, "r6")
	delete(st.Redis, "r6")
	st.LogRows--
	st.Opened[5]--
	st.Remaining[5] = 1
	expect(t, verdicts(t, f, CheckOptions{}), nil, nil)
}

func TestCheckMerchantViolations(t *testing.T) {
	refill := func(f *fixture) *harness.CampaignState { return f.states[2] }
	ended := func(f *fixture) *harness.CampaignState { return f.states[3] }
	tests := []struct {
		name   string
		edit   func(f *fixture)
		failed []string
	}{
		// Restock.
		{"restock never sent", func(f *fixture) {
			f.actions[0].Attempts = nil
		}, []string{InvRestock}},
		{"restock of a campaign not the run's", func(f *fixture) {
			f.actions[0].Campaign = 99
		}, []string{InvRestock}},
		{"restock never answered 200", func(f *fixture) {
			f.actions[0].Attempts = []harness.Attempt{{AtMs: 1000, Status: 503, Code: "BUSY"}, {AtMs: 1300, Err: "refused"}}
		}, []string{InvRestock}},
		{"restock answered another total", func(f *fixture) {
			f.actions[0].Attempts[0].Total = 6
		}, []string{InvRestock}},
		{"retried restock added twice", func(f *fixture) {
			refill(f).Total[5] = 6
			refill(f).Remaining[5] = 2
		}, []string{InvRestock}},
		{"two stock actions recorded", func(f *fixture) {
			refill(f).StockActions = 2
		}, []string{InvRestock}},
		{"stock action still pending", func(f *fixture) {
			refill(f).PendingStock = 1
		}, []string{InvRestock}},
		{"replay not marked replayed", func(f *fixture) {
			f.actions[0].Attempts[1].Replayed = false
		}, []string{InvRestock}},
		{"replay answered another total", func(f *fixture) {
			f.actions[0].Attempts[1].Total = 6
		}, []string{InvRestock}},
		{"replay not answered", func(f *fixture) {
			f.actions[0].Attempts[1] = harness.Attempt{AtMs: 1200, Err: "timeout", Replay: true}
		}, []string{InvRestock}},
		{"claim beyond the old total before the restock", func(f *fixture) {
			refill(f).RedisAt["r5"], refill(f).LogAt["r5"] = t0+500, t0+500
		}, []string{InvRestock}},
		{"claims beyond the new total", func(f *fixture) {
			st := refill(f)
			st.Log["r8"], st.Redis["r8"], st.RedisAt["r8"], st.LogAt["r8"] = 5, 5, t0+1700, t0+1700
			st.LogRows++
			st.Total[5], st.Remaining[5] = 5, 0 // PostgreSQL and Redis agree; the restock said 4
			st.Opened[5]++
		}, []string{InvRestock}},
		{"410 before the restock with packets left", func(f *fixture) {
			rec(f, 3, "r4").AtMs = 50
		}, []string{InvRestock}},
		{"not sold out before the restock", func(f *fixture) {
			drop(f, 3, "r4")
		}, []string{InvRestock}},
		{"not served again after the restock", func(f *fixture) {
			rec(f, 3, "r5").AtMs, rec(f, 3, "r6").AtMs = 1090, 1095
		}, []string{InvRestock}},
		{"410 a second after the restock with packets left", func(f *fixture) {
			refill(f).RedisAt["r6"], refill(f).LogAt["r6"] = t0+3000, t0+3000
		}, []string{InvRestock}},
		// End.
		{"end never sent", func(f *fixture) {
			f.actions[1].Attempts = nil
		}, []string{InvEnd}},
		{"end of a campaign not the run's", func(f *fixture) {
			f.actions[1].Campaign = 99 // campaign 4's ENDED answers then have no end to stand on
		}, []string{InvEnd, InvAnswers}},
		{"end never answered 200", func(f *fixture) {
			f.actions[1].Attempts = []harness.Attempt{{AtMs: 1000, Status: 503, Code: "BUSY"}, {AtMs: 1300, Status: 500, Code: "INTERNAL"}}
		}, []string{InvEnd}},
		{"ended_at not set", func(f *fixture) {
			ended(f).EndedEarly = false
		}, []string{InvEnd}},
		{"end recorded after its answer", func(f *fixture) {
			ended(f).EndMs = t0 + 1200
		}, []string{InvEnd}},
		{"end recorded before it was asked", func(f *fixture) {
			ended(f).EndMs = t0 + 800
		}, []string{InvEnd}},
		{"claim after the end in Redis", func(f *fixture) {
			ended(f).RedisAt["e2"] = t0 + 1021
		}, []string{InvEnd}},
		{"claim after the end in claim_log", func(f *fixture) {
			ended(f).LogAt["e2"] = t0 + 1021
		}, []string{InvEnd}},
		{"200 a second after the end's answer", func(f *fixture) {
			st := ended(f)
			f.recs = append(f.recs, harness.Record{Campaign: 4, User: "e6", Kind: harness.KindFirst, Attempt: 1, AtMs: 2100, Status: 200, Code: "OK", Amount: 2})
			st.Log["e6"], st.Redis["e6"], st.LogAt["e6"], st.RedisAt["e6"] = 2, 2, t0+1019, t0+1019
			st.LogRows++
			st.Opened[2]++
			st.Remaining[2]--
		}, []string{InvEnd}},
		{"409 a second after the end's answer", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 4, User: "e1", Kind: harness.KindRepeat, Attempt: 2, AtMs: 2500, Status: 409, Code: "ALREADY_OPENED", Amount: 2})
		}, []string{InvEnd}},
		{"ENDED before the end was sent", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 4, User: "e0", Kind: harness.KindFirst, Attempt: 1, AtMs: 500, Status: 400, Code: "ENDED"})
		}, []string{InvEnd}},
		{"no open answered ENDED", func(f *fixture) {
			for _, u := range []string{"e3", "e4", "e5"} {
				drop(f, 4, u)
			}
			drop(f, 4, "e1") // and its re-open after the run
			f.recs = append(f.recs, harness.Record{Campaign: 4, User: "e1", Kind: harness.KindFirst, Attempt: 1, AtMs: 99, Status: 200, Code: "OK", Amount: 2})
		}, []string{InvEnd}},
		{"no claim before the end", func(f *fixture) {
			st := ended(f)
			drop(f, 4, "e1")
			drop(f, 4, "e2")
			st.Log, st.Redis, st.LogAt, st.RedisAt = map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
			st.LogRows, st.Opened[2], st.Remaining[2] = 0, 0, 100
		}, []string{InvEnd}},
		{"ENDED from a campaign not ended", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, AtMs: 2100, Status: 400, Code: "ENDED"})
		}, []string{InvAnswers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMerchantFixture()
			tt.edit(f)
			got := verdicts(t, f, CheckOptions{})
			expect(t, got, tt.failed, nil)
			for _, name := range tt.failed {
				if len(got[name].Examples) == 0 {
					t.Errorf("%s failed without an example", name)
				}
			}
		})
	}
}

// Without the merchant step, ENDED is an answer no campaign may give and
// the merchant verdicts are left out.
func TestCheckWithoutMerchant(t *testing.T) {
	f := newMerchantFixture()
	f.actions = nil
	got := verdicts(t, f, CheckOptions{})
	if _, ok := got[InvEnd]; ok {
		t.Errorf("end verdict without an end")
	}
	if !got[InvAnswers].Failed() {
		t.Errorf("ENDED answers accepted without an end: %+v", got[InvAnswers])
	}
}
