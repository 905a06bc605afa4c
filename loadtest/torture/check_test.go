package main

import (
	"strings"
	"testing"

	"github.com/redpacket/rain/loadtest/harness"
)

// world is a history and the final state it is judged against.
type world struct {
	h      *History
	states []*harness.CampaignState
}

func rec(c int64, user, kind string, attempt int, at int64, status int, code string, amount int64) harness.Record {
	return harness.Record{Campaign: c, User: user, Kind: kind, Attempt: attempt, AtMs: at, LatMs: 5, Status: status, Code: code, Amount: amount}
}

func ok(c int64, user string, at, amount int64) harness.Record {
	return rec(c, user, harness.KindFirst, 1, at, 200, "OK", amount)
}

func state(id int64, total map[int64]int64, claims map[string]int64, left map[int64]int64) *harness.CampaignState {
	st := &harness.CampaignState{ID: id, K: 1, Loaded: true, Total: total, Opened: map[int64]int64{}, Remaining: left,
		Log: map[string]int64{}, Redis: map[string]int64{}, LogAt: map[string]int64{}, RedisAt: map[string]int64{}, EndMs: 1 << 50}
	for u, a := range claims {
		st.Log[u], st.Redis[u] = a, a
		st.LogAt[u], st.RedisAt[u] = 1000, 1000
		st.Opened[a]++
		st.LogRows++
	}
	return st
}

// clean is a run that broke nothing: campaign 1 keeps stock, campaign 2
// sells out; u3's first open went to the api killed meanwhile and got no
// answer, its retry 409 with the claim that open had made; after the
// faults, probe users are served.
func clean() *world {
	recs := []harness.Record{
		ok(1, "u1", 100, 5),
		ok(1, "u2", 200, 20),
		rec(1, "u2", harness.KindVerify, 1000, 9000, 409, "ALREADY_OPENED", 20),
		{Campaign: 1, User: "u3", Kind: harness.KindFirst, Attempt: 1, AtMs: 1500, LatMs: 3, Err: "reset"},
		rec(1, "u3", harness.KindRetry, 2, 2500, 409, "ALREADY_OPENED", 5),
		rec(1, "u4", harness.KindFirst, 1, 2600, 503, "BUSY", 0),
		rec(1, "u4", harness.KindRetry, 2, 3700, 200, "OK", 20),
		ok(2, "s1", 300, 8),
		ok(2, "s2", 400, 8),
		rec(2, "s3", harness.KindFirst, 1, 500, 410, "SOLD_OUT", 0),
		rec(1, "p1", harness.KindProbe, 1, 20000, 200, "OK", 5),
		rec(2, "p2", harness.KindProbe, 1, 20000, 410, "SOLD_OUT", 0),
	}
	return &world{
		h: &History{Tier: TierCluster, Ack: AckMaster, Records: recs,
			Windows: []Window{{Step: 0, Kind: "api-kill", Target: "api:0", FromMs: 1000, ToMs: 3000}},
			Campaigns: []CampaignRun{{ID: 1, Name: "hot", K: 1, Initial: map[int64]int64{5: 4, 20: 3}},
				{ID: 2, Name: "small", K: 1, Initial: map[int64]int64{8: 2}}}},
		states: []*harness.CampaignState{
			state(1, map[int64]int64{5: 4, 20: 3}, map[string]int64{"u1": 5, "u2": 20, "u3": 5, "u4": 20, "p1": 5}, map[int64]int64{5: 1, 20: 1}),
			state(2, map[int64]int64{8: 2}, map[string]int64{"s1": 8, "s2": 8}, map[int64]int64{}),
		},
	}
}

func (w *world) verdicts(t *testing.T) map[string]harness.Verdict {
	t.Helper()
	out := map[string]harness.Verdict{}
	vs := Check(w.h, w.states)
	if len(vs) != len(Invariants)-1 {
		t.Fatalf("%d verdicts, want one per invariant but alive", len(vs))
	}
	for _, v := range vs {
		out[v.Name] = v
	}
	return out
}

func (w *world) add(rs ...harness.Record) { w.h.Records = append(w.h.Records, rs...) }

func TestCheckCleanRun(t *testing.T) {
	for name, v := range clean().verdicts(t) {
		if !v.OK {
			t.Errorf("%s: %s %s %v", name, harness.Cell(v), v.Detail, v.Examples)
		}
	}
}

