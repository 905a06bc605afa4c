package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// wrkLine is a BENCH_JSON line of a 10 s wrk run.
func wrkLine(requests, p99us int, statuses string) string {
	return fmt.Sprintf(`BENCH_JSON {"requests":%d,"duration_us":10000000,"bytes":1,`+
		`"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},`+
		`"latency_us":{"mean":1,"stdev":1,"max":50000,"p50":500,"p75":600,"p90":700,"p99":%d,"p999":20000},`+
		`"statuses":%s}`, requests, p99us, statuses)
}

func phase(t *testing.T, kind string, variant, conns int, line string) Phase {
	t.Helper()
	w, err := parseWrk("Running 10s test @ http://127.0.0.1:18080/\n" + line + "\n")
	if err != nil {
		t.Fatal(err)
	}
	return newPhase(kind, variant, conns, 1, w)
}

func met(t *testing.T, r *Result, prefix string) *bool {
	t.Helper()
	for _, tg := range r.Targets {
		if strings.HasPrefix(tg.Name, prefix) {
			return tg.Met
		}
	}
	t.Fatalf("no target %q in %+v", prefix, r.Targets)
	return nil
}

func TestParseWrk(t *testing.T) {
	if _, err := parseWrk("Running 10s test\nsocket errors\n"); err == nil {
		t.Error("no BENCH_JSON line: want an error")
	}
	if _, err := parseWrk("BENCH_JSON {\"requests\":"); err == nil {
		t.Error("a cut BENCH_JSON line: want an error")
	}
	if _, err := parseWrk(`BENCH_JSON {"requests":5}`); err == nil {
		t.Error("no duration: want an error")
	}
	p := phase(t, Open, 0, 64, strings.Replace(wrkLine(1000, 9000, `{"200":990,"503":10}`), `"timeout":0`, `"timeout":3`, 1))
	if p.RPS != 100 || p.LatencyMS["p99"] != 9 || p.Unexpected != 10 || p.Non2xx["503"] != 10 || p.SocketErrors["timeout"] != 3 {
		t.Errorf("phase = %+v", p)
	}
}

func TestWrkArgs(t *testing.T) {
	l := Load{URL: "http://127.0.0.1:1/campaign/7/open", Mode: "fixed", Prefix: "p", Users: 64, Threads: 2, Connections: 256, Duration: 1500 * time.Millisecond}
	got := strings.Join(l.args("s.lua"), " ")
	want := "-t2 -c256 -d2s --timeout 2s --latency -s s.lua http://127.0.0.1:1/campaign/7/open -- fixed p 64"
	if got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
}

