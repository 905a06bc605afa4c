// Command chaos is the fault-injection suite of issue 6 (`make chaos`): it
// proves the durability model of SPEC.md under faults. For each scenario it
// starts its own api and consumer (built from this tree) on 127.0.0.1, creates
// two campaigns, drives opens at a steady rate of new users, injects the
// fault mid-run (SIGKILL of the api or consumer; Kafka, PostgreSQL or Redis
// stopped and started again), heals it, lets the load finish and then checks,
// within a bounded wait, every invariant against claim_log and Redis. It
// prints a table scenario × invariant and exits 1 if any invariant broke.
//
//	chaos                   run the suite (environment below)
//	chaos drive [flags]     only drive load at an api and write the records
//	chaos check [flags]     only check records against claim_log and Redis
//
// Environment of the suite:
//
//	CHAOS_SHORT=1            the short version (CI): shorter load and outages
//	CHAOS_SCENARIOS          comma-separated scenarios (default: all but the optional ones)
//	CHAOS_RATE               new users per second (full 1000, short 500)
//	CHAOS_DURATION           load per scenario (full 45s, short 20s)
//	CHAOS_OUTAGE             how long a service stays down (full 20s, short 8s)
//	CHAOS_TIMEOUT            the whole suite at most (full 20m, short 6m)
//	CHAOS_KEEP=1             keep campaigns, topics and records of passing scenarios too
//	CHAOS_API_ADDR           127.0.0.1:18090, the api the suite runs
//	CHAOS_METRICS_ADDR       127.0.0.1:19190, its consumer's METRICS_ADDR
//	REDIS_ADDR, POSTGRES_DSN, KAFKA_PORT: the local services (loopback only;
//	                         default the dev database rain)
//
// The services must have been started by deploy/local/up.sh (`make chaos`
// does it): the suite stops them by their pidfiles or pg_ctlcluster and
// starts them again with the same scripts, and before it exits, whatever
// happened, it runs deploy/local/up.sh so that every service is up.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
)

// unsolicited counts the "Unsolicited response received on idle HTTP
// channel" lines net/http logs (see ScenarioStats.Unsolicited).
var unsolicited atomic.Int64

// logFilter counts net/http's unsolicited-response lines and passes every
// line on to stderr.
type logFilter struct{}

func (logFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("Unsolicited response received on idle HTTP channel")) {
		unsolicited.Add(1)
		return len(p), nil
	}
	return os.Stderr.Write(p)
}

func main() {
	log.SetOutput(logFilter{})
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "drive":
			os.Exit(driveCmd(os.Args[2:]))
		case "check":
			os.Exit(checkCmd(os.Args[2:]))
		default:
			fmt.Fprintln(os.Stderr, "usage: chaos [drive|check] (see the package documentation; -h for flags)")
			os.Exit(2)
		}
	}
	os.Exit(suite())
}

func logf(format string, args ...any) {
	fmt.Printf("%s chaos: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// loopback fails unless addr (host:port) is on 127.0.0.1 or localhost.
func loopback(name, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		return fmt.Errorf("%s=%s: the chaos suite runs on 127.0.0.1 only", name, addr)
	}
	return nil
}

// profile is the run's timing from CHAOS_SHORT and the overrides.
func profile() (Profile, error) {
	p := fullProfile
	if env("CHAOS_SHORT", "0") == "1" {
		p = shortProfile
	}
	var errs []error
	if v := env("CHAOS_RATE", ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 || n > 20000 {
			errs = append(errs, fmt.Errorf("CHAOS_RATE=%q: want an integer in [10, 20000]", v))
		}
		p.Rate = n
	}
	for name, d := range map[string]*time.Duration{"CHAOS_DURATION": &p.Duration, "CHAOS_OUTAGE": &p.Outage, "CHAOS_TIMEOUT": &p.Timeout} {
		if v := env(name, ""); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x < time.Second || x > time.Hour {
				errs = append(errs, fmt.Errorf("%s=%q: want a duration in [1s, 1h]", name, v))
			}
			*d = x
		}
	}
	if p.FaultAt+p.Outage+5*time.Second > p.Duration+p.Tail {
		errs = append(errs, fmt.Errorf("CHAOS_OUTAGE=%s is too long for CHAOS_DURATION=%s", p.Outage, p.Duration))
	}
	return p, errors.Join(errs...)
}

