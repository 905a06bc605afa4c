package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// Run is what bench.sh knows about the run (run.json in the run directory).
type Run struct {
	StartedAt   string            `json:"started_at"`
	FinishedAt  string            `json:"finished_at,omitempty"`
	Command     string            `json:"command"`
	Commit      string            `json:"commit"`
	Threads     int               `json:"threads"`
	Connections int               `json:"connections"`
	Duration    string            `json:"duration"`
	Wrk         string            `json:"wrk"`
	Consumer    string            `json:"consumer"` // "running", or why not
	Stack       map[string]string `json:"stack"`    // component -> version / address
	LoadStart   string            `json:"loadavg_start"`
	LoadEnd     string            `json:"loadavg_end,omitempty"`
	Campaigns   map[string]int64  `json:"campaigns"`
	Skipped     int               `json:"skipped_campaigns"` // ids another database's campaign held in Redis
	Pprof       bool              `json:"pprof"`             // the api was profiled during (b), (c), (d)
	Topic       string            `json:"topic"`
	Group       string            `json:"group"`
}

// Machine is where the numbers came from.
type Machine struct {
	CPUs     int     `json:"cpus"`
	CPUModel string  `json:"cpu_model"`
	RAMGiB   float64 `json:"ram_gib"`
	Kernel   string  `json:"kernel"`
	Go       string  `json:"go"`
}

// WrkResult is the BENCH_JSON line of loadtest/wrk/bench.lua.
type WrkResult struct {
	Requests   int64              `json:"requests"`
	DurationUS int64              `json:"duration_us"`
	Bytes      int64              `json:"bytes"`
	Errors     map[string]int64   `json:"errors"`
	LatencyUS  map[string]float64 `json:"latency_us"`
	Statuses   map[string]int64   `json:"statuses"`
}

// Phase is one measured wrk run.
type Phase struct {
	Key       string             `json:"key"`
	Name      string             `json:"name"`
	Request   string             `json:"request"`
	Expected  int                `json:"expected_status"`
	Requests  int64              `json:"requests"`
	Seconds   float64            `json:"seconds"`
	RPS       float64            `json:"rps"`
	LatencyMS map[string]float64 `json:"latency_ms"` // mean stdev max p50 p75 p90 p99 p999
	Statuses  map[string]int64   `json:"statuses"`
	Non2xx    map[string]int64   `json:"non_2xx"`
	// Unexpected counts answers other than Expected: the phase did not
	// measure what it says it did.
	Unexpected   int64            `json:"unexpected"`
	SocketErrors map[string]int64 `json:"socket_errors"`
	// CPU is the CPU each part used during the phase, in cores: api,
	// consumer, redis, postgres (the whole cluster), kafka, wrk, other
	// (the rest of the machine's busy time: other users, the OS) and
	// machine (all busy time). Absent when bench.sh took no snapshots.
	CPU map[string]float64 `json:"cpu_cores,omitempty"`
}

// cpuParts are the columns of the CPU table, in order.
var cpuParts = []string{"api", "consumer", "redis", "postgres", "kafka", "wrk", "other", "machine"}

// Target is one goal of issue 5 and whether this run met it (nil: not measured).
type Target struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Met   *bool  `json:"met"`
}

// Result is the JSON result of a run.
type Result struct {
	Run         Run                `json:"run"`
	Machine     Machine            `json:"machine"`
	Phases      []Phase            `json:"phases"`
	Ratios      map[string]float64 `json:"ratios"`
	Persistence *Persistence       `json:"persistence"`
	Targets     []Target           `json:"targets"`
}

// phases in the order they run: file name, title, request, expected status.
var phaseDefs = []struct {
	key, file, name, request string
	expected                 int
}{
	{"a", "trivial", "trivial route", "GET /healthz", 200},
	{"b", "open", "open, unique users", "POST /campaign/{id}/open", 200},
	{"c", "soldout", "flood after sell-out", "POST /campaign/{id}/open", 410},
	{"d", "duplicate", "duplicate storm", "POST /campaign/{id}/open", 409},
}

