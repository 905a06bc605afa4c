package main

import (
	"bufio"
	"cmp"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Run is what the bench knows about the run as a whole.
type Run struct {
	StartedAt  string            `json:"started_at"`
	FinishedAt string            `json:"finished_at,omitempty"`
	Command    string            `json:"command"`
	Commit     string            `json:"commit"`
	Threads    int               `json:"threads"`
	Duration   string            `json:"duration"`
	Wrk        string            `json:"wrk"`
	Stack      map[string]string `json:"stack"` // component → version
	LoadStart  string            `json:"loadavg_start"`
	LoadEnd    string            `json:"loadavg_end,omitempty"`
	KeyPrefix  string            `json:"redis_key_prefix"`
	// Variants are the api configurations compared (extra environment of
	// each, "" for the defaults); the first is the baseline.
	Variants []string `json:"variants"`
	// Identity is the environment added to the last variant for the
	// identity phases (user tokens and limits on), their variant index
	// len(Variants); "" when they did not run.
	Identity    string `json:"identity,omitempty"`
	FloodClaims int    `json:"flood_claims"`
	Pprof       bool   `json:"pprof"` // the api was profiled: the numbers include the profiler's cost
	Topic       string `json:"topic"`
	Group       string `json:"group"`
}

// Machine is where the numbers came from.
type Machine struct {
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model"`
	RAMGiB   float64 `json:"ram_gib"`
	Kernel   string  `json:"kernel"`
	Go       string  `json:"go"`
}

// Kinds of phase.
const (
	Trivial   = "trivial"   // GET /healthz: the ceiling of the same server
	Open      = "open"      // new users open a campaign that does not sell out
	SoldOut   = "soldout"   // new users open a small campaign already sold out
	Duplicate = "duplicate" // users who opened a campaign open it again
	Flood     = "flood"     // new users open a sold-out campaign with FloodClaims claims
	Signed    = "signed"    // new users open a campaign that does not sell out, each with its user token
	Viewed    = "viewed"    // open, with BENCH_VIEWERS clients reading the campaign's live route (the console)
)

// kinds describes each kind of phase: title, request, expected status.
var kinds = map[string]struct {
	title, request string
	expected       int
}{
	Trivial:   {"trivial route", "GET /healthz", 200},
	Open:      {"open, unique users", "POST /campaign/{id}/open", 200},
	SoldOut:   {"flood after sell-out", "POST /campaign/{id}/open", 410},
	Duplicate: {"duplicate storm", "POST /campaign/{id}/open", 409},
	Flood:     {"sold-out flood, huge campaign", "POST /campaign/{id}/open", 410},
	Signed:    {"open, unique users, user tokens", "POST /campaign/{id}/open + Authorization", 200},
	Viewed:    {"open, unique users, console viewers", "POST /campaign/{id}/open, GET /campaign/{id}/live held open", 200},
}

// opens reports whether a kind of phase claims packets (then its claims
// are followed into PostgreSQL).
func opens(kind string) bool { return kind == Open || kind == Signed || kind == Viewed }

// Phase is one measured wrk run.
type Phase struct {
	Kind        string             `json:"kind"`
	Variant     int                `json:"variant"` // index into Run.Variants
	Connections int                `json:"connections"`
	Campaign    int64              `json:"campaign,omitempty"`
	Requests    int64              `json:"requests"`
	Seconds     float64            `json:"seconds"`
	RPS         float64            `json:"rps"`
	LatencyMS   map[string]float64 `json:"latency_ms"` // mean stdev max p50 p75 p90 p99 p999
	Statuses    map[string]int64   `json:"statuses"`
	Non2xx      map[string]int64   `json:"non_2xx"`
	// Unexpected counts answers other than the kind's expected status: the
	// phase did not measure what it says it did.
	Unexpected int64 `json:"unexpected"`
	// Reused counts the requests that repeated a user, their wrk thread's
	// share of the token file used up (signed phases).
	Reused       int64            `json:"reused_users,omitempty"`
	SocketErrors map[string]int64 `json:"socket_errors"`
	// CPU is what each part used during the phase, in cores (see Cores).
	CPU map[string]float64 `json:"cpu_cores,omitempty"`
	// RedisCPUus is Redis's CPU during the phase (INFO used_cpu_sys +
	// used_cpu_user), in µs; per request and per 200 in the report.
	RedisCPUus  float64      `json:"redis_cpu_us"`
	Persistence *Persistence `json:"persistence,omitempty"` // open phases
	// Viewers held the campaign's live route open during a viewed phase
	// and read ViewerEvents events in all.
	Viewers      int   `json:"viewers,omitempty"`
	ViewerEvents int64 `json:"viewer_events,omitempty"`
}

// Name is the phase as the tables show it: "open@64 v2".
func (p *Phase) Name(variants int) string {
	s := fmt.Sprintf("%s@%d", p.Kind, p.Connections)
	if variants > 1 {
		s += fmt.Sprintf(" v%d", p.Variant+1)
	}
	return s
}

// APIus is the api's CPU µs per request of the phase (0: not measured):
// on a shared machine, steadier than req/s, which moves with what the
// other users of the machine take.
func (p *Phase) APIus() float64 { return div(p.CPU["api"]*p.Seconds*1e6, float64(p.Requests)) }

// PerRequest is Redis CPU µs per request of the phase.
func (p *Phase) PerRequest() float64 { return div(p.RedisCPUus, float64(p.Requests)) }

// PerOK is Redis CPU µs per 200 of the phase (0: no 200).
func (p *Phase) PerOK() float64 { return div(p.RedisCPUus, float64(p.Statuses["200"])) }

func div(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// Target is one goal and whether this run met it (nil: not measured).
type Target struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Met   *bool  `json:"met"`
}

// Result is the JSON result of a run.
type Result struct {
	Run     Run      `json:"run"`
	Machine Machine  `json:"machine"`
	Phases  []Phase  `json:"phases"`
	Targets []Target `json:"targets"`
}

// Targets (2-core box, one run).
const (
	minOpenRatio    = 0.35 // open ≥ 0.35 × trivial
	maxOpenP99MS    = 10.0 // at 64 connections
	targetConns     = 64
	minSoldoutRatio = 0.9 // both sold-out floods
	minAtStop       = 0.95
	maxAllAfterMS   = 2000.0
	maxRedisRatio   = 0.4 // Redis CPU per 200 of a variant ≤ 0.4 × the baseline's
	maxIdentityCost = 0.1 // signed opens/trivial with the check on ≥ 0.9 × with it off
)

// variantCount is how many api configurations ran: BENCH_API_ENV's and
// the identity one.
func (r *Result) variantCount() int {
	if r.Run.Identity != "" {
		return len(r.Run.Variants) + 1
	}
	return len(r.Run.Variants)
}

// IdentityCost compares the signed phases with the check off (the last
// variant) and on (the identity variant), at the connections they ran:
// each one's req/s over its own trivial route's, and the cost, 1 - on/off
// (ok false when either is missing).
func (r *Result) IdentityCost() (off, on *Phase, ratioOff, ratioOn, cost float64, ok bool) {
	if r.Run.Identity == "" {
		return nil, nil, 0, 0, 0, false
	}
	v := len(r.Run.Variants)
	for i := range r.Phases {
		if p := &r.Phases[i]; p.Kind == Signed && p.Variant == v {
			on = p
			off = r.find(Signed, v-1, p.Connections)
			break
		}
	}
	if on == nil || off == nil {
		return off, on, 0, 0, 0, false
	}
	ratioOff, ratioOn = r.ratio(off), r.ratio(on)
	if ratioOff <= 0 || ratioOn <= 0 {
		return off, on, ratioOff, ratioOn, 0, false
	}
	return off, on, ratioOff, ratioOn, 1 - ratioOn/ratioOff, true
}

// newPhase fills a phase from wrk's result.
func newPhase(kind string, variant, conns int, campaign int64, w WrkResult) Phase {
	p := Phase{Kind: kind, Variant: variant, Connections: conns, Campaign: campaign, Requests: w.Requests,
		Seconds: float64(w.DurationUS) / 1e6, Statuses: w.Statuses, Non2xx: map[string]int64{},
		LatencyMS: map[string]float64{}, SocketErrors: map[string]int64{}, Reused: w.Reused}
	if p.Statuses == nil {
		p.Statuses = map[string]int64{}
	}
	p.RPS = div(float64(w.Requests), p.Seconds)
	for k, v := range w.LatencyUS {
		p.LatencyMS[k] = v / 1000
	}
	for s, n := range p.Statuses {
		code, _ := strconv.Atoi(s)
		if code < 200 || code > 299 {
			p.Non2xx[s] = n
		}
		if code != kinds[kind].expected {
			p.Unexpected += n
		}
	}
	for k, n := range w.Errors {
		if k != "status" && n > 0 { // "status" is wrk's own count of non-2xx/3xx
			p.SocketErrors[k] = n
		}
	}
	return p
}

// find returns the phase of that kind, variant and connections, or nil.
func (r *Result) find(kind string, variant, conns int) *Phase {
	for i := range r.Phases {
		if p := &r.Phases[i]; p.Kind == kind && p.Variant == variant && p.Connections == conns {
			return p
		}
	}
	return nil
}

// ratio is p's req/s over the trivial route's of the same variant and
// connections (0: no such trivial phase).
func (r *Result) ratio(p *Phase) float64 {
	if t := r.find(Trivial, p.Variant, p.Connections); t != nil {
		return div(p.RPS, t.RPS)
	}
	return 0
}

// targetConnsOf is the connection count the targets are read at: 64 when
// measured, else the first.
func (r *Result) targetConnsOf() int {
	if len(r.Phases) == 0 || r.find(Open, 0, targetConns) != nil {
		return targetConns
	}
	return r.Phases[0].Connections
}

// evaluate marks each target met or missed.
func (r *Result) evaluate() {
	r.Targets = nil
	add := func(name, value string, met *bool) { r.Targets = append(r.Targets, Target{name, value, met}) }
	yes := func(ok bool) *bool { return &ok }
	nv, names := len(r.Run.Variants), r.variantCount()
	conns := r.targetConnsOf()
	for v := range max(1, nv) {
		sfx := ""
		if nv > 1 {
			sfx = fmt.Sprintf(" (v%d)", v+1)
		}
		ratioTarget := func(kind string, min float64, label string) {
			name := fmt.Sprintf("%s ≥ %.2f × trivial%s", label, min, sfx)
			if p := r.find(kind, v, conns); p != nil && r.ratio(p) > 0 {
				add(name, fmt.Sprintf("%.3f × at %d connections", r.ratio(p), conns), yes(r.ratio(p) >= min))
			} else {
				add(name, "not measured", nil)
			}
		}
		ratioTarget(Open, minOpenRatio, "open")
		name := fmt.Sprintf("open p99 ≤ %g ms at %d connections%s", maxOpenP99MS, targetConns, sfx)
		if p := r.find(Open, v, targetConns); p != nil {
			add(name, fmt.Sprintf("%.2f ms", p.LatencyMS["p99"]), yes(p.LatencyMS["p99"] <= maxOpenP99MS))
		} else {
			add(name, "not measured", nil)
		}
		ratioTarget(SoldOut, minSoldoutRatio, "sold-out flood")
		ratioTarget(Flood, minSoldoutRatio, fmt.Sprintf("sold-out flood of %s claims", thousands(float64(r.Run.FloodClaims))))
	}
	for i := range r.Phases {
		p := &r.Phases[i]
		if !opens(p.Kind) {
			continue
		}
		name := fmt.Sprintf("%s: ≥ %.0f %% of claims in PostgreSQL at stop, all within %.0f s", p.Name(names), minAtStop*100, maxAllAfterMS/1000)
		switch ps := p.Persistence; {
		case ps == nil || ps.Claims == 0:
			add(name, "not measured", nil)
		case !ps.All:
			add(name, fmt.Sprintf("%.1f %% at stop; %s of %s after the %.0f s timeout", 100*ps.AtStopRatio,
				thousands(float64(ps.Final)), thousands(float64(ps.Claims)), ps.TimeoutMS/1000), yes(false))
		default:
			add(name, fmt.Sprintf("%.1f %% at stop; all after %.0f ms", 100*ps.AtStopRatio, ps.AllAfterMS),
				yes(ps.AtStopRatio >= minAtStop && ps.AllAfterMS <= maxAllAfterMS))
		}
	}
	if nv < 2 {
		add(fmt.Sprintf("Redis CPU per 200 ≤ %.1f × the baseline", maxRedisRatio), "not measured (one api configuration; see BENCH_API_ENV)", nil)
	}
	for v := 1; v < nv; v++ {
		for _, p := range r.Phases {
			if p.Kind != Open || p.Variant != v {
				continue
			}
			name := fmt.Sprintf("Redis CPU per 200, v%d ≤ %.1f × v1, at %d connections", v+1, maxRedisRatio, p.Connections)
			if b := r.find(Open, 0, p.Connections); b != nil && b.PerOK() > 0 && p.PerOK() > 0 {
				x := p.PerOK() / b.PerOK()
				add(name, fmt.Sprintf("%.1f µs vs %.1f µs: %.2f ×", p.PerOK(), b.PerOK(), x), yes(x <= maxRedisRatio))
			} else {
				add(name, "not measured", nil)
			}
		}
	}
	if r.Run.Identity != "" {
		name := fmt.Sprintf("identity check (user tokens, limits) costs ≤ %.0f %% of the open rate", maxIdentityCost*100)
		if _, on, ratioOff, ratioOn, cost, ok := r.IdentityCost(); ok {
			add(name, fmt.Sprintf("signed opens %.3f × trivial off, %.3f × on, at %d connections: %s", ratioOff, ratioOn, on.Connections, costText(cost)),
				yes(cost <= maxIdentityCost))
		} else {
			add(name, "not measured", nil)
		}
	}
	var fivexx int64
	var by, unexpected []string
	for _, p := range r.Phases {
		for s, n := range p.Statuses {
			if strings.HasPrefix(s, "5") {
				fivexx += n
				by = append(by, fmt.Sprintf("%s %s: %d", p.Name(names), s, n))
			}
		}
		if p.Unexpected > 0 {
			u := fmt.Sprintf("%s: %d not %d", p.Name(names), p.Unexpected, kinds[p.Kind].expected)
			if p.Reused > 0 {
				u += fmt.Sprintf(" (%d repeated a user: the token file ran out)", p.Reused)
			}
			unexpected = append(unexpected, u)
		}
	}
	slices.Sort(by)
	value := "0"
	if fivexx > 0 {
		value = fmt.Sprintf("%d: %s", fivexx, strings.Join(by, ", "))
	}
	add("zero 5xx", value, yes(fivexx == 0 && len(r.Phases) > 0))
	value = "all"
	if len(unexpected) > 0 {
		value = strings.Join(unexpected, ", ")
	}
	add("(sanity) every answer the phase's own: trivial, open, signed 200; floods 410; duplicates 409", value, yes(len(unexpected) == 0 && len(r.Phases) > 0))
}

// Missed lists the targets this run missed.
func (r *Result) Missed() []string {
	var out []string
	for _, t := range r.Targets {
		if t.Met != nil && !*t.Met {
			out = append(out, t.Name+" ("+t.Value+")")
		}
	}
	return out
}

// cpuParts are the columns of the CPU table, in order.
var cpuParts = []string{"api", "consumer", "redis", "postgres", "kafka", "wrk", "other", "machine"}

// Markdown renders the result as the tables of docs/benchmarks.md.
func (r *Result) Markdown() string {
	var b strings.Builder
	m, run := r.Machine, r.Run
	nv := r.variantCount()
	fmt.Fprintf(&b, "### make bench, %s\n\n", run.StartedAt)
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %.1f GiB RAM, Linux %s; load average at start %s, at end %s. "+
		"The machine is shared: absolute numbers are noisy, compare the ratios.\n", m.CPUs, m.CPUModel, m.RAMGiB, m.Kernel, run.LoadStart, run.LoadEnd)
	var stack []string
	for _, k := range slices.Sorted(maps.Keys(run.Stack)) {
		stack = append(stack, k+" "+run.Stack[k])
	}
	fmt.Fprintf(&b, "- Stack on 127.0.0.1: %s; Redis keys under `%s`; commit %s.\n", strings.Join(stack, ", "), run.KeyPrefix, run.Commit)
	fmt.Fprintf(&b, "- Load: %s on the same machine, %d threads, %s per phase.\n", run.Wrk, run.Threads, run.Duration)
	if nv > 1 {
		for i, v := range run.Variants {
			fmt.Fprintf(&b, "- v%d: api with %s%s.\n", i+1, variantText(v), map[bool]string{true: " (the baseline)"}[i == 0 && len(run.Variants) > 1])
		}
		if run.Identity != "" {
			fmt.Fprintf(&b, "- v%d: v%d's api with user tokens and limits on: `%s` (RATE_LIMIT_IP 0: all of wrk's load comes from one loopback address).\n",
				nv, len(run.Variants), run.Identity)
		}
	}
	fmt.Fprintf(&b, "- Command: `%s`\n", run.Command)
	if run.Pprof {
		b.WriteString("- Profiled run (BENCH_PPROF=1): the api's CPU and alloc profiles are in the run directory; the numbers include the profiler's cost.\n")
	}

	b.WriteString("\n| phase | request | req/s | × trivial | p50 ms | p99 ms | p99.9 ms | max ms | Redis µs/req | Redis µs/200 | statuses | non-2xx | socket errors |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|---|\n")
	for i := range r.Phases {
		p := &r.Phases[i]
		x := "1"
		if p.Kind != Trivial {
			x = "–"
			if v := r.ratio(p); v > 0 {
				x = fmt.Sprintf("%.3f", v)
			}
		}
		perOK := "–"
		if p.Statuses["200"] > 0 && p.Kind != Trivial {
			perOK = fmt.Sprintf("%.1f", p.PerOK())
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.1f | %s | %s | %s | %s |\n",
			p.Name(nv), kinds[p.Kind].title, thousands(p.RPS), x, p.LatencyMS["p50"], p.LatencyMS["p99"], p.LatencyMS["p999"],
			p.LatencyMS["max"], p.PerRequest(), perOK, counts(p.Statuses), counts(p.Non2xx), counts(p.SocketErrors))
	}
	fmt.Fprintf(&b, "\n`kind@connections`; trivial is `GET /healthz`, open `POST /campaign/{id}/open` by new users of a campaign that does not sell out, "+
		"signed the same with each user's token in `Authorization: Bearer`, "+
		"soldout by new users of a small sold-out campaign, duplicate by users who opened before, flood by new users of a sold-out campaign holding %s claims. "+
		"Redis µs: INFO used_cpu_sys + used_cpu_user over the phase, per request and per 200.\n", thousands(float64(run.FloodClaims)))
	r.variantsTable(&b)
	r.identityTable(&b)
	r.viewersTable(&b)

	if len(r.Phases) > 0 && r.Phases[0].CPU != nil {
		fmt.Fprintf(&b, "\nCPU used during each phase, in cores of %d (from /proc; PostgreSQL is the whole cluster; "+
			"\"other\" is the rest of the machine's busy time: other users of the machine, the OS):\n\n| phase |", m.CPUs)
		for _, k := range cpuParts {
			b.WriteString(" " + k + " |")
		}
		b.WriteString("\n|---|" + strings.Repeat("--:|", len(cpuParts)) + "\n")
		for i := range r.Phases {
			p := &r.Phases[i]
			fmt.Fprintf(&b, "| %s |", p.Name(nv))
			for _, k := range cpuParts {
				if v, ok := p.CPU[k]; ok {
					fmt.Fprintf(&b, " %.2f |", v)
				} else {
					b.WriteString(" – |")
				}
			}
			b.WriteString("\n")
		}
	}
	r.persistenceTable(&b)
	b.WriteString("\n| target | this run | |\n|---|---|---|\n")
	for _, t := range r.Targets {
		mark := "not measured"
		if t.Met != nil {
			mark = map[bool]string{true: "met", false: "**missed**"}[*t.Met]
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Name, t.Value, mark)
	}
	return b.String()
}

