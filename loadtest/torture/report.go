package main

import (
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/redpacket/rain/loadtest/harness"
)

// verdictLine is a run's verdicts on one line: "PASS: one-packet ✓ 812, …".
func verdictLine(r *SeedResult) string {
	var cells []string
	for _, v := range r.Verdicts {
		cells = append(cells, v.Name+" "+harness.Cell(v))
	}
	head := "PASS"
	switch {
	case r.Err != "":
		head = "ERROR " + r.Err
	case r.Failed() && r.Known != "":
		head = "FAILED (known: " + r.Known + ")"
	case r.Failed():
		head = "FAILED"
	}
	return head + ": " + strings.Join(cells, ", ")
}

// failureText is what a failed run prints: the seed, the schedule, and
// per broken invariant the first violating users and their answers.
func failureText(r *SeedResult, s *Schedule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n--- FAILED: seed %d on %s (ack %s); replay: make torture SCHEDULE=%s\n", r.Seed, r.Tier, r.Ack, r.Schedule)
	b.WriteString(s.Summary())
	for _, w := range r.Windows {
		fmt.Fprintf(&b, "  held: step %d %s %s %s %.1fs-%.1fs%s%s\n", w.Step, w.Kind, w.Target, w.Node, float64(w.FromMs)/1000,
			float64(w.ToMs)/1000, map[bool]string{true: " (a master lost)"}[w.Loss], map[bool]string{true: " ERROR " + w.Err}[w.Err != ""])
	}
	if r.Err != "" {
		fmt.Fprintf(&b, "  run error: %s\n", r.Err)
	}
	for _, v := range r.Verdicts {
		if !v.Failed() {
			continue
		}
		fmt.Fprintf(&b, "  %s %s: %s\n", harness.Cell(v), v.Name, v.Detail)
		for _, e := range v.Examples {
			fmt.Fprintf(&b, "      %s\n", e)
		}
	}
	fmt.Fprintf(&b, "  history and logs: %s\n", r.Dir)
	return b.String()
}

// WriteReport writes the Markdown report of an invocation: a run a row,
// the steps drawn and applied per kind, the invariants checked, and every
// failure with its seed, schedule and first violations. It returns how
// many runs failed (a kept schedule of a known bug does not count).
func WriteReport(w io.Writer, rn *Runner, results []*SeedResult, took time.Duration) int {
	fmt.Fprintf(w, "### make torture, %s: %d runs in %s\n\n", rn.Stamp, len(results), took.Round(time.Second))
	fmt.Fprintf(w, "| run | seed | tier | ack | K | steps | %s | took |\n", strings.Join(Invariants, " | "))
	fmt.Fprintf(w, "|--:|--:|---|---|---|---|%s--:|\n", strings.Repeat(":-:|", len(Invariants)))
	failed := 0
	for _, r := range results {
		if r.Failed() && r.Known == "" {
			failed++
		}
		byName := map[string]harness.Verdict{}
		for _, v := range r.Verdicts {
			byName[v.Name] = v
		}
		var cells []string
		for _, inv := range Invariants {
			if v, ok := byName[inv]; ok {
				cells = append(cells, harness.Cell(v))
			} else {
				cells = append(cells, "—")
			}
		}
		fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s | %s |\n", r.N, r.Seed, r.Tier, r.Ack, bucketsOf(r), stepsOf(r),
			strings.Join(cells, " | "), (time.Duration(r.TookMs) * time.Millisecond).Round(time.Second))
	}
	writeKinds(w, results)
	writeChecked(w, results)
	for _, r := range results {
		if r.Failed() {
			fmt.Fprintf(w, "\n```\n%s```\n", failureText(r, r.schedule()))
		}
	}
	return failed
}

// bucketsOf lists the runs' campaigns' bucket counts: "12,1,3".
func bucketsOf(r *SeedResult) string {
	var ks []string
	for _, c := range r.Campaigns {
		ks = append(ks, fmt.Sprint(c.Buckets))
	}
	return strings.Join(ks, ",")
}

// stepsOf lists a run's steps briefly: "redis-kill master:1, end campaign:2".
func stepsOf(r *SeedResult) string {
	var out []string
	for _, st := range r.Steps {
		out = append(out, strings.TrimSpace(st.Kind+" "+st.Target))
	}
	return strings.Join(out, ", ")
}

// writeKinds counts the steps drawn per kind, those applied wholly, and
// the masters lost.
func writeKinds(w io.Writer, results []*SeedResult) {
	drawn, applied, lost := map[string]int{}, map[string]int{}, 0
	for _, r := range results {
		for _, st := range r.Steps {
			drawn[st.Kind]++
		}
		for _, win := range r.Windows {
			if win.Err == "" {
				applied[win.Kind]++
			}
			if win.Loss {
				lost++
			}
		}
	}
	fmt.Fprintf(w, "\nSteps drawn (applied without error): ")
	var parts []string
	for _, k := range Kinds {
		parts = append(parts, fmt.Sprintf("%s %d (%d)", k.Name, drawn[k.Name], applied[k.Name]))
	}
	fmt.Fprintf(w, "%s; masters lost: %d.\n", strings.Join(parts, ", "), lost)
}

// writeChecked sums what each invariant checked over the runs, and the
// violations and tolerated ones.
func writeChecked(w io.Writer, results []*SeedResult) {
	type sum struct{ runs, bad, warn int }
	sums := map[string]*sum{}
	for _, r := range results {
		for _, v := range r.Verdicts {
			s := sums[v.Name]
			if s == nil {
				s = &sum{}
				sums[v.Name] = s
			}
			s.runs++
			if v.Failed() {
				s.bad++
			}
			if v.Warn {
				s.warn++
			}
		}
	}
	fmt.Fprintf(w, "\nInvariants (runs judged / broken / broken only where the ack mode allows): ")
	var parts []string
	for _, inv := range slices.Sorted(maps.Keys(sums)) {
		s := sums[inv]
		parts = append(parts, fmt.Sprintf("%s %d/%d/%d", inv, s.runs, s.bad, s.warn))
	}
	fmt.Fprintf(w, "%s.\n", strings.Join(parts, ", "))
}

// execOutput runs a binary and returns its output.
func execOutput(path string, args ...string) (string, error) {
	out, err := exec.Command(path, args...).CombinedOutput()
	return string(out), err
}
