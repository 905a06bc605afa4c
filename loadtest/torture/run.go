package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/loadtest/harness"
	"github.com/redpacket/rain/lua"
)

// Runner runs schedules on the torture's services, one at a time.
type Runner struct {
	Root        string
	Out         string // this invocation's results
	Stamp       string
	Services    *Services
	APIBin      string
	ConsumerBin string
	APIAddrs    []string // the two api replicas
	MetricsAddr string   // the consumer's
	KeyPrefix   string
	Token       string
	Keep        bool // keep campaigns, topics and histories of passing runs
	Stores      map[string]*harness.Stores
	Logf        func(format string, args ...any)
}

// Timing of a run besides its schedule's.
const (
	tailFor      = 15 * time.Second // retries after the load, at most
	actionsFor   = 20 * time.Second // merchant actions retried after the load, at most
	convergeFor  = 60 * time.Second // the wait for claim_log to hold what Redis holds
	settleFor    = 20 * time.Second // the wait for stock actions and transfers to finish
	probeRate    = 30               // new users per second once the faults healed
	probeFor     = 2 * time.Second
	probeTail    = 15 * time.Second // the bound within which a probe user must be served
	verifyCount  = 1000             // users with a packet re-opened per campaign after the load
	runSlackTime = 5 * time.Minute  // a run's bound beyond its load
)

// SeedResult is what one run found.
type SeedResult struct {
	N         int               `json:"n"`
	Seed      uint64            `json:"seed"`
	Tier      string            `json:"tier"`
	Ack       string            `json:"ack"`
	Profile   string            `json:"profile"`
	Schedule  string            `json:"schedule"` // its JSON file
	Known     string            `json:"known,omitempty"`
	Rate      int               `json:"rate"`
	LoadMs    int64             `json:"load_ms"`
	Campaigns []Campaign        `json:"campaigns"`
	Steps     []Step            `json:"steps"`
	Windows   []Window          `json:"windows"`
	Verdicts  []harness.Verdict `json:"verdicts"`
	Answers   map[string]int    `json:"answers"`
	Stats     RunStats          `json:"stats"`
	Err       string            `json:"error,omitempty"` // it could not run to the end
	TookMs    int64             `json:"took_ms"`
	Dir       string            `json:"dir"`
	Events    []string          `json:"events"`
}

// RunStats are a run's numbers besides its verdicts.
type RunStats struct {
	Driver   harness.DriverStats `json:"driver"`
	Probe    harness.DriverStats `json:"probe"`
	Repaired int                 `json:"repaired"` // claims the reconciler wrote to claim_log
	Readded  int                 `json:"readded"`  // claims Redis had lost, put back
	Oversold int                 `json:"oversold"` // of those, packets handed out again meanwhile
	Counts   []harness.Counts    `json:"counts"`
}

// schedule is the schedule the run ran.
func (r *SeedResult) schedule() *Schedule {
	return &Schedule{Version: ScheduleVersion, Seed: r.Seed, Tier: r.Tier, Ack: r.Ack, Profile: r.Profile, Rate: r.Rate, LoadMs: r.LoadMs,
		Campaigns: r.Campaigns, Steps: r.Steps, Known: r.Known}
}

// Failed reports whether the run fails the invocation.
func (r *SeedResult) Failed() bool { return harness.RunFailed(r.Err, r.Verdicts) }

// seedRun is one schedule being run.
type seedRun struct {
	*Runner
	sched     *Schedule
	res       *SeedResult
	dir       string
	stamp     string
	stack     *stack.Stack
	stores    *harness.Stores
	apis      []*stack.Proc
	consumer  *stack.Proc
	campaigns []CampaignRun
	start     time.Time
	merchant  *harness.Merchant
	topic     string

	mu   sync.Mutex // live and the events
	live harness.Liveness
}

