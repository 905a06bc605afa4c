// Package loadtest holds the load tooling: k6 scenarios (k6/), the wrk
// script and runner behind `make bench` (wrk/, bench.sh, benchreport/).
// Its tests check that every k6 scenario parses and declares thresholds,
// since k6 itself does not run on the project's machines.
package loadtest