// persistenceTable writes how each open phase's claims reached PostgreSQL.
func (r *Result) persistenceTable(b *strings.Builder) {
	nv := r.variantCount()
	var rows []string
	for i := range r.Phases {
		p := &r.Phases[i]
		ps := p.Persistence
		if !opens(p.Kind) || ps == nil {
			continue
		}
		all := fmt.Sprintf("not all within %.0f s (%s)", ps.TimeoutMS/1000, thousands(float64(ps.Final)))
		if ps.All {
			all = fmt.Sprintf("%.0f ms", ps.AllAfterMS)
		}
		lag := "–"
		if ps.Lag != nil {
			lag = fmt.Sprintf("%.0f / %.0f / %.0f", ps.Lag.P50, ps.Lag.P99, ps.Lag.Max)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s (%.1f %%) | %s | %s | %s | %s | %s |", p.Name(nv),
			thousands(float64(ps.Claims)), thousands(float64(p.Statuses["200"])), thousands(float64(ps.AtStop)), 100*ps.AtStopRatio,
			all, thousands(ps.RowsPerSec), perRow(ps.PostgresCPUus), perRow(ps.ConsumerCPUus), lag))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nClaims of each open phase in PostgreSQL (claim_log): the api's count of claims, wrk's 200s, rows when wrk stopped, " +
		"how long until all were there (polled every 100 ms), rows/s while the load ran, CPU of PostgreSQL (the bench database's backends, " +
		"the WAL writer, checkpointer and background writer) and of the consumer per row written during the load, and the claim → row lag:\n\n")
	b.WriteString("| phase | claims | 200s | in claim_log at stop | all after | rows/s | PostgreSQL µs/row | consumer µs/row | lag p50 / p99 / max ms |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
}

