package harness

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Verdict is the result of one invariant in one run.
type Verdict struct {
	Name     string   `json:"name"`
	OK       bool     `json:"ok"`
	Warn     bool     `json:"warn,omitempty"` // failed, but in a documented window: does not fail the run
	Short    string   `json:"short"`          // the number the table shows
	Detail   string   `json:"detail"`         // the numbers behind it
	Examples []string `json:"examples,omitempty"`
}

// Failed reports whether the verdict fails the run.
func (v Verdict) Failed() bool { return !v.OK && !v.Warn }

// RunFailed reports whether a run fails: it could not run to the end
// (err), or one of its verdicts failed.
func RunFailed(err string, vs []Verdict) bool {
	return err != "" || slices.ContainsFunc(vs, Verdict.Failed)
}

// Cell is a verdict as a table shows it: a mark and the number that matters.
func Cell(v Verdict) string {
	mark := "✗"
	switch {
	case v.OK:
		mark = "✓"
	case v.Warn:
		mark = "⚠"
	}
	return mark + " " + v.Short
}

// MaxExamples bounds the examples kept per invariant.
const MaxExamples = 5

// Tally counts violations of one invariant and keeps a few examples.
type Tally struct {
	Bad      int
	Warned   int
	Examples []string
}

// Fail counts a violation.
func (t *Tally) Fail(format string, args ...any) {
	t.Bad++
	t.Note(format, args...)
}

// Warnf counts a violation in a window the project documents as open.
func (t *Tally) Warnf(format string, args ...any) {
	t.Warned++
	t.Note(format, args...)
}

// Note keeps an example (the first MaxExamples).
func (t *Tally) Note(format string, args ...any) {
	if len(t.Examples) < MaxExamples {
		t.Examples = append(t.Examples, fmt.Sprintf(format, args...))
	}
}

// Verdict sums up the tally; n is what was checked (the table shows it
// when all is well, else the number of violations).
func (t *Tally) Verdict(name string, n int, detail string) Verdict {
	v := Verdict{Name: name, OK: t.Bad == 0 && t.Warned == 0, Warn: t.Bad == 0 && t.Warned > 0,
		Short: fmt.Sprint(n), Detail: detail, Examples: t.Examples}
	switch {
	case t.Bad > 0:
		v.Short = fmt.Sprintf("%d bad", t.Bad)
	case t.Warned > 0:
		v.Short = fmt.Sprintf("%d tolerated", t.Warned)
	}
	return v
}

// InvAlive is the verdict on the processes and services of a run.
const InvAlive = "alive"

// Liveness is what a runner saw of its processes and the services.
type Liveness struct {
	Kills      map[string]int // SIGKILLs the runner sent, per process (api, consumer)
	Outages    int            // services the runner stopped and started again
	Restarts   map[string]int // restarts that became ready again
	NotBack    []string       // restarts that did not become ready in time
	Crashes    []string       // exits the runner did not cause
	Panics     []string       // log lines that tell of a panic or a fatal error
	APIReady   bool           // api /readyz answered 200 at the end
	Healthy    bool           // consumer /healthz answered 200 at the end
	ServiceErr []string       // services that could not be stopped or brought back
}

// NewLiveness is an empty Liveness.
func NewLiveness() Liveness {
	return Liveness{Kills: map[string]int{}, Restarts: map[string]int{}}
}

// Verdict turns what was seen into the InvAlive verdict.
func (l *Liveness) Verdict() Verdict {
	var t Tally
	for _, s := range l.NotBack {
		t.Fail("did not come back: %s", s)
	}
	for _, s := range l.Crashes {
		t.Fail("exited on its own: %s", s)
	}
	for _, s := range l.Panics {
		t.Fail("log: %s", s)
	}
	for _, s := range l.ServiceErr {
		t.Fail("service: %s", s)
	}
	if !l.APIReady {
		t.Fail("api /readyz not 200 at the end")
	}
	if !l.Healthy {
		t.Fail("consumer /healthz not 200 at the end")
	}
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(l.Kills)) {
		parts = append(parts, fmt.Sprintf("%s killed %d, back %d", p, l.Kills[p], l.Restarts[p]))
	}
	parts = append(parts, fmt.Sprintf("readyz %s, healthz %s, %d crashes, %d panics",
		okText(l.APIReady), okText(l.Healthy), len(l.Crashes), len(l.Panics)))
	faults := l.Outages
	for _, n := range l.Kills {
		faults += n
	}
	if l.Outages > 0 {
		parts = append([]string{fmt.Sprintf("%d service outages healed", l.Outages)}, parts...)
	}
	return t.Verdict(InvAlive, faults, strings.Join(parts, "; "))
}

func okText(ok bool) string {
	if ok {
		return "200"
	}
	return "not 200"
}