func (r *seedRun) event(format string, args ...any) {
	msg := harness.NoteEvent(&r.mu, &r.res.Events, r.start, format, args...)
	r.Logf("[%d %s seed %d] %s", r.res.N, r.sched.Tier, r.sched.Seed, msg)
}

// alive notes what was seen of the processes and services.
func (r *seedRun) alive(f func(l *harness.Liveness)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.live)
}

// actionDeadline is how long a merchant action is retried.
func (r *seedRun) actionDeadline() time.Time {
	return r.start.Add(time.Duration(r.sched.LoadMs)*time.Millisecond + actionsFor)
}

// Run runs a schedule: its own api replicas and consumer, its campaigns,
// the load with the steps in it, the heal and the settling, the probe,
// then the checker.
func (rn *Runner) Run(ctx context.Context, n int, s *Schedule) *SeedResult {
	t0 := time.Now()
	name := fmt.Sprintf("%02d-%s-seed%d", n, s.Tier, s.Seed)
	res := &SeedResult{N: n, Seed: s.Seed, Tier: s.Tier, Ack: s.Ack, Profile: s.Profile, Known: s.Known, Rate: s.Rate, LoadMs: s.LoadMs,
		Campaigns: s.Campaigns, Steps: s.Steps, Dir: filepath.Join(rn.Out, name)}
	r := &seedRun{Runner: rn, sched: s, res: res, dir: res.Dir, stamp: rn.Stamp + strconv.Itoa(n), stack: rn.Services.Stack(s.Tier),
		stores: rn.Stores[s.Tier], live: harness.NewLiveness()}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.LoadMs)*time.Millisecond+runSlackTime)
	defer cancel()
	if err := r.run(ctx); err != nil {
		res.Err = err.Error()
		r.event("run error: %v", err)
	}
	res.TookMs = time.Since(t0).Milliseconds()
	if b, err := json.MarshalIndent(res, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(r.dir, "result.json"), b, 0o644)
	}
	return res
}

func (r *seedRun) run(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	r.res.Schedule = filepath.Join(r.dir, "schedule.json")
	if err := os.WriteFile(r.res.Schedule, r.sched.JSON(), 0o644); err != nil {
		return err
	}
	r.event("schedule %s:\n%s", r.res.Schedule, r.sched.Summary())
	defer r.stopProcs()
	if err := r.prepare(ctx); err != nil {
		return err
	}
	if err := r.createCampaigns(ctx); err != nil {
		return err
	}
	h, err := r.load(ctx)
	if err != nil {
		return err
	}
	if err := r.healAndSettle(ctx); err != nil {
		r.event("not settled: %v", err)
	}
	probe, err := r.probe(ctx)
	if err != nil {
		return err
	}
	h.Records = append(h.Records, probe...)
	r.converge(ctx)
	return r.judge(ctx, h)
}

// prepare makes the tier's services whole (a cluster: each shard on its
// third of the slots), then starts the two api replicas and the consumer.
func (r *seedRun) prepare(ctx context.Context) error {
	if err := r.Services.Heal(ctx, r.sched.Tier); err != nil {
		return fmt.Errorf("services: %w", err)
	}
	if r.sched.Tier == TierCluster {
		moved, err := r.Services.Normalize(ctx, r.stores.Redis)
		if err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		if moved > 0 {
			r.event("cluster: %d slots moved back to their shard", moved)
		}
	}
	for _, a := range append(append([]string(nil), r.APIAddrs...), r.MetricsAddr) {
		if err := stack.PortFree(a); err != nil {
			return err
		}
	}
	r.topic = "torture_" + r.stamp
	procs := &harness.Procs{APIBin: r.APIBin, ConsumerBin: r.ConsumerBin, RedisAddr: r.Services.RedisAddr(r.sched.Tier),
		PostgresDSN: r.Services.DSN(), Brokers: r.Services.Brokers(), Topic: r.topic, KeyPrefix: r.KeyPrefix, Token: r.Token,
		Ack: r.sched.Ack, Dir: r.dir}
	var extra []string
	r.consumer = procs.Consumer(r.MetricsAddr)
	var urls []string
	for i, a := range r.APIAddrs {
		r.apis = append(r.apis, procs.API("api"+strconv.Itoa(i), a, extra...))
		urls = append(urls, "http://"+a)
	}
	r.merchant = &harness.Merchant{BaseURLs: urls, Token: r.Token, Event: r.event}
	for _, p := range append([]*stack.Proc{r.consumer}, r.apis...) {
		if err := p.Start(); err != nil {
			return err
		}
		if err := p.WaitReady(ctx, 90*time.Second); err != nil {
			return err
		}
	}
	r.event("api replicas %v and consumer ready; topic %s", r.APIAddrs, r.topic)
	return nil
}

