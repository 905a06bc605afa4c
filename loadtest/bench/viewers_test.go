package main

import (
	"strings"
	"testing"
)

// TestViewersTable: a viewed phase is shown next to the open phase of its
// configuration and connections, with the change in req/s and in the
// api's CPU per request.
func TestViewersTable(t *testing.T) {
	r := &Result{Run: Run{Variants: []string{"CLAIM_BATCH=true"}, FloodClaims: 1000}}
	r.Phases = []Phase{
		phase(t, Trivial, 0, 64, wrkLine(1_000_000, 2000, `{"200":1000000}`)),
		phase(t, Open, 0, 64, wrkLine(400_000, 9000, `{"200":400000}`)),
		phase(t, Viewed, 0, 64, wrkLine(380_000, 9000, `{"200":380000}`)),
	}
	r.Phases[1].CPU = map[string]float64{"api": 1.0}
	r.Phases[2].CPU = map[string]float64{"api": 0.95}
	r.Phases[2].Viewers, r.Phases[2].ViewerEvents = 10, 200
	r.evaluate()
	md := r.Markdown()
	for _, want := range []string{
		"while 10 clients hold its live route",
		"| open@64 | 0 | 0 | 40,000 | 0.400 | 0.50 | 9.00 | 20.00 | 25.0 | – | – |",
		"| viewed@64 | 10 | 200 | 38,000 | 0.380 | 0.50 | 9.00 | 20.00 | 25.0 | -5.0 % | +0.0 % |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if !opens(Viewed) {
		t.Error("a viewed phase's claims are not followed into PostgreSQL")
	}
}