// variantsTable compares the open phases of BENCH_API_ENV's
// configurations, connections by connections (with two or more).
func (r *Result) variantsTable(b *strings.Builder) {
	nv := len(r.Run.Variants)
	if nv < 2 {
		return
	}
	var conns []int
	for _, p := range r.Phases {
		if p.Kind == Open && !slices.Contains(conns, p.Connections) {
			conns = append(conns, p.Connections)
		}
	}
	fmt.Fprintf(b, "\nOpen phases by api configuration (v1 the baseline; target: Redis CPU per 200 ≤ %.1f × v1's):\n\n", maxRedisRatio)
	b.WriteString("| phase | api | req/s | × trivial | p50 ms | p99 ms | p99.9 ms | Redis µs/200 | × v1 |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, c := range conns {
		base := r.find(Open, 0, c)
		for v := range nv {
			p := r.find(Open, v, c)
			if p == nil {
				continue
			}
			x := "–"
			if base != nil && base.PerOK() > 0 && p.PerOK() > 0 {
				x = fmt.Sprintf("%.2f", p.PerOK()/base.PerOK())
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %s |\n", p.Name(r.variantCount()), variantText(r.Run.Variants[v]),
				thousands(p.RPS), ratioText(r.ratio(p)), p.LatencyMS["p50"], p.LatencyMS["p99"], p.LatencyMS["p999"], perRow(p.PerOK()), x)
		}
	}
}

