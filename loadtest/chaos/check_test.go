package main

import (
	"strings"
	"testing"

	"github.com/redpacket/rain/loadtest/harness"
)

// fixture is a small campaign pair and the records of a clean run on it.
type fixture struct {
	recs    []harness.Record
	states  []*harness.CampaignState
	actions []*harness.Action // the merchant step's (checkmerchant_test.go)
}

func newFixture() *fixture {
	big := &harness.CampaignState{ID: 1, Label: "big", Loaded: true,
		Total: map[int64]int64{5: 10, 20: 10}, Opened: map[int64]int64{5: 2, 20: 1},
		Log:       map[string]int64{"u1": 5, "u2": 20, "u3": 5},
		Redis:     map[string]int64{"u1": 5, "u2": 20, "u3": 5},
		Remaining: map[int64]int64{5: 8, 20: 9}, LogRows: 3}
	small := &harness.CampaignState{ID: 2, Label: "small", SoldOutOK: true, Loaded: true,
		Total: map[int64]int64{8: 1}, Opened: map[int64]int64{8: 1},
		Log: map[string]int64{"s1": 8}, Redis: map[string]int64{"s1": 8}, Remaining: map[int64]int64{}, LogRows: 1}
	return &fixture{
		recs: []harness.Record{
			{Campaign: 1, User: "u1", Kind: harness.KindFirst, Attempt: 1, Status: 200, Code: "OK", Amount: 5},
			{Campaign: 1, User: "u2", Kind: harness.KindFirst, Attempt: 1, Status: 200, Code: "OK", Amount: 20},
			{Campaign: 1, User: "u2", Kind: harness.KindVerify, Attempt: 1000, Status: 409, Code: "ALREADY_OPENED", Amount: 20},
			{Campaign: 1, User: "u3", Kind: harness.KindFirst, Attempt: 1, Status: 200, Code: "OK", Amount: 5},
			{Campaign: 2, User: "s1", Kind: harness.KindFirst, Attempt: 1, Status: 200, Code: "OK", Amount: 8},
			{Campaign: 2, User: "s2", Kind: harness.KindFirst, Attempt: 1, Status: 410, Code: "SOLD_OUT"},
		},
		states: []*harness.CampaignState{big, small},
	}
}

func verdicts(t *testing.T, f *fixture, opts CheckOptions) map[string]harness.Verdict {
	t.Helper()
	out := map[string]harness.Verdict{}
	opts.Actions = f.actions
	for _, v := range Check(f.recs, f.states, opts) {
		out[v.Name] = v
	}
	// One per invariant but alive, and restock and end only with an action of their kind.
	want := len(Invariants) - 3
	for _, kind := range []string{harness.ActionRestock, harness.ActionEnd} {
		for _, a := range f.actions {
			if a.Kind == kind {
				want++
				break
			}
		}
	}
	if len(out) != want {
		t.Fatalf("got %d verdicts, want %d", len(out), want)
	}
	return out
}

// expect checks that exactly the named invariants failed (or warned).
func expect(t *testing.T, got map[string]harness.Verdict, failed, warned []string) {
	t.Helper()
	isIn := func(s []string, x string) bool {
		for _, y := range s {
			if y == x {
				return true
			}
		}
		return false
	}
	for name, v := range got {
		switch {
		case isIn(failed, name):
			if !v.Failed() {
				t.Errorf("%s: want failed, got %+v", name, v)
			}
		case isIn(warned, name):
			if v.OK || !v.Warn {
				t.Errorf("%s: want a warning, got %+v", name, v)
			}
		case !v.OK:
			t.Errorf("%s: want ok, got %+v", name, v)
		}
	}
}

func TestCheckCleanRun(t *testing.T) {
	got := verdicts(t, newFixture(), CheckOptions{})
	expect(t, got, nil, nil)
	if got[InvAcked].Short != "4" {
		t.Errorf("users told of a claim: %q, want 4", got[InvAcked].Short)
	}
}