// stopProcs stops the api replicas and the consumer (SIGTERM).
func (r *seedRun) stopProcs() {
	for _, p := range append(append([]*stack.Proc(nil), r.apis...), r.consumer) {
		if p == nil {
			continue
		}
		if err := p.Stop(); err != nil {
			r.event("stopping %s: %v", p.Name, err)
		}
	}
}

// createCampaigns creates the schedule's campaigns through an api.
func (r *seedRun) createCampaigns(ctx context.Context) error {
	for i, c := range r.sched.Campaigns {
		name := fmt.Sprintf("torture %s seed %d %s", r.stamp, r.sched.Seed, c.Name)
		id, err := harness.CreateCampaign(ctx, "http://"+r.APIAddrs[0], r.Token, name, c.Inventory, c.Buckets)
		if err != nil {
			return err
		}
		initial := map[int64]int64{}
		for a, n := range c.Inventory {
			v, _ := strconv.ParseInt(a, 10, 64)
			initial[v] = n
		}
		r.campaigns = append(r.campaigns, CampaignRun{Index: i, ID: id, Name: c.Name, K: c.Buckets, Initial: initial})
	}
	r.event("campaigns %v", r.campaigns)
	return nil
}

// load drives the schedule's load while the nemesis applies its steps,
// and returns the history so far.
func (r *seedRun) load(ctx context.Context) (*History, error) {
	var targets []harness.Target
	for i, c := range r.sched.Campaigns {
		targets = append(targets, harness.Target{Campaign: r.campaigns[i].ID, Weight: c.Weight})
	}
	r.start = time.Now()
	r.merchant.Start = r.start
	d, f, err := r.newDriver("records.jsonl", harness.DriverConfig{Targets: targets, Rate: r.sched.Rate,
		Duration: time.Duration(r.sched.LoadMs) * time.Millisecond, Tail: tailFor, Verify: verifyCount,
		Prefix: fmt.Sprintf("t%s-s%d", r.stamp, r.sched.Seed), Start: r.start})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nem := &nemesis{r: r}
	done := make(chan struct{})
	go func() { nem.Run(ctx); close(done) }()
	r.event("load: %d new users/s for %.0fs, %d steps", r.sched.Rate, float64(r.sched.LoadMs)/1000, len(r.sched.Steps))
	st, derr := d.Run(ctx)
	<-done
	r.res.Stats.Driver, r.res.Windows = st, nem.windows
	if derr != nil {
		return nil, fmt.Errorf("driver: %w", derr)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	r.event("load done: %d users, %d attempts, %d gave up, %d abandoned", st.Users, st.Attempts, st.GaveUp, st.Abandoned)
	recs, err := harness.ReadRecords(f.Name())
	if err != nil {
		return nil, err
	}
	r.saveJSON("actions.json", nem.actions)
	r.saveJSON("windows.json", nem.windows)
	return &History{Tier: r.sched.Tier, Ack: r.sched.Ack, Records: recs, Actions: nem.actions, Windows: nem.windows, Campaigns: r.campaigns}, nil
}

// newDriver is a load driver of cfg that opens at the run's api replicas
// and writes its records to the file name in the run's directory. The
// caller closes the file, then reads the records from it.
func (r *seedRun) newDriver(name string, cfg harness.DriverConfig) (*harness.Driver, *os.File, error) {
	f, err := os.Create(filepath.Join(r.dir, name))
	if err != nil {
		return nil, nil, err
	}
	cfg.BaseURLs, cfg.Out = r.merchant.BaseURLs, f
	d, err := harness.NewDriver(cfg)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return d, f, nil
}

func (r *seedRun) saveJSON(name string, v any) {
	if b, err := json.MarshalIndent(v, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(r.dir, name), b, 0o644)
	}
}

