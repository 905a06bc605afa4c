// Command torture is `make torture`: faults in random order. For each seed
// it draws a schedule (schedule.go: campaigns of 1, 3 or 12 buckets and 3
// to 8 overlapping faults and merchant actions), runs it on the torture's
// own services (services.go: a Redis, a Redis Cluster, PostgreSQL and
// Kafka on ports of their own) with two api replicas and a consumer under
// load (run.go), applying each step at its time (nemesis.go), and then
// judges every answer against the final state of Redis and PostgreSQL
// (check.go). A schedule is saved as JSON; SCHEDULE=file replays it.
//
//	torture            the runs the settings name (`torture -h` lists them)
//	torture draw       print the schedule SEED draws, and run nothing
//	torture stop       stop the torture's services (left up by TORTURE_KEEP_SERVICES=1)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/loadtest/harness"
	"github.com/redpacket/rain/lua"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "stop" {
		os.Exit(stopServices())
	}
	if len(os.Args) > 1 && os.Args[1] != "draw" {
		fmt.Fprintf(os.Stderr, "usage: torture [draw|stop]; its settings:\n\n")
		_, set := settings(func(string) (string, bool) { return "", false })
		set.Usage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(torture(len(os.Args) > 1))
}

func logf(format string, args ...any) {
	fmt.Printf("%s torture: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Settings are the torture's configuration, from the environment.
type Settings struct {
	Seed       string // a number, or "random"
	Seeds      int
	Schedule   string // a JSON file, or "kept"
	Profile    string
	Tier       string // both, standalone or cluster
	Ack        string
	MasterLoss bool
	Known      bool
	Kept       bool
	Keep       bool
	KeepUp     bool
	Services   ServiceConfig
	APIAddrs   []string
	Metrics    string
	KeyPrefix  string
}

// keptDir holds the schedules kept because they once failed.
const keptDir = "loadtest/torture/schedules"

// settings declares every setting (`torture -h` prints them) and reads
// them through lookup.
func settings(lookup func(string) (string, bool)) (*Settings, *config.Set) {
	st := &Settings{}
	s := config.New(lookup)
	var short bool
	var kafkaMode string
	s.String(&st.Seed, "SEED", "1", "the seed to draw a schedule from (a number, or random); with SEEDS the first of them")
	s.Int(&st.Seeds, "SEEDS", 0, 0, 100_000, "how many seeds from SEED on, their tiers alternating (0: SEED on each tier)")
	s.String(&st.Schedule, "SCHEDULE", "", "replay this schedule (a JSON file), or kept: every schedule under "+keptDir)
	s.Bool(&short, "SHORT", false, "the short profile (CI): 16 s of load, 3-4 steps")
	s.String(&st.Profile, "TORTURE_PROFILE", "default", "short, default (32 s of load, 3-8 steps: about a minute a seed) or long (150 s)")
	s.String(&st.Tier, "TORTURE_TIER", "both", "both, standalone (one Redis) or cluster (the local Redis Cluster)")
	s.String(&st.Ack, "TORTURE_ACK", AckAuto, "the api's REDIS_ACK the schedules are drawn for and judged by: master, replica (on the cluster; one Redis has no replica, so master there) or auto (master on one Redis; on the cluster replica, then master and replica in turn)")
	s.Bool(&st.MasterLoss, "TORTURE_MASTER_LOSS", true, "in ack mode master, draw the faults that lose a master's unreplicated writes too (judged as the durability doc allows: warnings near the fault)")
	s.Bool(&st.Kept, "KEPT", false, "after the seeds, replay every schedule kept under "+keptDir+" (CI)")
	s.Bool(&st.Known, "TORTURE_KNOWN", false, "with SCHEDULE=kept, replay the kept schedules of known, unfixed bugs too (they do not fail the run)")
	s.Bool(&st.Keep, "TORTURE_KEEP", false, "keep the campaigns, topics and histories of passing runs")
	s.Bool(&st.KeepUp, "TORTURE_KEEP_SERVICES", false, "leave the torture's services up at the end (the next run starts faster)")
	s.String(&st.Services.RedisAddr, "TORTURE_REDIS_ADDR", "127.0.0.1:6390", "the torture's own Redis (loopback only)")
	s.Int(&st.Services.ClusterBase, "TORTURE_CLUSTER_PORT", 7101, 1024, 55000, "the first port of the torture's own Redis Cluster (6 nodes)")
	s.Int(&st.Services.PGPort, "TORTURE_PGPORT", 5440, 1024, 65535, "the torture's own PostgreSQL cluster")
	s.String(&st.Services.PGCluster, "TORTURE_PG_CLUSTER", "torture", "the name of the PostgreSQL cluster created on TORTURE_PGPORT when none listens there")
	s.Int(&st.Services.KafkaPort, "TORTURE_KAFKA_PORT", 9192, 1024, 65534, "the torture's own Kafka broker (its controller on the next port)")
	s.String(&kafkaMode, "TORTURE_KAFKA_MODE", string(stack.KafkaAuto), "real, embedded or auto (real when it can start)")
	s.Bool(&st.Services.KafkaRequireReal, "KAFKA_REQUIRE_REAL", false, "1: a real Apache Kafka broker or nothing (CI)")
	s.List(&st.APIAddrs, "TORTURE_API_ADDRS", "127.0.0.1:18190,127.0.0.1:18191", "the two api replicas a run starts (loopback only)")
	s.Addr(&st.Metrics, "TORTURE_METRICS_ADDR", "127.0.0.1:19290", "the consumer's METRICS_ADDR (loopback only)")
	s.String(&st.KeyPrefix, "TORTURE_KEY_PREFIX", "rptorture", "REDIS_KEY_PREFIX of the runs: the torture's own namespace")
	var ci bool
	s.Bool(&ci, "TORTURE_SHORT", false, "CI's run: SHORT=1 KEPT=1 (SEED on one Redis and on the cluster, the short profile, then every kept schedule)")
	if short || ci {
		st.Profile = "short"
	}
	st.Kept = st.Kept || ci
	if _, ok := Profiles[st.Profile]; !ok {
		s.Errorf("TORTURE_PROFILE", "%q: want short, default or long", st.Profile)
	}
	if !slices.Contains([]string{"both", TierStandalone, TierCluster}, st.Tier) {
		s.Errorf("TORTURE_TIER", "%q: want both, standalone or cluster", st.Tier)
	}
	if st.Ack != AckMaster && st.Ack != AckReplica && st.Ack != AckAuto {
		s.Errorf("TORTURE_ACK", "%q: want master, replica or auto", st.Ack)
	}
	if _, err := parseSeed(st.Seed); err != nil {
		s.Errorf("SEED", "%v", err)
	}
	mode, err := stack.ParseKafkaMode(kafkaMode)
	if err != nil {
		s.Errorf("TORTURE_KAFKA_MODE", "%v", err)
	}
	st.Services.KafkaMode = mode
	if err := st.Services.check(); err != nil {
		s.Errorf("TORTURE_REDIS_ADDR", "%v", err)
	}
	if len(st.APIAddrs) != 2 {
		s.Errorf("TORTURE_API_ADDRS", "%d addresses: want two", len(st.APIAddrs))
	}
	for _, a := range st.APIAddrs {
		if err := stack.CheckAddr(a); err != nil {
			s.Errorf("TORTURE_API_ADDRS", "%v", err)
		}
	}
	if st.KeyPrefix == lua.DefaultPrefix || st.KeyPrefix == "" {
		s.Errorf("TORTURE_KEY_PREFIX", "%q is the default namespace", st.KeyPrefix)
	}
	return st, s
}

// parseSeed reads SEED: a number, or random (the clock's).
func parseSeed(s string) (uint64, error) {
	if s == "random" {
		return uint64(time.Now().UnixNano()) % 1_000_000, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a number or random", s)
	}
	return n, nil
}

// plan is the schedules the settings name, in order.
func plan(st *Settings, root string) ([]*Schedule, error) {
	switch {
	case st.Schedule == "kept":
		return kept(filepath.Join(root, keptDir), st.Known)
	case st.Schedule != "":
		s, err := LoadSchedule(st.Schedule)
		return []*Schedule{s}, err
	}
	first, _ := parseSeed(st.Seed)
	tiers := []string{TierStandalone, TierCluster}
	if st.Tier != "both" {
		tiers = []string{st.Tier}
	}
	var out []*Schedule
	clusterRuns := 0
	n := max(st.Seeds, len(tiers))
	for i := range n {
		seed := first + uint64(i)
		if st.Seeds == 0 {
			seed = first // SEED on each tier
		}
		tier := tiers[i%len(tiers)]
		ack := ackFor(st.Ack, tier, clusterRuns)
		if tier == TierCluster {
			clusterRuns++
		}
		s, err := Generate(seed, Options{Tier: tier, Ack: ack, Profile: st.Profile, MasterLoss: st.MasterLoss})
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if st.Kept {
		ks, err := kept(filepath.Join(root, keptDir), st.Known)
		return append(out, ks...), err
	}
	return out, nil
}

// ackFor is the ack mode of a run on tier, the n-th on the cluster: one
// Redis has no replica to wait for (master); on the cluster auto starts
// with replica (what the api's own auto picks there) and then takes turns.
func ackFor(ack, tier string, n int) string {
	switch {
	case tier == TierStandalone:
		return AckMaster
	case ack == AckAuto && n%2 == 1:
		return AckMaster
	case ack == AckAuto:
		return AckReplica
	}
	return ack
}

// kept reads the kept schedules: those of known, unfixed bugs only when
// known is set.
func kept(dir string, known bool) ([]*Schedule, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Schedule
	for _, f := range files {
		s, err := LoadSchedule(f)
		if err != nil {
			return nil, err
		}
		if s.Known == "" || known {
			out = append(out, s)
		} else {
			logf("kept schedule %s: known to fail (%s), not replayed (TORTURE_KNOWN=1 replays it)", filepath.Base(f), s.Known)
		}
	}
	return out, nil
}

// stopServices stops the torture's services and returns the exit status.
func stopServices() int {
	st, set := settings(os.LookupEnv)
	root, err := stack.FindRoot()
	if err == nil {
		err = set.Err()
	}
	var svcs *Services
	if err == nil {
		svcs, err = NewServices(st.Services, root, logf)
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		err = svcs.Stop(ctx)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "torture stop: %v\n", err)
		return 1
	}
	return 0
}

// torture runs the planned schedules and returns the exit status.
func torture(drawOnly bool) int {
	t0 := time.Now()
	st, set := settings(os.LookupEnv)
	if err := set.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "torture: %v\n", err)
		return 2
	}
	root, err := stack.FindRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "torture: %v\n", err)
		return 2
	}
	scheds, err := plan(st, root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "torture: %v\n", err)
		return 2
	}
	if drawOnly {
		for _, s := range scheds {
			fmt.Print(s.Summary())
			os.Stdout.Write(s.JSON())
		}
		return 0
	}
	if len(scheds) == 0 {
		logf("nothing to run")
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rn, cleanup, err := setup(ctx, st, root, scheds)
	if err != nil {
		fmt.Fprintf(os.Stderr, "torture: %v\n", err)
		return 2
	}
	var results []*SeedResult
	func() {
		defer cleanup()
		for i, s := range scheds {
			if ctx.Err() != nil {
				break
			}
			logf("=== run %d of %d: seed %d on %s (%s)", i+1, len(scheds), s.Seed, s.Tier, s.Profile)
			res := rn.Run(ctx, i+1, s)
			results = append(results, res)
			logf("=== run %d: %s in %s", i+1, verdictLine(res), (time.Duration(res.TookMs) * time.Millisecond).Round(time.Second))
			if res.Failed() {
				fmt.Print(failureText(res, s))
			}
		}
	}()
	return report(rn, results, time.Since(t0), ctx.Err() != nil)
}