// viewersTable compares each viewed phase with the open phase of the same
// configuration and connections.
func (r *Result) viewersTable(b *strings.Builder) {
	nv := r.variantCount()
	head := false
	for i := range r.Phases {
		p := &r.Phases[i]
		base := r.find(Open, p.Variant, p.Connections)
		if p.Kind != Viewed || base == nil {
			continue
		}
		if !head {
			fmt.Fprintf(b, "\nThe console's live view: the open phase again on a campaign of its own while %d clients hold its live route "+
				"(`GET /campaign/{id}/live`) open and read every event, next to the open phase without viewers; "+
				"api CPU µs/req is the api's CPU over the phase per request (steadier than req/s on a shared machine):\n\n", p.Viewers)
			b.WriteString("| phase | viewers | live events read | req/s | × trivial | p50 ms | p99 ms | p99.9 ms | api CPU µs/req | req/s vs no viewers | api µs/req vs no viewers |\n")
			b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
			head = true
		}
		for _, x := range []*Phase{base, p} {
			change, cpuChange := "–", "–"
			if x == p && base.RPS > 0 {
				change = fmt.Sprintf("%+.1f %%", (p.RPS/base.RPS-1)*100)
			}
			if x == p && base.APIus() > 0 && p.APIus() > 0 {
				cpuChange = fmt.Sprintf("%+.1f %%", (p.APIus()/base.APIus()-1)*100)
			}
			fmt.Fprintf(b, "| %s | %d | %d | %s | %s | %.2f | %.2f | %.2f | %.1f | %s | %s |\n", x.Name(nv), x.Viewers, x.ViewerEvents, thousands(x.RPS),
				ratioText(r.ratio(x)), x.LatencyMS["p50"], x.LatencyMS["p99"], x.LatencyMS["p999"], x.APIus(), change, cpuChange)
		}
	}
}