// healAndSettle brings back whatever is still down, then waits until
// claim_log holds what Redis holds, no stock action is pending and no
// packet is in transit between buckets.
func (r *seedRun) healAndSettle(ctx context.Context) error {
	if err := r.Services.Heal(ctx, r.sched.Tier); err != nil {
		r.alive(func(l *harness.Liveness) { l.ServiceErr = append(l.ServiceErr, "not healed: "+err.Error()) })
		return err
	}
	for _, p := range append([]*stack.Proc{r.consumer}, r.apis...) {
		if p.Pid() == 0 {
			r.alive(func(l *harness.Liveness) { l.NotBack = append(l.NotBack, p.Name+" not running after the load") })
			_ = p.Start()
			_ = p.WaitReady(ctx, 90*time.Second)
		}
	}
	r.event("healed")
	if !r.converge(ctx) {
		return errors.New("claim_log did not converge")
	}
	ids := r.ids()
	return stack.Poll(ctx, settleFor, func(ctx context.Context) error {
		pending, err := r.stores.PendingStock(ctx, ids)
		if err != nil || pending > 0 {
			return fmt.Errorf("%d stock actions pending: %v", pending, err)
		}
		if n, err := r.inTransit(ctx); err != nil || n > 0 {
			return fmt.Errorf("%d packets in transit: %v", n, err)
		}
		return nil
	})
}

func (r *seedRun) ids() []int64 {
	var out []int64
	for _, c := range r.campaigns {
		out = append(out, c.ID)
	}
	return out
}

