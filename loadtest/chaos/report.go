package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redpacket/rain/loadtest/harness"
)

// WriteReport writes the Markdown report of a run: the scenario × invariant
// table, the numbers of each scenario, then every verdict's detail and
// the examples of what failed.
func WriteReport(w io.Writer, title string, results []*ScenarioResult) {
	fmt.Fprintf(w, "### %s\n\n", title)
	fmt.Fprintf(w, "| scenario | %s | took |\n", strings.Join(Invariants, " | "))
	fmt.Fprintf(w, "|---|%s--:|\n", strings.Repeat(":-:|", len(Invariants)))
	for _, r := range results {
		name := r.Name
		if r.Info {
			name += " (info)"
		}
		fmt.Fprintf(w, "| %s |", name)
		byName := map[string]harness.Verdict{}
		for _, v := range r.Verdicts {
			byName[v.Name] = v
		}
		for _, inv := range Invariants {
			v, ok := byName[inv]
			switch {
			case ok:
				fmt.Fprintf(w, " %s |", harness.Cell(v))
			case r.Err != "":
				fmt.Fprint(w, " ✗ |")
			default:
				fmt.Fprint(w, " – |")
			}
		}
		fmt.Fprintf(w, " %s |\n", (time.Duration(r.TookMs) * time.Millisecond).Round(time.Second))
	}
	fmt.Fprintln(w, "\n✓ holds (with what was checked: users told of a claim · users · users retried · claim_log rows · amounts · Redis claims · 200s after the restock · ENDED answers · answers · faults healed; – not run) · ✗ broken (violations) · ⚠ broken only inside a documented window (does not fail the run) · (info): reported, never fails the run")

	fmt.Fprintln(w, "\n| scenario | users | answers | retries | unresolved | latency p50 / p99 / max | fault down | converged after | reconciler repaired | consumer duplicates | dead letters | unsolicited 400s |")
	fmt.Fprintln(w, "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		s := r.Stats
		conv := "never"
		if s.ConvergeMs >= 0 {
			conv = fmt.Sprintf("%.1fs", float64(s.ConvergeMs)/1000)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %d | %d | %.1f / %.1f / %.0f ms | %.1fs | %s | %d | %d | %d | %d |\n", r.Name, s.Driver.Users,
			harness.FormatStatuses(s.Answers), s.Driver.Retries, s.Driver.GaveUp+s.Driver.Abandoned,
			s.Latency.P50, s.Latency.P99, s.Latency.Max,
			float64(s.DownMs)/1000, conv, s.Repaired, s.Duplicates, s.DeadLetters, s.Unsolicited)
	}

	for _, r := range results {
		fmt.Fprintf(w, "\n#### %s: %s\n\n", r.Name, r.What)
		if r.Err != "" {
			fmt.Fprintf(w, "- **could not run to the end**: %s\n", r.Err)
		}
		for _, v := range r.Verdicts {
			fmt.Fprintf(w, "- %s %s: %s\n", harness.Cell(v)[:strings.IndexByte(harness.Cell(v), ' ')], v.Name, v.Detail)
			for _, e := range v.Examples {
				fmt.Fprintf(w, "  - %s\n", e)
			}
		}
		for _, a := range r.Stats.Actions {
			fmt.Fprintf(w, "- merchant: %s\n", a)
		}
		fmt.Fprintf(w, "- campaigns %v; results in %s\n", r.Campaigns, r.Dir)
		fmt.Fprintln(w, "- timeline:")
		for _, e := range r.Events {
			fmt.Fprintf(w, "  - %s\n", e)
		}
	}
}