// selected returns the scenarios CHAOS_SCENARIOS names, or the default ones.
func selected() ([]*Scenario, error) {
	v := env("CHAOS_SCENARIOS", "")
	if v == "" {
		var out []*Scenario
		for _, s := range Scenarios {
			if !s.Optional {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []*Scenario
	for _, name := range strings.Split(v, ",") {
		i := slices.IndexFunc(Scenarios, func(s *Scenario) bool { return s.Name == strings.TrimSpace(name) })
		if i < 0 {
			var names []string
			for _, s := range Scenarios {
				names = append(names, s.Name)
			}
			return nil, fmt.Errorf("CHAOS_SCENARIOS: no scenario %q (have %s)", name, strings.Join(names, ", "))
		}
		out = append(out, Scenarios[i])
	}
	return out, nil
}

// repoRoot is the nearest directory up from the working one with go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the repository (no go.mod above the working directory)")
		}
		dir = parent
	}
}

// suite runs the scenarios and returns the exit status.
func suite() int {
	t0 := time.Now()
	rn, cleanup, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 2
	}
	scs, _ := selected()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, rn.Profile.Timeout)
	defer cancel()
	var results []*ScenarioResult
	func() {
		defer cleanup()
		defer func() {
			// Whatever happened: every service up before the suite exits.
			if rn.touched || len(rn.Services.AllUp()) > 0 {
				logf("bringing the services up (deploy/local/up.sh %s)", rn.Services.KafkaKind)
				if err := rn.Services.Up(context.Background()); err != nil {
					logf("ERROR: %v", err)
				}
			}
			if down := rn.Services.AllUp(); len(down) > 0 {
				logf("ERROR: still down: %s", strings.Join(down, ", "))
				results = append(results, &ScenarioResult{Name: "services", Err: "still down at the end: " + strings.Join(down, ", ")})
			}
		}()
		for _, sc := range scs {
			if ctx.Err() != nil {
				break
			}
			logf("=== %s: %s", sc.Name, sc.What)
			res := rn.Run(ctx, sc)
			results = append(results, res)
			var marks []string
			for _, v := range res.Verdicts {
				marks = append(marks, v.Name+" "+cell(v))
			}
			logf("=== %s done in %s: %s%s", sc.Name, (time.Duration(res.TookMs) * time.Millisecond).Round(time.Second),
				strings.Join(marks, ", "), map[bool]string{true: " ERROR " + res.Err}[res.Err != ""])
		}
	}()
	interrupted := ctx.Err() != nil
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	stop()

	title := fmt.Sprintf("make chaos (%s), %s, %d new users/s, load %s, outage %s, took %s", rn.Profile.Name, rn.Stamp,
		rn.Profile.Rate, rn.Profile.Duration, rn.Profile.Outage, time.Since(t0).Round(time.Second))
	var md strings.Builder
	WriteReport(&md, title, results)
	fmt.Println()
	fmt.Print(md.String())
	_ = os.WriteFile(filepath.Join(rn.Out, "report.md"), []byte(md.String()), 0o644)
	if b, err := json.MarshalIndent(results, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(rn.Out, "report.json"), b, 0o644)
	}
	fmt.Printf("\nreport: %s\n", filepath.Join(rn.Out, "report.md"))
	failed := interrupted
	for _, r := range results {
		failed = failed || r.Failed()
	}
	switch {
	case timedOut:
		fmt.Printf("chaos: the suite ran out of its time (%s, CHAOS_TIMEOUT)\n", rn.Profile.Timeout)
	case interrupted:
		fmt.Println("chaos: interrupted")
	}
	if failed {
		fmt.Println("chaos: FAILED")
		return 1
	}
	fmt.Println("chaos: PASS")
	return 0
}

