// Command chaos is the fault-injection suite (`make chaos`): it proves the
// durability model under faults. For each scenario it starts its own api
// and consumer (built from this tree) on 127.0.0.1, creates two campaigns,
// drives opens at a steady rate of new users, injects the fault mid-run
// (SIGKILL of the api or consumer; Kafka, PostgreSQL or Redis stopped and
// started again), heals it, lets the load finish and then checks, within a
// bounded wait, every invariant against claim_log and Redis. It prints a
// table scenario × invariant and exits 1 if any invariant broke.
//
//	chaos                   run the suite (`chaos -h` lists its settings)
//	chaos drive [flags]     only drive load at an api and write the records
//	chaos check [flags]     only check records against claim_log and Redis
//
// The services are controlled through internal/dev/stack: Redis and Kafka must
// have been started by it (`make services`), since only those can be
// stopped and brought back the way they were. Before the suite exits,
// whatever happened, every service is started again if it is down.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/loadtest/harness"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/lua"
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
			fmt.Fprintf(os.Stderr, "usage: chaos [drive|check] (-h for their flags); the suite's settings:\n\n")
			_, set := settings(func(string) (string, bool) { return "", false })
			set.Usage(os.Stderr)
			os.Exit(2)
		}
	}
	os.Exit(suite())
}

