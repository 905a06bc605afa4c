package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wrkJSON is a BENCH_JSON line of a 10 s wrk run.
func wrkJSON(requests, p99us int, statuses string) string {
	return fmt.Sprintf(`{"requests":%d,"duration_us":10000000,"bytes":1,`+
		`"errors":{"connect":0,"read":0,"write":0,"status":0,"timeout":0},`+
		`"latency_us":{"mean":1,"stdev":1,"max":50000,"p50":500,"p75":600,"p90":700,"p99":%d,"p999":20000},`+
		`"statuses":%s}`, requests, p99us, statuses)
}

func writeRun(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const runJSON = `{"started_at":"20260101T000000Z","command":"make bench","threads":2,"connections":64,"duration":"10s","consumer":"running"}`

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

func TestReportTargets(t *testing.T) {
	dir := writeRun(t, map[string]string{
		"run.json":       runJSON,
		"trivial.json":   wrkJSON(1_000_000, 2000, `{"200":1000000}`),
		"open.json":      wrkJSON(400_000, 9000, `{"200":399990,"503":10}`),
		"soldout.json":   wrkJSON(850_000, 3000, `{"410":850000}`),
		"duplicate.json": wrkJSON(950_000, 3000, `{"409":949999,"200":1}`),
		"persist.json":   `{"campaign_id":1,"claims":399995,"at_stop":390000,"at_stop_ratio":0.975,"all":true,"all_after_ms":2500,"final":399995}`,
	})
	r, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.evaluate()
	if got := r.Ratios["open/trivial"]; got < 0.3999 || got > 0.4001 {
		t.Errorf("open/trivial = %v, want 0.4", got)
	}
	if r.Persistence.WrkOK != 399990 {
		t.Errorf("wrk_ok = %d, want the 200s of phase b", r.Persistence.WrkOK)
	}
	for prefix, want := range map[string]bool{
		"open (b)":       true,  // 0.4 ≥ 0.35
		"open p99":       true,  // 9 ms
		"sold-out flood": false, // 0.85 < 0.9
		"≥ 95 %":         true,  // 97.5 %
		"100 % within":   false, // 2.5 s
		"zero 5xx":       false, // 10 × 503
		"(sanity)":       false, // a 200 in the duplicate storm
	} {
		if m := met(t, r, prefix); m == nil || *m != want {
			t.Errorf("%s: met = %v, want %v", prefix, m, want)
		}
	}
	md := r.Markdown()
	for _, want := range []string{"| (b) open, unique users |", "0.400", "**missed**", "503: 10", "399,995 claims"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReportWithoutConsumer(t *testing.T) {
	dir := writeRun(t, map[string]string{
		"run.json":     strings.Replace(runJSON, `"running"`, `"not running (no cmd/consumer)"`, 1),
		"trivial.json": wrkJSON(1000, 2000, `{"200":1000}`),
		"open.json":    wrkJSON(500, 2000, `{"200":500}`),
	})
	r, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.evaluate()
	if m := met(t, r, "≥ 95 %"); m != nil {
		t.Errorf("persistence marked %v without a consumer", *m)
	}
	if m := met(t, r, "zero 5xx"); m == nil || *m {
		t.Error("zero 5xx must not be met when phases are missing")
	}
	if !strings.Contains(r.Markdown(), "not measured (consumer not running") {
		t.Error("markdown does not say persistence was not measured")
	}
}

func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestPhaseCPU(t *testing.T) {
	// 2 s apart, 100 ticks a second: 200 ticks are one core.
	dir := writeRun(t, map[string]string{
		"open.cpu-before": "time_ns 1000000000\nclk_tck 100\nmachine_busy 1000\napi 100\nredis 50\npostgres 10\n",
		"open.cpu-after":  "time_ns 3000000000\nclk_tck 100\nmachine_busy 1360\napi 220\nredis 150\npostgres 5\nkafka 7\n",
		"open.wrk-cpu":    "0.30 0.10\n",
	})
	cpu, err := phaseCPU(dir, "open")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"api": 0.6, "redis": 0.5, "wrk": 0.2, "machine": 1.8, "other": 0.5}
	for k, v := range want {
		if got := cpu[k]; got < v-1e-9 || got > v+1e-9 {
			t.Errorf("%s = %v, want %v (all: %v)", k, got, v, cpu)
		}
	}
	for _, k := range []string{"postgres", "kafka"} { // went backwards; not in before
		if _, ok := cpu[k]; ok {
			t.Errorf("%s should be left out: %v", k, cpu)
		}
	}
	if cpu, err := phaseCPU(dir, "trivial"); err != nil || cpu != nil {
		t.Errorf("no snapshots: %v, %v", cpu, err)
	}
}