func TestCheckViolations(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(f *fixture)
		opts   CheckOptions
		failed []string
		warned []string
	}{
		{"200 missing from claim_log", func(f *fixture) {
			delete(f.states[0].Log, "u3")
			f.states[0].LogRows--
			f.states[0].Opened[5]--
		}, CheckOptions{}, []string{InvAcked, InvRedisLog}, nil},
		{"200 with another amount in claim_log", func(f *fixture) {
			f.states[0].Log["u1"] = 20
			f.states[0].Opened[5]--
			f.states[0].Opened[20]++
		}, CheckOptions{}, []string{InvAcked, InvRedisLog}, nil},
		{"two 200s", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u1", Kind: harness.KindRepeat, Attempt: 2, Status: 200, Code: "OK", Amount: 5})
		}, CheckOptions{}, []string{InvOneClaim}, nil},
		{"409 with another amount", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u1", Kind: harness.KindRepeat, Attempt: 2, Status: 409, Code: "ALREADY_OPENED", Amount: 20})
		}, CheckOptions{}, []string{InvOneClaim}, nil},
		{"409 to a new user", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, Status: 409, Code: "ALREADY_OPENED", Amount: 5})
		}, CheckOptions{}, []string{InvOneClaim, InvAcked}, nil},
		{"no answer, then 409 of the lost claim", func(f *fixture) {
			f.recs[0].Status, f.recs[0].Code, f.recs[0].Amount, f.recs[0].Err = 0, "", 0, "reset"
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u1", Kind: harness.KindRetry, Attempt: 2, Status: 409, Code: "ALREADY_OPENED", Amount: 5})
		}, CheckOptions{NoAnswerOK: true}, nil, nil},
		{"no answer, then 409 with another amount", func(f *fixture) {
			f.recs[0].Status, f.recs[0].Code, f.recs[0].Amount, f.recs[0].Err = 0, "", 0, "reset"
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u1", Kind: harness.KindRetry, Attempt: 2, Status: 409, Code: "ALREADY_OPENED", Amount: 20})
		}, CheckOptions{NoAnswerOK: true}, []string{InvRetries, InvOneClaim, InvAcked}, nil},
		{"no answer while the api should answer", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, Err: "timeout"})
		}, CheckOptions{}, []string{InvAnswers}, nil},
		{"a 503 had claimed", func(f *fixture) {
			f.recs[0].Status, f.recs[0].Code, f.recs[0].Amount = 503, "BUSY", 0
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u1", Kind: harness.KindRetry, Attempt: 2, Status: 409, Code: "ALREADY_OPENED", Amount: 5})
		}, CheckOptions{}, []string{InvRetries}, nil},
		{"a 503 had claimed, tolerated", func(f *fixture) {
			f.recs[0].Status, f.recs[0].Code, f.recs[0].Amount = 503, "BUSY", 0
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u1", Kind: harness.KindRetry, Attempt: 2, Status: 409, Code: "ALREADY_OPENED", Amount: 5})
		}, CheckOptions{Tolerate503Claims: true}, nil, []string{InvRetries}},
		{"503 then 410, and the user holds a claim", func(f *fixture) {
			f.recs[4].Status, f.recs[4].Code, f.recs[4].Amount = 503, "BUSY", 0
			f.recs = append(f.recs, harness.Record{Campaign: 2, User: "s1", Kind: harness.KindRetry, Attempt: 2, Status: 410, Code: "SOLD_OUT"})
		}, CheckOptions{Tolerate503Claims: true}, []string{InvOneClaim}, []string{InvRetries}},
		{"410 to a user who holds a claim", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 2, User: "s1", Kind: harness.KindVerify, Attempt: 1000, Status: 410, Code: "SOLD_OUT"})
		}, CheckOptions{}, []string{InvOneClaim}, nil},
		{"opened_count off", func(f *fixture) {
			f.states[0].Opened[20] = 2
		}, CheckOptions{}, []string{InvOpened}, nil},
		{"stock off", func(f *fixture) {
			f.states[0].Remaining[5] = 9
		}, CheckOptions{}, []string{InvStock}, nil},
		{"campaign gone from Redis", func(f *fixture) {
			f.states[0].Loaded = false
		}, CheckOptions{}, []string{InvStock}, nil},
		{"410 with stock left", func(f *fixture) {
			f.states[1].Total[8] = 2
			f.states[1].Remaining[8] = 1
			f.states[1].Opened[8] = 1
		}, CheckOptions{}, []string{InvStock}, nil},
		{"claim in Redis only", func(f *fixture) {
			f.states[0].Redis["u7"] = 5
			f.states[0].Remaining[5]--
		}, CheckOptions{}, []string{InvRedisLog}, nil},
		{"claim in claim_log only", func(f *fixture) {
			delete(f.states[0].Redis, "u3")
			f.states[0].Remaining[5]++
		}, CheckOptions{}, []string{InvRedisLog}, nil},
		{"500", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, Status: 500, Code: "INTERNAL"})
		}, CheckOptions{}, []string{InvAnswers}, nil},
		{"503 that is not BUSY", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, Status: 503, Code: "UNPARSABLE"})
		}, CheckOptions{}, []string{InvAnswers}, nil},
		{"410 from a campaign that cannot sell out", func(f *fixture) {
			f.recs = append(f.recs, harness.Record{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, Status: 410, Code: "SOLD_OUT"})
		}, CheckOptions{}, []string{InvAnswers, InvStock}, nil},
		{"nothing claimed at all", func(f *fixture) {
			f.recs = []harness.Record{{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, Status: 503, Code: "BUSY"}}
			for _, st := range f.states {
				st.Log, st.Redis, st.LogRows = map[string]int64{}, map[string]int64{}, 0
				for a, n := range st.Total {
					st.Remaining[a], st.Opened[a] = n, 0
				}
			}
		}, CheckOptions{}, []string{InvAnswers}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			tt.edit(f)
			got := verdicts(t, f, tt.opts)
			expect(t, got, tt.failed, tt.warned)
			for _, name := range tt.failed {
				if len(got[name].Examples) == 0 {
					t.Errorf("%s failed without an example", name)
				}
			}
		})
	}
}

