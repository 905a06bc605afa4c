// Package loadtest holds the load tooling: the benchmark behind `make bench`
// (bench/, which runs wrk with wrk/bench.lua), the fault-injection suite
// behind `make chaos` (chaos/), and k6 scenarios (k6/). Its tests check that
// every k6 scenario parses and declares thresholds, since k6 itself does not
// run on the project's machines.
package loadtest