// setup starts the torture's services, builds the api and the consumer,
// and connects to the stores.
func setup(ctx context.Context, st *Settings, root string, scheds []*Schedule) (*Runner, func(), error) {
	var tiers []string
	for _, s := range scheds {
		if !slices.Contains(tiers, s.Tier) {
			tiers = append(tiers, s.Tier)
		}
	}
	svcs, err := NewServices(st.Services, root, logf)
	if err != nil {
		return nil, nil, err
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	rn := &Runner{Root: root, Stamp: stamp, Out: filepath.Join(root, "loadtest/torture/results", stamp), Services: svcs,
		APIAddrs: st.APIAddrs, MetricsAddr: st.Metrics, KeyPrefix: st.KeyPrefix, Keep: st.Keep, Logf: logf,
		Token: "torture-" + strconv.FormatInt(time.Now().UnixNano(), 36), Stores: map[string]*harness.Stores{}}
	if err := os.MkdirAll(rn.Out, 0o755); err != nil {
		return nil, nil, err
	}
	logf("starting the torture's services (%s; state in .local/torture)", strings.Join(tiers, ", "))
	stopAll := func() {
		if st.KeepUp {
			return
		}
		bg, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := svcs.Stop(bg); err != nil {
			logf("WARNING: stopping the torture's services: %v", err)
		}
	}
	if err := svcs.Up(ctx, tiers); err != nil {
		stopAll()
		return nil, nil, err
	}
	bins, err := svcs.Stack(tiers[0]).Build(ctx, "api", "consumer")
	if err != nil {
		stopAll()
		return nil, nil, err
	}
	rn.APIBin, rn.ConsumerBin = bins["api"], bins["consumer"]
	if err := checkAck(scheds, rn.APIBin); err != nil {
		stopAll()
		return nil, nil, err
	}
	db, err := pgxpool.New(ctx, svcs.DSN())
	if err != nil {
		stopAll()
		return nil, nil, err
	}
	clients, err := redisClients(svcs, tiers)
	if err != nil {
		db.Close()
		stopAll()
		return nil, nil, err
	}
	for t, c := range clients {
		rn.Stores[t] = &harness.Stores{DB: db, Redis: c, Keys: lua.NewKeyspace(st.KeyPrefix)}
		if _, err := lua.ClearKeyspace(ctx, c, rn.Stores[t].Keys); err != nil {
			logf("WARNING: clearing %s on %s: %v", st.KeyPrefix, t, err)
		}
	}
	logf("results in %s", rn.Out)
	return rn, func() {
		for _, c := range clients {
			c.Close()
		}
		db.Close()
		stopAll()
	}, nil
}

// checkAck refuses schedules of ack mode replica when the api does not
// know REDIS_ACK yet (it would ignore it, and be judged by a promise it
// does not make).
func checkAck(scheds []*Schedule, apiBin string) error {
	if !slices.ContainsFunc(scheds, func(s *Schedule) bool { return s.Ack == AckReplica }) {
		return nil
	}
	out, _ := execOutput(apiBin, "-help")
	if !strings.Contains(out, "REDIS_ACK") {
		return errors.New("ack mode replica: this api has no REDIS_ACK setting; run TORTURE_ACK=master")
	}
	return nil
}

// report prints and saves the invocation's report and returns the exit
// status: 1 when a run failed (a kept schedule of a known bug does not).
func report(rn *Runner, results []*SeedResult, took time.Duration, interrupted bool) int {
	var b strings.Builder
	failed := WriteReport(&b, rn, results, took)
	harness.SaveReport(rn.Out, b.String(), results)
	switch {
	case interrupted:
		fmt.Println("torture: interrupted")
		return 1
	case failed > 0:
		fmt.Printf("torture: FAILED (%d of %d runs)\n", failed, len(results))
		return 1
	}
	fmt.Println("torture: PASS")
	return 0
}
