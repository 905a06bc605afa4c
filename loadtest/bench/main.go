// Command bench is `make bench`: one reproducible benchmark run of the api
// on this machine, everything on loopback and bounded in time.
//
// It builds bin/api and bin/consumer, starts the local services when they
// are down (internal/dev/stack), then its own consumer and api on 127.0.0.1
// with a fresh Kafka topic and consumer group and Redis keys under its own
// prefix (BENCH_KEY_PREFIX, rpbench), so neither a `make run` nor the tests
// are disturbed. It measures with wrk and loadtest/wrk/bench.lua, one phase
// after the other, for each api configuration of BENCH_API_ENV (by default
// CLAIM_BATCH=false, the baseline, then CLAIM_BATCH=true, the api's
// default):
//
//	trivial@C    GET /healthz, the ceiling of the same server, at each C of BENCH_CONNECTIONS
//	open@C       opens of a new, never sold-out campaign by unique users, consumer running;
//	             then how many of its claims PostgreSQL held when the load stopped, how long
//	             until it held all, rows/s and PostgreSQL's and the consumer's CPU per row
//	soldout@C    opens by new users of a small campaign sold out before  (first C only)
//	duplicate@C  opens by users who all opened the campaign before       (first C only)
//	flood@C      opens by new users of a sold-out campaign whose claims hash holds
//	             BENCH_FLOOD_CLAIMS claims, written straight into Redis  (first C only)
//
// and, with BENCH_IDENTITY (on by default), what checking who opens costs:
//
//	signed@C     opens by new users, each with the user token the merchant's app would
//	             sign (edge.SignUserToken; a file the bench writes before the phase),
//	             first C only: in the last configuration (the api ignores the tokens),
//	             then in one more, the same with USER_TOKEN_SECRET and RATE_LIMIT_USER set
//	             and RATE_LIMIT_IP=0 (all load comes from one loopback address), which
//	             also measures its own trivial@C
//
// For each phase: req/s, latency percentiles, answers by status, socket
// errors, the ratio to the trivial route, Redis's CPU per request and per
// 200 (INFO used_cpu_sys + used_cpu_user) and the CPU each part used (from
// /proc); tables compare the configurations' open phases and the signed
// opens with the check off and on. It prints the Markdown tables, writes
// them with the JSON result to loadtest/results/bench-<UTC time>.{md,json}
// (logs and raw wrk output in the directory of that name), then stops what
// it started and deletes its campaigns, keys, topics and group. `bench -h`
// lists the settings (environment variables); the api's and consumer's own
// variables (RING_SIZE, BATCH_SIZE, ...) pass through to them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	cfg, set := loadConfig(os.LookupEnv)
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "usage: go run ./loadtest/bench (settings from the environment)\n\n")
		set.Usage(os.Stderr)
		if os.Args[1] == "-h" || os.Args[1] == "-help" || os.Args[1] == "--help" {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if err := set.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	if missed := res.Missed(); cfg.Strict && len(missed) > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d target(s) missed (BENCH_STRICT=1)\n", len(missed))
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Printf("bench: "+format+"\n", args...) }