// converge waits until, per campaign, Redis claims = claim_log rows = sum
// of opened_count, and the processes are ready.
func (r *seedRun) converge(ctx context.Context) bool {
	var counts []harness.Counts
	err := stack.Poll(ctx, convergeFor, func(ctx context.Context) error {
		counts = counts[:0]
		for _, id := range r.ids() {
			c, err := r.stores.Counts(ctx, id)
			if err != nil {
				return err
			}
			if counts = append(counts, c); !c.Converged() {
				return fmt.Errorf("campaign %d: %v", id, c)
			}
		}
		for _, p := range append([]*stack.Proc{r.consumer}, r.apis...) {
			if err := p.Ready(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	r.res.Stats.Counts = append([]harness.Counts(nil), counts...)
	if err != nil {
		r.event("not converged: %v", err)
		return false
	}
	r.event("converged: %v", counts)
	return true
}

// inTransit counts the packets taken from a bucket or the pool and not
// yet credited, over the bucketed campaigns.
func (r *seedRun) inTransit(ctx context.Context) (int64, error) {
	var n int64
	for _, id := range r.ids() {
		lay, err := r.stores.Layout(ctx, id)
		if err != nil || lay.K() == 1 {
			continue
		}
		rs, err := lua.ReadBuckets(ctx, r.stores.Redis, lay)
		if err != nil {
			return 0, err
		}
		n += rs.Pending
	}
	return n, nil
}

// probe sends new users to every campaign once everything healed and
// settled: each must be served within probeTail (OK while stock is left).
// Their records are timed on the load's clock.
func (r *seedRun) probe(ctx context.Context) ([]harness.Record, error) {
	var targets []harness.Target
	for _, c := range r.campaigns {
		targets = append(targets, harness.Target{Campaign: c.ID, Weight: 1})
	}
	start := time.Now()
	d, f, err := r.newDriver("probe.jsonl", harness.DriverConfig{Targets: targets, Rate: probeRate,
		Duration: probeFor, Tail: probeTail, FirstKind: harness.KindProbe, Verify: -1, RepeatShare: -1,
		Prefix: fmt.Sprintf("t%s-s%d-probe", r.stamp, r.sched.Seed), Start: start})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := d.Run(ctx)
	r.res.Stats.Probe = st
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	recs, err := harness.ReadRecords(f.Name())
	shift := start.Sub(r.start).Milliseconds()
	for i := range recs {
		recs[i].AtMs += shift
	}
	r.event("probe: %d new users, %d attempts", st.Users, st.Attempts)
	return recs, err
}

// judge reads the final state, checks the history against it, stops the
// processes and reads their logs.
func (r *seedRun) judge(ctx context.Context, h *History) error {
	var states []*harness.CampaignState
	for _, c := range r.campaigns {
		st, err := r.stores.State(ctx, c.ID)
		if err != nil {
			return err
		}
		st.Label = c.Name
		states = append(states, st)
	}
	r.res.Verdicts = Check(h, states)
	r.res.Answers = map[string]int{}
	for i := range h.Records {
		r.res.Answers[harness.StatusKey(&h.Records[i])]++
	}
	r.live.APIReady, r.live.Healthy = true, r.consumer.Ready(ctx) == nil
	for _, p := range r.apis {
		r.live.APIReady = r.live.APIReady && p.Ready(ctx) == nil
	}
	r.stopProcs()
	r.scanLogs()
	if down := r.stack.Down(ctx); len(down) > 0 {
		r.live.ServiceErr = append(r.live.ServiceErr, "down at the end: "+strings.Join(down, ", "))
	}
	r.res.Verdicts = append(r.res.Verdicts, r.live.Verdict())
	if !r.res.Failed() && !r.Keep {
		r.cleanup(context.WithoutCancel(ctx))
	}
	return nil
}

// scanLogs reads the processes' logs: crashes, panics, and what the
// reconciler did.
func (r *seedRun) scanLogs() {
	ours := map[int64]bool{}
	for _, id := range r.ids() {
		ours[id] = true
	}
	for _, p := range append([]*stack.Proc{r.consumer}, r.apis...) {
		r.live.Crashes = append(r.live.Crashes, p.Crashes()...)
		err := harness.ScanLog(p.Log, func(line string) { r.live.Panics = append(r.live.Panics, p.Name+": "+line) }, func(e *harness.LogEntry) {
			switch {
			case !ours[e.CampaignID]:
			case e.Msg == "reconciler repaired claims missing from claim_log":
				r.res.Stats.Repaired += e.Repaired
			case e.Msg == "reconciler put back into redis claims it had lost":
				r.res.Stats.Readded += e.Readded
				r.res.Stats.Oversold += e.Oversold
			}
		})
		if err != nil {
			r.live.Panics = append(r.live.Panics, fmt.Sprintf("%s log: %v", p.Name, err))
		}
	}
}

// cleanup deletes what a passing run made: campaigns, topics, histories.
func (r *seedRun) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.stores.Delete(ctx, r.ids()); err != nil {
		r.event("cleanup: %v", err)
	}
	if err := harness.DeleteTopics(ctx, r.Services.Brokers(), r.topic); err != nil {
		r.event("cleanup: %v", err)
	}
	for _, f := range []string{"records.jsonl", "probe.jsonl"} {
		_ = os.Remove(filepath.Join(r.dir, f))
	}
}

// redisClients are the torture's clients of each tier's Redis.
func redisClients(s *Services, tiers []string) (map[string]rueidis.Client, error) {
	out := map[string]rueidis.Client{}
	for _, t := range tiers {
		c, err := harness.RedisClient(s.RedisAddr(t))
		if err != nil {
			return nil, fmt.Errorf("redis %s: %w", t, err)
		}
		out[t] = c
	}
	return out, nil
}