func logf(format string, args ...any) {
	fmt.Printf("%s chaos: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Settings is the suite's configuration, from the environment.
type Settings struct {
	Profile     Profile
	Scenarios   string
	Keep        bool
	APIAddr     string
	MetricsAddr string
	KeyPrefix   string
	RedisAddr   string
	RedisMode   string // standalone, or cluster: the cluster scenarios (cluster.go)
	PostgresDSN string
}

// settings declares every setting of the suite (name, default, meaning:
// `chaos -h` prints them) and reads them through lookup. CHAOS_SHORT
// switches the defaults to the short profile.
func settings(lookup func(string) (string, bool)) (*Settings, *config.Set) {
	st := &Settings{}
	s := config.New(lookup)
	var short bool
	s.Bool(&short, "CHAOS_SHORT", false, "the short profile (CI): shorter load and outages")
	p := fullProfile
	if short {
		p = shortProfile
	}
	s.String(&st.Scenarios, "CHAOS_SCENARIOS", "", "comma-separated scenarios (empty: all but the optional ones)")
	s.Int(&p.Rate, "CHAOS_RATE", p.Rate, 10, 20000, "new users per second")
	s.Duration(&p.Duration, "CHAOS_DURATION", p.Duration, time.Second, time.Hour, "load per scenario")
	s.Duration(&p.Outage, "CHAOS_OUTAGE", p.Outage, time.Second, time.Hour, "how long a service stays down")
	s.Duration(&p.Timeout, "CHAOS_TIMEOUT", p.Timeout, time.Second, time.Hour, "the whole suite at most")
	s.Bool(&st.Keep, "CHAOS_KEEP", false, "keep campaigns, topics and records of passing scenarios too")
	s.Addr(&st.APIAddr, "CHAOS_API_ADDR", "127.0.0.1:18090", "the api the suite runs (loopback only)")
	s.Addr(&st.MetricsAddr, "CHAOS_METRICS_ADDR", "127.0.0.1:19190", "its consumer's METRICS_ADDR (loopback only)")
	s.String(&st.KeyPrefix, "CHAOS_KEY_PREFIX", "rpchaos", "REDIS_KEY_PREFIX of the api and consumer the suite runs: its own namespace, cleared before the run and after one that passed")
	s.String(&st.RedisMode, "REDIS_MODE", stack.RedisStandalone, "cluster: run on the local Redis Cluster, whose scenarios are then the default set")
	defRedis := app.DefaultRedisAddr
	if st.RedisMode == stack.RedisCluster {
		defRedis = stack.DefaultClusterAddrs
	}
	s.String(&st.RedisAddr, "REDIS_ADDR", defRedis, "Redis, or the cluster's nodes comma-separated (loopback only)")
	s.String(&st.PostgresDSN, "POSTGRES_DSN", app.DefaultPostgresDSN, "PostgreSQL (loopback only)")
	if p.FaultAt+p.Outage+5*time.Second > p.Duration+p.Tail {
		s.Errorf("CHAOS_OUTAGE", "%s is too long for CHAOS_DURATION=%s", p.Outage, p.Duration)
	}
	for name, addr := range map[string]string{"CHAOS_API_ADDR": st.APIAddr, "CHAOS_METRICS_ADDR": st.MetricsAddr} {
		if err := stack.CheckAddr(addr); err != nil {
			s.Errorf(name, "%v", err)
		}
	}
	if err := stack.CheckAddrs(st.RedisAddr); err != nil {
		s.Errorf("REDIS_ADDR", "%v", err)
	}
	if st.RedisMode != stack.RedisStandalone && st.RedisMode != stack.RedisCluster {
		s.Errorf("REDIS_MODE", "%q: want standalone or cluster", st.RedisMode)
	}
	if err := stack.CheckDSN(st.PostgresDSN); err != nil {
		s.Errorf("POSTGRES_DSN", "%v", err)
	}
	if st.KeyPrefix == lua.DefaultPrefix || st.KeyPrefix == "" {
		s.Errorf("CHAOS_KEY_PREFIX", "%q is the default namespace, which the suite would clear", st.KeyPrefix)
	}
	if _, err := selected(st.Scenarios, st.RedisMode == stack.RedisCluster); err != nil {
		s.Errorf("CHAOS_SCENARIOS", "%v", err)
	}
	st.Profile = p
	return st, s
}

// selected returns the scenarios a comma-separated list names, or the
// default ones when it is empty: on a Redis Cluster the cluster scenarios,
// else the others but the optional ones.
func selected(list string, cluster bool) ([]*Scenario, error) {
	if strings.TrimSpace(list) == "" {
		var out []*Scenario
		for _, s := range Scenarios {
			if !s.Optional && s.Cluster == cluster {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []*Scenario
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(Scenarios, func(s *Scenario) bool { return s.Name == strings.TrimSpace(name) })
		if i < 0 {
			var names []string
			for _, s := range Scenarios {
				names = append(names, s.Name)
			}
			return nil, fmt.Errorf("no scenario %q (have %s)", name, strings.Join(names, ", "))
		}
		if Scenarios[i].Cluster && !cluster {
			return nil, fmt.Errorf("scenario %s needs a Redis Cluster (REDIS_MODE=cluster)", Scenarios[i].Name)
		}
		out = append(out, Scenarios[i])
	}
	return out, nil
}

// suite runs the scenarios and returns the exit status.
func suite() int {
	t0 := time.Now()
	cfg, set := settings(os.LookupEnv)
	if err := set.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 2
	}
	rn, cleanup, err := setup(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		return 2
	}
	scs, _ := selected(cfg.Scenarios, cfg.RedisMode == stack.RedisCluster)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, rn.Profile.Timeout)
	defer cancel()
	var results []*ScenarioResult
	func() {
		defer cleanup()
		defer func() {
			// Whatever happened: every service up before the suite exits.
			bg, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if rn.touched || len(rn.Stack.Down(bg)) > 0 {
				logf("bringing the services up")
				if err := rn.Stack.Up(bg); err != nil {
					logf("ERROR: %v", err)
				}
			}
			if down := rn.Stack.Down(bg); len(down) > 0 {
				logf("ERROR: still down: %s", strings.Join(down, ", "))
				results = append(results, &ScenarioResult{Name: "services", Err: "still down at the end: " + strings.Join(down, ", ")})
			}
			// Every key under the suite's prefix (its campaigns' and those of
			// the live campaigns its api loaded at start), unless kept.
			if !rn.Keep && !slices.ContainsFunc(results, (*ScenarioResult).Failed) {
				if _, err := lua.ClearKeyspace(bg, rn.Stores.Redis, rn.Stores.Keys); err != nil {
					logf("WARNING: clearing Redis keys under %s: %v", rn.KeyPrefix, err)
				}
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
				marks = append(marks, v.Name+" "+harness.Cell(v))
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
	harness.SaveReport(rn.Out, md.String(), results)
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

// setup finds the services, builds the api and consumer, and connects to
// the stores.
func setup(cfg *Settings) (*Runner, func(), error) {
	scfg, err := stack.FromEnv()
	if err != nil {
		return nil, nil, err
	}
	scfg.RedisAddr, scfg.RedisMode, scfg.Logf = cfg.RedisAddr, cfg.RedisMode, logf
	if cfg.RedisMode == stack.RedisCluster {
		useCluster()
	}
	pgcfg, err := pgxpool.ParseConfig(cfg.PostgresDSN)
	if err != nil {
		return nil, nil, fmt.Errorf("POSTGRES_DSN: %w", err)
	}
	scfg.PostgresPort = int(pgcfg.ConnConfig.Port)
	st, err := stack.New(scfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, s := range st.Status(ctx) {
		switch {
		case !s.Up:
			return nil, nil, fmt.Errorf("%s is down (start the services with make services): %v", s.Name, s.Err)
		case !s.Owned && s.Name != "postgres":
			return nil, nil, fmt.Errorf("%s at %s was not started by make services: the suite could not bring it back as it was", s.Name, s.Addr)
		}
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	rn := &Runner{Root: st.Root, Stamp: stamp, Profile: cfg.Profile, Logf: logf,
		Out:     filepath.Join(st.Root, "loadtest/chaos/results", stamp),
		APIAddr: cfg.APIAddr, MetricsAddr: cfg.MetricsAddr, RedisAddr: cfg.RedisAddr, PostgresDSN: cfg.PostgresDSN,
		Brokers: st.Kafka().Addr(), KeyPrefix: cfg.KeyPrefix, Stack: st,
		Token: "chaos-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Keep:  cfg.Keep,
	}
	if err := os.MkdirAll(rn.Out, 0o755); err != nil {
		return nil, nil, err
	}
	logf("building api and consumer")
	bins, err := st.Build(ctx, "api", "consumer")
	if err != nil {
		return nil, nil, err
	}
	rn.APIBin, rn.ConsumerBin = bins["api"], bins["consumer"]
	pgcfg.ConnConfig.ConnectTimeout = 3 * time.Second
	db, err := pgxpool.NewWithConfig(context.Background(), pgcfg)
	if err != nil {
		return nil, nil, fmt.Errorf("POSTGRES_DSN: %w", err)
	}
	rdb, err := harness.RedisClient(rn.RedisAddr)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("REDIS_ADDR: %w", err)
	}
	rn.Stores = &harness.Stores{DB: db, Redis: rdb, Keys: lua.NewKeyspace(cfg.KeyPrefix)}
	// The prefix is the suite's alone: clear what an earlier run left.
	if _, err := lua.ClearKeyspace(ctx, rdb, rn.Stores.Keys); err != nil {
		rdb.Close()
		db.Close()
		return nil, nil, fmt.Errorf("redis: clearing %s: %w", cfg.KeyPrefix, err)
	}
	p := cfg.Profile
	logf("profile %s: %d new users/s, load %s, fault at %s, outage %s; Redis keys under %s; results in %s",
		p.Name, p.Rate, p.Duration, p.FaultAt, p.Outage, cfg.KeyPrefix, rn.Out)
	return rn, func() {
		rdb.Close()
		db.Close()
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
	var targets []harness.Target
	for _, s := range strings.Split(*campaigns, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		id, w, _ := strings.Cut(s, ":")
		t := harness.Target{Weight: 1}
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
	d, err := harness.NewDriver(harness.DriverConfig{BaseURLs: []string{*base}, Targets: targets, Rate: *rate, Duration: *duration,
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
	prefix := fs.String("key-prefix", lua.DefaultPrefix, "REDIS_KEY_PREFIX of the api that served the records")
	_ = fs.Parse(args)
	ids, err1 := parseIDs(*campaigns)
	soldOK, err2 := parseIDs(*soldOut)
	if err := errors.Join(err1, err2); err != nil || len(ids) == 0 {
		fmt.Fprintf(os.Stderr, "chaos check: -campaigns: %v\n", err)
		return 2
	}
	recs, err := harness.ReadRecords(*records)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos check: %v\n", err)
		return 1
	}
	cfg, set := settings(os.LookupEnv)
	if err := set.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos check: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := pgxpool.New(ctx, cfg.PostgresDSN)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos check: POSTGRES_DSN: %v\n", err)
		return 1
	}
	defer db.Close()
	rdb, err := harness.RedisClient(cfg.RedisAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos check: REDIS_ADDR: %v\n", err)
		return 1
	}
	defer rdb.Close()
	stores := &harness.Stores{DB: db, Redis: rdb, Keys: lua.NewKeyspace(*prefix)}
	var states []*harness.CampaignState
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
		fmt.Printf("%s %s: %s\n", harness.Cell(v), v.Name, v.Detail)
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