// setup reads the configuration, builds the api and consumer, and connects
// to the services.
func setup() (*Runner, func(), error) {
	p, err := profile()
	if err != nil {
		return nil, nil, err
	}
	if _, err := selected(); err != nil {
		return nil, nil, err
	}
	root, err := repoRoot()
	if err != nil {
		return nil, nil, err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	rn := &Runner{Root: root, Stamp: stamp, Profile: p, Logf: logf,
		Out:         filepath.Join(root, "loadtest/chaos/results", stamp),
		APIAddr:     env("CHAOS_API_ADDR", "127.0.0.1:18090"),
		MetricsAddr: env("CHAOS_METRICS_ADDR", "127.0.0.1:19190"),
		RedisAddr:   env("REDIS_ADDR", "127.0.0.1:6379"),
		PostgresDSN: env("POSTGRES_DSN", "postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable"),
		Brokers:     "127.0.0.1:" + env("KAFKA_PORT", "9092"),
		Token:       "chaos-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Keep:        env("CHAOS_KEEP", "0") == "1",
	}
	for name, addr := range map[string]string{"CHAOS_API_ADDR": rn.APIAddr, "CHAOS_METRICS_ADDR": rn.MetricsAddr,
		"REDIS_ADDR": rn.RedisAddr, "KAFKA_PORT": rn.Brokers} {
		if err := loopback(name, addr); err != nil {
			return nil, nil, err
		}
	}
	pgcfg, err := pgxpool.ParseConfig(rn.PostgresDSN)
	if err != nil {
		return nil, nil, fmt.Errorf("POSTGRES_DSN: %w", err)
	}
	if h := pgcfg.ConnConfig.Host; h != "127.0.0.1" && h != "localhost" {
		return nil, nil, fmt.Errorf("POSTGRES_DSN: host %s: the chaos suite runs on 127.0.0.1 only", h)
	}
	pgcfg.ConnConfig.ConnectTimeout = 3 * time.Second
	redisPort, _ := strconv.Atoi(rn.RedisAddr[strings.LastIndexByte(rn.RedisAddr, ':')+1:])
	kafkaPort, _ := strconv.Atoi(env("KAFKA_PORT", "9092"))
	rn.Services = &Services{Root: root, RedisPort: redisPort, PGPort: int(pgcfg.ConnConfig.Port), KafkaPort: kafkaPort, Logf: logf}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rn.Services.Discover(ctx); err != nil {
		return nil, nil, fmt.Errorf("%w (the suite controls only services started by deploy/local/up.sh)", err)
	}
	if err := os.MkdirAll(rn.Out, 0o755); err != nil {
		return nil, nil, err
	}

	bin, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		return nil, nil, err
	}
	logf("building api and consumer into %s", bin)
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer bcancel()
	build := exec.CommandContext(bctx, "go", "build", "-o", bin+"/", "./cmd/api", "./cmd/consumer")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(bin)
		return nil, nil, fmt.Errorf("go build ./cmd/api ./cmd/consumer: %w", err)
	}
	rn.APIBin, rn.ConsumerBin = filepath.Join(bin, "api"), filepath.Join(bin, "consumer")

	db, err := pgxpool.NewWithConfig(context.Background(), pgcfg)
	if err != nil {
		os.RemoveAll(bin)
		return nil, nil, fmt.Errorf("POSTGRES_DSN: %w", err)
	}
	rdb, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rn.RedisAddr}, DisableCache: true,
		Dialer: net.Dialer{Timeout: 2 * time.Second}})
	if err != nil {
		db.Close()
		os.RemoveAll(bin)
		return nil, nil, fmt.Errorf("REDIS_ADDR: %w", err)
	}
	rn.Stores = &Stores{DB: db, Redis: rdb}
	logf("profile %s: %d new users/s, load %s, fault at %s, outage %s; results in %s",
		p.Name, p.Rate, p.Duration, p.FaultAt, p.Outage, rn.Out)
	return rn, func() {
		rdb.Close()
		db.Close()
		os.RemoveAll(bin)
	}, nil
}