func TestRetryCounts(t *testing.T) {
	f := newFixture()
	// u1: no answer, then 409 (the lost attempt had claimed).
	f.recs[0].Status, f.recs[0].Code, f.recs[0].Amount, f.recs[0].Err = 0, "", 0, "refused"
	f.recs = append(f.recs,
		harness.Record{Campaign: 1, User: "u1", Kind: harness.KindRetry, Attempt: 2, Status: 409, Code: "ALREADY_OPENED", Amount: 5},
		// u8: no answer twice, then 200... and u9: never answered, holds nothing.
		harness.Record{Campaign: 1, User: "u9", Kind: harness.KindFirst, Attempt: 1, Err: "refused"},
		harness.Record{Campaign: 1, User: "u9", Kind: harness.KindRetry, Attempt: 2, Status: 503, Code: "BUSY"})
	got := verdicts(t, f, CheckOptions{NoAnswerOK: true})
	expect(t, got, nil, nil)
	d := got[InvRetries].Detail
	for _, want := range []string{"2 users retried", "2 had no answer", "1 had claimed", "1 never answered", "0 hold a claim they were never told of"} {
		if !strings.Contains(d, want) {
			t.Errorf("retries detail %q lacks %q", d, want)
		}
	}
}

func TestLivenessVerdict(t *testing.T) {
	l := harness.Liveness{Kills: map[string]int{"api": 1}, Restarts: map[string]int{"api": 1}, APIReady: true, Healthy: true}
	if v := l.Verdict(); !v.OK || v.Short != "1" {
		t.Errorf("healthy run: %+v", v)
	}
	l.Panics = []string{"api: panic: runtime error"}
	if v := l.Verdict(); !v.Failed() {
		t.Errorf("panic in the log: %+v", v)
	}
	l = harness.Liveness{APIReady: true, Healthy: false, Crashes: []string{"consumer: exit status 1"}}
	if v := l.Verdict(); !v.Failed() || len(v.Examples) != 2 {
		t.Errorf("crash and unhealthy consumer: %+v", v)
	}
}

func TestReport(t *testing.T) {
	f := newFixture()
	l := harness.Liveness{APIReady: true, Healthy: true, Outages: 1}
	res := []*ScenarioResult{
		{Name: "ok", Verdicts: append(Check(f.recs, f.states, CheckOptions{}), l.Verdict())},
		{Name: "broken", Err: "api not ready within 1m30s"},
	}
	if res[0].Failed() || !res[1].Failed() {
		t.Fatalf("Failed: %v %v", res[0].Failed(), res[1].Failed())
	}
	var b strings.Builder
	WriteReport(&b, "test", res)
	out := b.String()
	for _, want := range []string{"| ok | ✓ 4 | ✓ 5 |", "| broken | ✗ | ✗ |", "could not run to the end"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