// Targets of issue 5.
const (
	minOpenRatio    = 0.35
	maxOpenP99MS    = 10.0
	minSoldoutRatio = 0.9
	minAtStop       = 0.95
	maxAllAfterMS   = 2000.0
)

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	dir := fs.String("dir", "", "run directory (run.json, <phase>.json, persist.json)")
	out := fs.String("o", "", "write <o>.json and <o>.md")
	strict := fs.Bool("strict", false, "fail when a target is missed")
	fs.Parse(args)
	if *dir == "" || *out == "" {
		return fmt.Errorf("-dir and -o are required")
	}
	r, err := load(*dir)
	if err != nil {
		return err
	}
	r.Machine = machine()
	r.evaluate()
	if err := writeJSON(*out+".json", r); err != nil {
		return err
	}
	md := r.Markdown()
	if err := os.WriteFile(*out+".md", []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	if *strict {
		for _, t := range r.Targets {
			if t.Met != nil && !*t.Met {
				return fmt.Errorf("target missed: %s (%s)", t.Name, t.Value)
			}
		}
	}
	return nil
}

// load reads a run directory; a phase that did not run is left out.
func load(dir string) (*Result, error) {
	r := &Result{}
	if err := readJSON(filepath.Join(dir, "run.json"), &r.Run); err != nil {
		return nil, err
	}
	for _, d := range phaseDefs {
		var w WrkResult
		err := readJSON(filepath.Join(dir, d.file+".json"), &w)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		p := newPhase(d.key, d.name, d.request, d.expected, w)
		cpu, err := phaseCPU(dir, d.file)
		if err != nil {
			return nil, err
		}
		p.CPU = cpu
		r.Phases = append(r.Phases, p)
	}
	var p Persistence
	switch err := readJSON(filepath.Join(dir, "persist.json"), &p); {
	case err == nil:
		r.Persistence = &p
		if b := r.phase("b"); b != nil {
			p.WrkOK = b.Statuses["200"]
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return r, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// phaseCPU turns bench.sh's snapshots around a phase (NAME.cpu-before,
// NAME.cpu-after: "key ticks" lines; NAME.wrk-cpu: wrk's user and system
// seconds) into cores used. No snapshots: nil.
func phaseCPU(dir, name string) (map[string]float64, error) {
	before, err := readTicks(filepath.Join(dir, name+".cpu-before"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	after, err := readTicks(filepath.Join(dir, name+".cpu-after"))
	if err != nil {
		return nil, err
	}
	secs := (after["time_ns"] - before["time_ns"]) / 1e9
	tck := before["clk_tck"]
	if secs <= 0 || tck <= 0 {
		return nil, fmt.Errorf("%s: bad CPU snapshots", name)
	}
	cpu := map[string]float64{}
	known := 0.0
	for k, v := range after {
		if k == "time_ns" || k == "clk_tck" {
			continue
		}
		b, ok := before[k]
		if !ok || v < b {
			continue // a process that started or restarted in between
		}
		cpu[k] = (v - b) / tck / secs
		if k != "machine_busy" {
			known += cpu[k]
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, name+".wrk-cpu")); err == nil {
		var user, sys float64
		if _, err := fmt.Sscan(string(b), &user, &sys); err == nil {
			cpu["wrk"] = (user + sys) / secs
			known += cpu["wrk"]
		}
	}
	if m, ok := cpu["machine_busy"]; ok {
		delete(cpu, "machine_busy")
		cpu["machine"] = m
		cpu["other"] = max(0, m-known)
	}
	return cpu, nil
}

// readTicks reads "key number" lines.
func readTicks(path string) (map[string]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %q: %v", path, line, err)
			}
			m[f[0]] = v
		}
	}
	return m, nil
}

func newPhase(key, name, request string, expected int, w WrkResult) Phase {
	p := Phase{Key: key, Name: name, Request: request, Expected: expected, Requests: w.Requests,
		Seconds: float64(w.DurationUS) / 1e6, Statuses: w.Statuses, Non2xx: map[string]int64{},
		LatencyMS: map[string]float64{}, SocketErrors: map[string]int64{}}
	if p.Seconds > 0 {
		p.RPS = float64(w.Requests) / p.Seconds
	}
	for k, v := range w.LatencyUS {
		p.LatencyMS[k] = v / 1000
	}
	for s, n := range w.Statuses {
		code, _ := strconv.Atoi(s)
		if code < 200 || code > 299 {
			p.Non2xx[s] = n
		}
		if code != expected {
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

func (r *Result) phase(key string) *Phase {
	for i := range r.Phases {
		if r.Phases[i].Key == key {
			return &r.Phases[i]
		}
	}
	return nil
}

// evaluate computes the ratios and marks each target met or missed.
func (r *Result) evaluate() {
	r.Ratios = map[string]float64{}
	a, b, c, d := r.phase("a"), r.phase("b"), r.phase("c"), r.phase("d")
	ratio := func(name string, p *Phase) *float64 {
		if a == nil || p == nil || a.RPS == 0 {
			return nil
		}
		v := p.RPS / a.RPS
		r.Ratios[name] = v
		return &v
	}
	open, soldout := ratio("open/trivial", b), ratio("soldout/trivial", c)
	ratio("duplicate/trivial", d)

	add := func(name, value string, met *bool) { r.Targets = append(r.Targets, Target{name, value, met}) }
	yes := func(ok bool) *bool { return &ok }
	if open != nil {
		add(fmt.Sprintf("open (b) ≥ %.2f × trivial (a)", minOpenRatio), fmt.Sprintf("%.3f ×", *open), yes(*open >= minOpenRatio))
	} else {
		add(fmt.Sprintf("open (b) ≥ %.2f × trivial (a)", minOpenRatio), "not measured", nil)
	}
	name := fmt.Sprintf("open p99 ≤ %g ms at %d connections", maxOpenP99MS, r.Run.Connections)
	if b != nil {
		add(name, fmt.Sprintf("%.2f ms", b.LatencyMS["p99"]), yes(b.LatencyMS["p99"] <= maxOpenP99MS))
	} else {
		add(name, "not measured", nil)
	}
	if soldout != nil {
		add(fmt.Sprintf("sold-out flood (c) ≥ %.2f × trivial (a)", minSoldoutRatio), fmt.Sprintf("%.3f ×", *soldout), yes(*soldout >= minSoldoutRatio))
	} else {
		add(fmt.Sprintf("sold-out flood (c) ≥ %.2f × trivial (a)", minSoldoutRatio), "not measured", nil)
	}
	p := r.Persistence
	if p != nil && p.Claims > 0 {
		add(fmt.Sprintf("≥ %.0f %% of (b)'s claims in PostgreSQL at stop", minAtStop*100),
			fmt.Sprintf("%.1f %% (%s of %s)", 100*p.AtStopRatio, thousands(float64(p.AtStop)), thousands(float64(p.Claims))), yes(p.AtStopRatio >= minAtStop))
		if p.All {
			add("100 % within 2 s", fmt.Sprintf("%.0f ms", p.AllAfterMS), yes(p.AllAfterMS <= maxAllAfterMS))
		} else {
			add("100 % within 2 s", fmt.Sprintf("%d of %d after the %.0f s timeout", p.Final, p.Claims, p.TimeoutMS/1000), yes(false))
		}
	} else {
		why := "not measured (consumer " + r.Run.Consumer + ")"
		add(fmt.Sprintf("≥ %.0f %% of (b)'s claims in PostgreSQL at stop", minAtStop*100), why, nil)
		add("100 % within 2 s", why, nil)
	}
	var fivexx int64
	var by []string
	for _, ph := range r.Phases {
		for s, n := range ph.Statuses {
			if strings.HasPrefix(s, "5") {
				fivexx += n
				by = append(by, fmt.Sprintf("(%s) %s: %d", ph.Key, s, n))
			}
		}
	}
	sort.Strings(by)
	value := "0"
	if fivexx > 0 {
		value = fmt.Sprintf("%d: %s", fivexx, strings.Join(by, ", "))
	}
	add("zero 5xx", value, yes(fivexx == 0 && len(r.Phases) == len(phaseDefs)))
	var unexpected []string
	for _, ph := range r.Phases {
		if ph.Unexpected > 0 {
			unexpected = append(unexpected, fmt.Sprintf("(%s) %d not %d", ph.Key, ph.Unexpected, ph.Expected))
		}
	}
	value = "all"
	if len(unexpected) > 0 {
		value = strings.Join(unexpected, ", ")
	}
	add("(sanity) every answer the phase's own: 200, 200, 410, 409", value, yes(len(unexpected) == 0 && len(r.Phases) == len(phaseDefs)))
}

// Markdown renders the result as the table for the README.
func (r *Result) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "### make bench, %s\n\n", r.Run.StartedAt)
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %.1f GiB RAM, Linux %s; load average at start %s, at end %s. "+
		"The machine is shared: absolute numbers are noisy, compare the ratios.\n", m.CPUs, m.CPUModel, m.RAMGiB, m.Kernel, r.Run.LoadStart, r.Run.LoadEnd)
	keys := make([]string, 0, len(r.Run.Stack))
	for k := range r.Run.Stack {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var stack []string
	for _, k := range keys {
		stack = append(stack, k+" "+r.Run.Stack[k])
	}
	fmt.Fprintf(&b, "- Stack on 127.0.0.1: %s; consumer %s; commit %s.\n", strings.Join(stack, ", "), r.Run.Consumer, r.Run.Commit)
	fmt.Fprintf(&b, "- Load: %s on the same machine, %d threads, %d connections, %s per phase.\n", r.Run.Wrk, r.Run.Threads, r.Run.Connections, r.Run.Duration)
	fmt.Fprintf(&b, "- Command: `%s`\n", r.Run.Command)
	if r.Run.Pprof {
		b.WriteString("- Profiled run (BENCH_PPROF=1): CPU and alloc profiles of (b), (c), (d) are in the run directory; the numbers include the profiler's cost.\n")
	}
	if r.Run.Skipped > 0 {
		fmt.Fprintf(&b, "- %d new campaign id(s) were skipped: Redis already held another database's campaign under them (tests share Redis).\n", r.Run.Skipped)
	}
	b.WriteString("\n")

	b.WriteString("| phase | request | req/s | × (a) | p50 ms | p99 ms | p99.9 ms | max ms | statuses | non-2xx | socket errors |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|---|---|---|\n")
	a := r.phase("a")
	for _, p := range r.Phases {
		x := "1"
		if a != nil && a.RPS > 0 && p.Key != "a" {
			x = fmt.Sprintf("%.3f", p.RPS/a.RPS)
		}
		fmt.Fprintf(&b, "| (%s) %s | %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %s | %s | %s |\n",
			p.Key, p.Name, p.Request, thousands(p.RPS), x, p.LatencyMS["p50"], p.LatencyMS["p99"], p.LatencyMS["p999"], p.LatencyMS["max"],
			counts(p.Statuses), counts(p.Non2xx), counts(p.SocketErrors))
	}
	if len(r.Phases) > 0 && r.Phases[0].CPU != nil {
		fmt.Fprintf(&b, "\nCPU used during each phase, in cores of %d (from /proc; PostgreSQL is the whole cluster; "+
			"\"other\" is the rest of the machine's busy time: other users of the machine, the OS):\n\n", r.Machine.CPUs)
		b.WriteString("| phase |")
		for _, k := range cpuParts {
			b.WriteString(" " + k + " |")
		}
		b.WriteString("\n|---|" + strings.Repeat("--:|", len(cpuParts)) + "\n")
		for _, p := range r.Phases {
			fmt.Fprintf(&b, "| (%s) |", p.Key)
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
	if p := r.Persistence; p != nil {
		fmt.Fprintf(&b, "\nPersistence of (b): %s claims (the api's count; wrk saw %s × 200). In claim_log at stop: %s (%.1f %%, counted %.1f ms after wrk exited). ",
			thousands(float64(p.Claims)), thousands(float64(p.WrkOK)), thousands(float64(p.AtStop)), 100*p.AtStopRatio, p.AtStopAfterMS)
		if p.All {
			fmt.Fprintf(&b, "All in claim_log %.0f ms after the stop (polled every %.0f ms", p.AllAfterMS, p.IntervalMS)
			if p.LastPersistedAfterMS != nil {
				fmt.Fprintf(&b, "; newest persisted_at %.0f ms after the stop", *p.LastPersistedAfterMS)
			}
			b.WriteString(").")
		} else {
			fmt.Fprintf(&b, "NOT all in claim_log before the %.0f s timeout: %s of %s.", p.TimeoutMS/1000, thousands(float64(p.Final)), thousands(float64(p.Claims)))
		}
		if p.Lag != nil {
			fmt.Fprintf(&b, " Claim → row lag: p50 %.0f ms, p99 %.0f ms, max %.0f ms.", p.Lag.P50, p.Lag.P99, p.Lag.Max)
		}
		b.WriteString("\n")
	} else {
		fmt.Fprintf(&b, "\nPersistence of (b): not measured (consumer %s).\n", r.Run.Consumer)
	}
	b.WriteString("\n| target (issue 5) | this run | |\n|---|---|---|\n")
	for _, t := range r.Targets {
		mark := "not measured"
		if t.Met != nil {
			mark = map[bool]string{true: "met", false: "**missed**"}[*t.Met]
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Name, t.Value, mark)
	}
	return b.String()
}

// counts renders {"200": 5, "503": 1} as "200: 5, 503: 1" ("0" when empty).
func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %s", k, thousands(float64(m[k])))
	}
	return strings.Join(parts, ", ")
}

// thousands formats a count with thin separators: 1,234,567.
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