func TestTargets(t *testing.T) {
	r := &Result{Run: Run{Variants: []string{"", "CLAIM_BATCH=1"}, FloodClaims: 1_000_000}}
	ok := `{"200":1000000}`
	r.Phases = []Phase{
		phase(t, Trivial, 0, 64, wrkLine(1_000_000, 2000, ok)),
		phase(t, Open, 0, 64, wrkLine(400_000, 9000, `{"200":399990,"503":10}`)),
		phase(t, SoldOut, 0, 64, wrkLine(850_000, 3000, `{"410":850000}`)),
		phase(t, Flood, 0, 64, wrkLine(950_000, 3000, `{"410":950000}`)),
		phase(t, Duplicate, 0, 64, wrkLine(950_000, 3000, `{"409":949999,"200":1}`)),
		phase(t, Trivial, 1, 64, wrkLine(1_000_000, 2000, ok)),
		phase(t, Open, 1, 64, wrkLine(300_000, 12000, `{"200":300000}`)),
	}
	r.Phases[1].RedisCPUus = 399990 * 25
	r.Phases[6].RedisCPUus = 300000 * 9
	r.Phases[1].Persistence = &Persistence{Claims: 399995, AtStop: 390000, AtStopRatio: 0.975, All: true, AllAfterMS: 2500, Final: 399995}
	r.Phases[6].Persistence = &Persistence{Claims: 300000, AtStop: 299000, AtStopRatio: 0.996, All: true, AllAfterMS: 300, Final: 300000}
	r.evaluate()
	for _, c := range []struct {
		prefix string
		want   bool
	}{
		{"open ≥ 0.35 × trivial (v1)", true},
		{"open p99 ≤ 10 ms at 64 connections (v1)", true},
		{"sold-out flood ≥ 0.90 × trivial (v1)", false},
		{"sold-out flood of 1,000,000 claims ≥ 0.90 × trivial (v1)", true},
		{"open ≥ 0.35 × trivial (v2)", false},
		{"open p99 ≤ 10 ms at 64 connections (v2)", false},
		{"open@64 v1: ≥ 95 %", false}, // all after 2.5 s
		{"open@64 v2: ≥ 95 %", true},
		{"Redis CPU per 200, v2 ≤ 0.4 × v1, at 64", true}, // 9 / 25 = 0.36
		{"zero 5xx", false},
		{"(sanity)", false},
	} {
		got := met(t, r, c.prefix)
		if got == nil || *got != c.want {
			t.Errorf("%s: met = %v, want %v", c.prefix, got, c.want)
		}
	}
	if got := met(t, r, "sold-out flood ≥ 0.90 × trivial (v2)"); got != nil {
		t.Errorf("a phase that did not run: met = %v, want not measured", *got)
	}
	if len(r.Missed()) != 6 {
		t.Errorf("missed = %d %q, want 6", len(r.Missed()), r.Missed())
	}

	md := r.Markdown()
	for _, want := range []string{
		"| open@64 v1 | open, unique users | 40,000 | 0.400 | 0.50 | 9.00 | 20.00 | 50.00 | 25.0 | 25.0 | 200: 399,990, 503: 10 | 503: 10 | 0 |",
		"| open@64 v2 | open, unique users | 30,000 | 0.300 |",
		"- v2: api with `CLAIM_BATCH=1`.",
		"| open@64 v1 | 399,995 | 399,990 | 390,000 (97.5 %) | 2500 ms |",
		"| zero 5xx | 10: open@64 v1 503: 10 | **missed** |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestTargetsOneVariant(t *testing.T) {
	r := &Result{Run: Run{Variants: []string{""}}}
	r.Phases = []Phase{phase(t, Trivial, 0, 256, wrkLine(100, 1, `{"200":100}`)), phase(t, Open, 0, 256, wrkLine(50, 1, `{"200":50}`))}
	r.evaluate()
	if got := met(t, r, "open ≥ 0.35 × trivial"); got == nil || !*got {
		t.Errorf("open at the only connection count measured: met = %v", got)
	}
	if got := met(t, r, "open p99 ≤ 10 ms at 64"); got != nil {
		t.Errorf("p99 at 64 connections, not measured: met = %v", *got)
	}
	if got := met(t, r, "Redis CPU per 200"); got != nil {
		t.Errorf("one variant: the batching target is not measured, got %v", *got)
	}
	if strings.Contains(r.Markdown(), " v1") {
		t.Error("one variant: phases are not numbered")
	}
}

func TestCPU(t *testing.T) {
	stat := []byte("4242 (redis-server (x) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 50 7 3 20 0 4 0 100 0 0")
	if n, err := statTicks(stat); err != nil || n != 210 {
		t.Errorf("statTicks = %d, %v; want 210", n, err)
	}
	if p := statPPid(stat); p != 1 {
		t.Errorf("statPPid = %d, want 1", p)
	}
	if _, err := statTicks([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("a short stat line: want an error")
	}
	if n, err := statBusy([]byte("cpu  100 5 50 1000 9 2 3 0 0 0\ncpu0 1 2 3\n")); err != nil || n != 160 {
		t.Errorf("statBusy = %d, %v; want 160", n, err)
	}
	if _, err := statBusy([]byte("intr 1 2 3")); err == nil {
		t.Error("no cpu line: want an error")
	}
	t0 := time.Unix(0, 0)
	before := Snapshot{At: t0, Machine: 1000, Ticks: map[string]int64{"api": 100, "redis": 50, "consumer": 900}}
	after := Snapshot{At: t0.Add(2 * time.Second), Machine: 1300, Ticks: map[string]int64{"api": 250, "redis": 90, "consumer": 10}}
	c := Cores(before, after, 0.2)
	want := map[string]float64{"api": 0.75, "redis": 0.2, "wrk": 0.1, "machine": 1.5, "other": 0.45}
	for k, v := range want {
		if d := c[k] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("cores[%s] = %v, want %v", k, c[k], v)
		}
	}
	if _, ok := c["consumer"]; ok {
		t.Error("a part that restarted (ticks went down) must be left out")
	}
	if s := cpuSeconds(before, after, "consumer"); s != -1 {
		t.Errorf("cpuSeconds of a restarted part = %v, want -1", s)
	}
	if s := cpuSeconds(before, after, "api"); s != 1.5 {
		t.Errorf("cpuSeconds(api) = %v, want 1.5", s)
	}
	// 10: ran through; 11: ended in between (unseen); 12: started in between.
	before.PG, after.PG = map[int]int64{10: 100, 11: 50}, map[int]int64{10: 130, 12: 20}
	if s := pgSeconds(before, after); s != 0.5 {
		t.Errorf("pgSeconds = %v, want 0.5", s)
	}
}

func TestRedisCPU(t *testing.T) {
	info := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:9.000000\r\n"
	if v, err := redisCPU(info); err != nil || v != 3.75 {
		t.Errorf("redisCPU = %v, %v; want 3.75", v, err)
	}
	if _, err := redisCPU("# CPU\r\nused_cpu_sys:1.5\r\n"); err == nil {
		t.Error("used_cpu_user missing: want an error")
	}
	if _, err := redisCPU("used_cpu_sys:x\r\nused_cpu_user:1\r\n"); err == nil {
		t.Error("a bad number: want an error")
	}
}

func TestConfig(t *testing.T) {
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	c, s := loadConfig(env(map[string]string{"BENCH_SHORT": "1", "BENCH_API_ENV": " ; CLAIM_BATCH=1  RING_SIZE=8 "}))
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Duration != 3*time.Second || c.FloodClaims != 150_000 || len(c.Connections) != 2 || c.Connections[1] != 256 {
		t.Errorf("short defaults: %+v", c)
	}
	if len(c.Variants) != 2 || c.Variants[0] != "" || strings.Join(c.variantEnv(1), ",") != "CLAIM_BATCH=1,RING_SIZE=8" {
		t.Errorf("variants = %q", c.Variants)
	}
	for name, bad := range map[string]map[string]string{
		"default key prefix":             {"BENCH_KEY_PREFIX": "rp"},
		"connections not numbers":        {"BENCH_CONNECTIONS": "64,many"},
		"fewer connections than threads": {"BENCH_CONNECTIONS": "1"},
		"api env without =":              {"BENCH_API_ENV": "CLAIM_BATCH"},
		"api env sets the prefix":        {"BENCH_API_ENV": "REDIS_KEY_PREFIX=rp"},
		"bad duration":                   {"BENCH_DURATION": "soon"},
	} {
		if _, s := loadConfig(env(bad)); s.Err() == nil {
			t.Errorf("%s (%v): want an error", name, bad)
		}
	}
}