// driveCmd is `chaos drive`: the load driver alone.
func driveCmd(args []string) int {
	fs := flag.NewFlagSet("drive", flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "the api (loopback only)")
	campaigns := fs.String("campaigns", "", "campaigns to open, id[:weight],... (required)")
	rate := fs.Int("rate", 1000, "new users per second")
	duration := fs.Duration("duration", 30*time.Second, "how long new users arrive")
	tail := fs.Duration("tail", 15*time.Second, "how long retries may go on after the load")
	prefix := fs.String("prefix", "drive-"+strconv.FormatInt(time.Now().Unix(), 10), "user id prefix")
	out := fs.String("out", "records.jsonl", "the records (JSON lines)")
	verify := fs.Int("verify", 300, "users who got 200 to re-open after the load, per campaign")
	_ = fs.Parse(args)
	var targets []Target
	for _, s := range strings.Split(*campaigns, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		id, w, _ := strings.Cut(s, ":")
		t := Target{Weight: 1}
		var err error
		if t.Campaign, err = strconv.ParseInt(id, 10, 64); err != nil {
			fmt.Fprintf(os.Stderr, "chaos drive: -campaigns: bad id %q\n", id)
			return 2
		}
		if w != "" {
			if t.Weight, err = strconv.Atoi(w); err != nil {
				fmt.Fprintf(os.Stderr, "chaos drive: -campaigns: bad weight %q\n", w)
				return 2
			}
		}
		targets = append(targets, t)
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos drive: %v\n", err)
		return 1
	}
	defer f.Close()
	d, err := NewDriver(DriverConfig{BaseURL: *base, Targets: targets, Rate: *rate, Duration: *duration,
		Tail: *tail, Prefix: *prefix, Verify: *verify, Out: f})
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos drive: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := d.Run(ctx)
	b, _ := json.Marshal(st)
	fmt.Println(string(b))
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos drive: %v\n", err)
		return 1
	}
	return 0
}

// checkCmd is `chaos check`: the checker alone, on records of `chaos drive`.
func checkCmd(args []string) int {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	records := fs.String("records", "records.jsonl", "the driver's records")
	campaigns := fs.String("campaigns", "", "campaigns to check, comma-separated (required)")
	soldOut := fs.String("soldout-ok", "", "campaigns that may sell out (410 expected), comma-separated")
	tolerate := fs.Bool("tolerate-503-claims", false, "a 503 that had claimed is a warning (Redis went away)")
	_ = fs.Parse(args)
	ids, err1 := parseIDs(*campaigns)
	soldOK, err2 := parseIDs(*soldOut)
	if err := errors.Join(err1, err2); err != nil || len(ids) == 0 {
		fmt.Fprintf(os.Stderr, "chaos check: -campaigns: %v\n", err)
		return 2
	}
	recs, err := readRecords(*records)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos check: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := pgxpool.New(ctx, env("POSTGRES_DSN", "postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos check: POSTGRES_DSN: %v\n", err)
		return 1
	}
	defer db.Close()
	rdb, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{env("REDIS_ADDR", "127.0.0.1:6379")}, DisableCache: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos check: REDIS_ADDR: %v\n", err)
		return 1
	}
	defer rdb.Close()
	stores := &Stores{DB: db, Redis: rdb}
	var states []*CampaignState
	for _, id := range ids {
		st, err := stores.State(ctx, id)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos check: %v\n", err)
			return 1
		}
		st.SoldOutOK = slices.Contains(soldOK, id)
		states = append(states, st)
	}
	failed := false
	for _, v := range Check(recs, states, CheckOptions{Tolerate503Claims: *tolerate}) {
		fmt.Printf("%s %s: %s\n", cell(v), v.Name, v.Detail)
		for _, e := range v.Examples {
			fmt.Printf("    %s\n", e)
		}
		failed = failed || v.Failed()
	}
	if failed {
		return 1
	}
	return 0
}

func parseIDs(s string) ([]int64, error) {
	var ids []int64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad campaign id %q", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