// Each kind of violation is reported by its invariant, with the user (or
// campaign) and the answers that show it.
func TestCheckViolations(t *testing.T) {
	cases := []struct {
		name, inv, want string
		edit            func(w *world)
	}{
		{"two packets", InvOnePacket, "u1 (campaign 1): 2 answers 200", func(w *world) {
			w.add(rec(1, "u1", harness.KindRepeat, 2, 5000, 200, "OK", 20))
		}},
		{"two packets in the stores", InvOnePacket, "u1 (campaign 1): claims in 2 buckets", func(w *world) {
			w.states[0].K, w.states[0].ClaimBuckets = 3, map[string][]int{"u1": {0, 2}}
		}},
		{"a lost OK", InvOKKept, "u2 (campaign 1): told 200 amount 20, claim_log has none", func(w *world) {
			st := w.states[0]
			delete(st.Log, "u2")
			delete(st.Redis, "u2")
			st.Opened[20]--
			st.LogRows--
			st.Remaining[20]++
		}},
		{"a re-open told another amount", InvOKKept, "re-open at 9000ms answered 409 5, want 409 20", func(w *world) {
			w.h.Records[2].Amount = 5
		}},
		{"an oversell", InvOversell, "campaign 2 amount 8: 3 users told of a packet, 3 claims in Redis", func(w *world) {
			w.add(ok(2, "s4", 450, 8))
			st := w.states[1]
			st.Log["s4"], st.Redis["s4"], st.Opened[8], st.LogRows = 8, 8, 3, 3
		}},
		{"stranded stock", InvStranded, "campaign 2 amount 8: 0 left + 2 claimed = 2 of 3: 1 packets neither left nor claimed", func(w *world) {
			w.states[1].Total[8] = 3
		}},
		{"stock in transit", InvStranded, "campaign 2: 1 packets in transit", func(w *world) {
			w.states[1].Total[8], w.states[1].Pending = 3, 1
		}},
		{"a stale 410", InvStale410, "campaign 1: 410 SOLD_OUT to u9 (first) at 4000ms, when at least 2 packets were left", func(w *world) {
			w.add(rec(1, "u9", harness.KindFirst, 1, 4000, 410, "SOLD_OUT", 0))
		}},
		{"a 410 to a holder", InvStale410, "s1 (campaign 2): 410 SOLD_OUT though the user holds a packet", func(w *world) {
			w.add(rec(2, "s1", harness.KindVerify, 1000, 9000, 410, "SOLD_OUT", 0))
		}},
		{"a stale 410 after a restock", InvStale410, "410 SOLD_OUT to s9 (first) at 9000ms", func(w *world) {
			restock(w, 5000)
			w.add(rec(2, "s9", harness.KindFirst, 1, 9000, 410, "SOLD_OUT", 0))
		}},
		{"not healed", InvHealed, "probe user p3 not served after the faults healed", func(w *world) {
			w.add(rec(1, "p3", harness.KindProbe, 1, 20000, 503, "BUSY", 0), rec(1, "p3", harness.KindRetry, 2, 22000, 503, "BUSY", 0))
		}},
		{"no OK while stock is left", InvHealed, "none of 1 probe users got OK", func(w *world) {
			w.h.Records[10] = rec(1, "p1", harness.KindProbe, 1, 20000, 503, "BUSY", 0)
			st := w.states[0]
			delete(st.Log, "p1")
			delete(st.Redis, "p1")
			st.Opened[5]--
			st.LogRows--
			st.Remaining[5]++
		}},
		{"an OK after the end", InvEnd, "u8 (first) sent 2000ms after the end's answer: 200", func(w *world) {
			end(w, 1, 3000)
			w.add(ok(1, "u8", 5000, 20))
			st := w.states[0]
			st.Log["u8"], st.Redis["u8"], st.LogAt["u8"], st.RedisAt["u8"] = 20, 20, 1000, 1000
			st.Opened[20]++
			st.LogRows++
			st.Remaining[20]--
		}},
		{"a claim after the end", InvEnd, "campaign 1: u1 claimed 500ms after the end", func(w *world) {
			end(w, 1, 3000)
			w.states[0].RedisAt["u1"] = w.states[0].EndMs + 500
		}},
		{"a restock applied twice", InvRestock, "campaign 2 amount 8: total 4 in PostgreSQL, want 2 + 1 restocked once", func(w *world) {
			restock(w, 5000)
			w.states[1].Total[8], w.states[1].Remaining[8] = 4, 2
		}},
		{"claim_log lacks a claim", InvRedisLog, "campaign 1: u1 has amount 5 in Redis, none in claim_log", func(w *world) {
			delete(w.states[0].Log, "u1")
		}},
		{"a 500", InvAnswers, "u7 (first #1, campaign 1) at 700ms: 500 INTERNAL", func(w *world) {
			w.add(rec(1, "u7", harness.KindFirst, 1, 700, 500, "INTERNAL", 0))
		}},
		{"no answer, no api killed", InvAnswers, "u7 (first #1, campaign 1, api 1) at 1500ms: no answer (timeout)", func(w *world) {
			r := rec(1, "u7", harness.KindFirst, 1, 1500, 0, "", 0)
			r.API, r.Err = 1, "timeout"
			w.add(r)
		}},
		{"a 503 that claimed", InvAnswers, "u4 (campaign 1): holds amount 20 though every open was answered, none 200", func(w *world) {
			w.h.Records[6] = rec(1, "u4", harness.KindRetry, 2, 3700, 409, "ALREADY_OPENED", 20)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := clean()
			c.edit(w)
			vs := w.verdicts(t)
			v := vs[c.inv]
			if v.OK || v.Warn {
				t.Fatalf("%s: %s, want it broken (%s)", c.inv, harness.Cell(v), v.Detail)
			}
			if !strings.Contains(strings.Join(v.Examples, "\n"), c.want) {
				t.Errorf("%s examples %q, want one with %q", c.inv, v.Examples, c.want)
			}
		})
	}
}