// identityTable compares the signed opens with the check off and on.
func (r *Result) identityTable(b *strings.Builder) {
	off, on, ratioOff, ratioOn, cost, ok := r.IdentityCost()
	if on == nil {
		return
	}
	nv := r.variantCount()
	fmt.Fprintf(b, "\nWho is opening: opens by new users at %d connections, each with its user token (`Authorization: Bearer v1....`), "+
		"against v%d's api, which ignores the token, and v%d's, which checks it (USER_TOKEN_SECRET) and limits each user "+
		"(RATE_LIMIT_USER=%d: each user opens once, so none is refused; RATE_LIMIT_IP 0, all the load coming from one loopback address); "+
		"each over the trivial route of its own api:\n\n", on.Connections, nv-1, nv, identityUserRate)
	b.WriteString("| phase | user tokens and limits | req/s | trivial req/s | × trivial | p50 ms | p99 ms | p99.9 ms | statuses |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|---|\n")
	for _, x := range []struct {
		p     *Phase
		what  string
		ratio float64
	}{{off, "off", ratioOff}, {on, "on", ratioOn}} {
		if x.p == nil {
			continue
		}
		trivial := "–"
		if t := r.find(Trivial, x.p.Variant, x.p.Connections); t != nil {
			trivial = thousands(t.RPS)
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %.2f | %.2f | %.2f | %s |\n", x.p.Name(nv), x.what, thousands(x.p.RPS), trivial,
			ratioText(x.ratio), x.p.LatencyMS["p50"], x.p.LatencyMS["p99"], x.p.LatencyMS["p999"], counts(x.p.Statuses))
	}
	if ok {
		fmt.Fprintf(b, "\nOn / off: %.3f × trivial / %.3f × trivial = %.3f: %s (target ≤ %.0f %%).\n",
			ratioOn, ratioOff, ratioOn/ratioOff, costText(cost), maxIdentityCost*100)
	}
}

// costText says what share of the open rate a check costs.
func costText(cost float64) string {
	if cost < 0 {
		return fmt.Sprintf("no cost measured (%.1f %% faster with it on: noise)", -cost*100)
	}
	return fmt.Sprintf("the check costs %.1f %% of the open rate", cost*100)
}

func ratioText(x float64) string {
	if x <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f", x)
}

func perRow(us float64) string {
	if us <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f", us)
}

// variantText is an api configuration as the report shows it.
func variantText(env string) string {
	if strings.TrimSpace(env) == "" {
		return "its defaults"
	}
	return "`" + env + "`"
}

// counts renders {"200": 5, "503": 1} as "200: 5, 503: 1" ("0" when empty).
func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.SortedFunc(maps.Keys(m), cmp.Compare) {
		parts = append(parts, fmt.Sprintf("%s: %s", k, thousands(float64(m[k]))))
	}
	return strings.Join(parts, ", ")
}

// thousands formats a count with separators: 1,234,567.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// machine describes this host.
func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.RAMGiB = kb / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