// restock adds one packet of 8 to campaign 2, answered 200 at ms, and its
// replay.
func restock(w *world, ms int64) {
	w.h.Actions = append(w.h.Actions, &harness.Action{Kind: harness.ActionRestock, Campaign: 2, Amount: 8, Count: 1, Base: 2, Key: "k",
		Attempts: []harness.Attempt{{AtMs: ms - 10, LatMs: 10, Status: 200, Total: 3}, {AtMs: ms + 10, LatMs: 5, Status: 200, Total: 3, Replay: true, Replayed: true}}})
	st := w.states[1]
	st.Total[8], st.Remaining[8], st.StockActions = 3, 1, 1
}

// end ends campaign id, answered 200 at ms (the driver's clock starts at
// unix ms 0 here).
func end(w *world, id, ms int64) {
	w.h.Actions = append(w.h.Actions, &harness.Action{Kind: harness.ActionEnd, Campaign: id,
		Attempts: []harness.Attempt{{AtMs: ms - 10, LatMs: 10, Status: 200}}})
	for _, st := range w.states {
		if st.ID == id {
			st.EndMs, st.EndedEarly = ms-5, true
		}
	}
	for i, r := range w.h.Records {
		if r.Campaign == id && r.Kind == harness.KindProbe {
			w.h.Records[i] = rec(id, r.User, r.Kind, r.Attempt, r.AtMs, 400, "ENDED", 0)
		}
	}
	for _, st := range w.states {
		if st.ID == id {
			delete(st.Log, "p1")
			delete(st.Redis, "p1")
			st.Opened[5]--
			st.LogRows--
			st.Remaining[5]++
		}
	}
}

// In ack mode master, what a lost master may break is tolerated near its
// window (a warning), and only there; in ack mode replica it fails.
func TestCheckMasterLossByAckMode(t *testing.T) {
	twice := func(ack string, from int64) harness.Verdict {
		w := clean()
		w.h.Ack = ack
		w.h.Windows = append(w.h.Windows, Window{Step: 1, Kind: "redis-kill", Target: "master:1", FromMs: from, ToMs: from + 3000, Loss: true})
		w.add(rec(1, "u1", harness.KindRepeat, 2, 5000, 200, "OK", 20))
		return w.verdicts(t)[InvOnePacket]
	}
	if v := twice(AckMaster, 4000); !v.Warn || v.Failed() || !strings.Contains(v.Examples[0], "tolerated") {
		t.Errorf("ack master, in the window: %s %v", harness.Cell(v), v.Examples)
	}
	if v := twice(AckMaster, 40_000); !v.Failed() {
		t.Errorf("ack master, far from the window: %s", harness.Cell(v))
	}
	if v := twice(AckReplica, 4000); !v.Failed() {
		t.Errorf("ack replica: %s", harness.Cell(v))
	}
}

// A 503 that had claimed is tolerated while a Redis node was down (its
// reply was lost with it), not otherwise.
func TestCheckClaimed503InRedisFault(t *testing.T) {
	w := clean()
	w.h.Records[6] = rec(1, "u4", harness.KindRetry, 2, 3700, 409, "ALREADY_OPENED", 20)
	w.h.Windows = append(w.h.Windows, Window{Step: 1, Kind: "redis-stop", Target: "replica:0", FromMs: 2000, ToMs: 2400})
	if v := w.verdicts(t)[InvAnswers]; !v.Warn || v.Failed() {
		t.Errorf("a 503 that claimed during a Redis stop: %s %v", harness.Cell(v), v.Examples)
	}
}

// In ack mode replica a 503 may have claimed: the replica wait ran past
// its timeout, and the claim stands (a retry gets 409 with its amount).
func TestCheckClaimed503AckReplica(t *testing.T) {
	w := clean()
	w.h.Ack = AckReplica
	w.h.Records[6] = rec(1, "u4", harness.KindRetry, 2, 3700, 409, "ALREADY_OPENED", 20)
	if v := w.verdicts(t)[InvAnswers]; !v.OK {
		t.Errorf("ack replica, a 503 that claimed: %s %v", harness.Cell(v), v.Examples)
	}
}

// A sold-out campaign restocked: the 410s before the restock are true,
// and the probe is served from the new stock.
func TestCheckRestockedAfterSoldOut(t *testing.T) {
	w := clean()
	restock(w, 5000)
	w.h.Records[11] = rec(2, "p2", harness.KindProbe, 1, 20000, 200, "OK", 8)
	st := w.states[1]
	st.Log["p2"], st.Redis["p2"], st.Opened[8], st.LogRows, st.Remaining[8] = 8, 8, 3, 3, 0
	for name, v := range w.verdicts(t) {
		if !v.OK {
			t.Errorf("%s: %s %s %v", name, harness.Cell(v), v.Detail, v.Examples)
		}
	}
}
