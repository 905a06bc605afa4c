package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/loadtest/harness"
	"github.com/redpacket/rain/lua"
)

// Profile is the timing of a suite run.
type Profile struct {
	Name      string
	Rate      int           // new users per second
	Duration  time.Duration // of the load
	FaultAt   time.Duration // when the fault comes, after the load started
	Outage    time.Duration // how long a service stays down
	KillPause time.Duration // between killing the api or consumer and restarting it
	Tail      time.Duration // retries after the load, at most
	Converge  time.Duration // the checker's wait for claim_log to hold every claim
	Verify    int           // users re-opened per campaign after the load
	Timeout   time.Duration // the whole suite, at most (CHAOS_TIMEOUT)
}

var (
	fullProfile = Profile{Name: "full", Rate: 1000, Duration: 45 * time.Second, FaultAt: 10 * time.Second,
		Outage: 20 * time.Second, KillPause: 3 * time.Second, Tail: 20 * time.Second, Converge: 60 * time.Second, Verify: 300,
		Timeout: 20 * time.Minute}
	shortProfile = Profile{Name: "short", Rate: 500, Duration: 20 * time.Second, FaultAt: 4 * time.Second,
		Outage: 8 * time.Second, KillPause: time.Second, Tail: 12 * time.Second, Converge: 45 * time.Second, Verify: 100,
		Timeout: 6 * time.Minute}
)

// Scenario is one fault, injected under load.
type Scenario struct {
	Name string
	What string
	// Info marks a scenario whose failures are reported, not fatal: it
	// probes a window the durability model documents as open.
	Info bool
	// Optional scenarios run only when named (CHAOS_SCENARIOS).
	Optional bool
	// Cluster scenarios need a Redis Cluster (REDIS_MODE=cluster), where
	// they are the default set (cluster.go).
	Cluster bool
	// Verdicts adds the scenario's own verdicts, after the checks.
	Verdicts func(r *run, recs []harness.Record) []harness.Verdict
	// Tolerate503Claims and NoAnswerOK: see CheckOptions.
	Tolerate503Claims bool
	NoAnswerOK        bool
	// NoMerchant leaves out the merchant step (merchant.go): the campaign
	// restocked and the one ended under the fault, and their checks.
	NoMerchant  bool
	APIEnv      []string // added to the api's environment
	ConsumerEnv []string // added to the consumer's
	// Fault injects the fault and heals it; it returns once the faulty
	// part is back (or could not be brought back).
	Fault func(ctx context.Context, r *run) error
}

// Scenarios are all the scenarios, in the order they run.
var Scenarios = []*Scenario{
	{
		Name: "api-kill9", What: "api SIGKILLed under load, restarted; its unsent claims reach claim_log through the reconciler",
		// A long linger keeps claims in the producer when the kill comes,
		// so the reconciler has something to repair.
		APIEnv:     []string{"PRODUCER_LINGER=200ms"},
		NoAnswerOK: true,
		Fault:      killProc("api"),
	},
	{
		Name: "kafka-down", What: "Kafka broker stopped under load, started again; the ring fills, opens get 503",
		Fault: outage("kafka", syscall.SIGTERM), // a controlled shutdown
	},
	{
		Name: "postgres-down", What: "PostgreSQL stopped under load, started again; the consumer retries",
		Fault: outage("postgres", syscall.SIGTERM), // fast mode: sessions are cut
	},
	{
		Name: "consumer-kill9", What: "consumer SIGKILLed mid-batch, restarted; the batch is redelivered",
		Fault: killProc("consumer"),
	},
	{
		Name: "redis-restart", What: "Redis stopped (SIGTERM, AOF flushed) under load, started again; opens get 503 meanwhile",
		// A script whose reply is lost when Redis goes away looks like a
		// failure to the api, which answers 503 though the claim was made.
		Tolerate503Claims: true,
		Fault:             outage("redis", syscall.SIGTERM),
	},
	{
		// Redis write(2)s the AOF before it replies, and only the fsync waits
		// for the next second: a killed process loses nothing acknowledged.
		// The everysec window needs the machine to lose its page cache (an OS
		// crash or power loss), which this suite cannot cause on loopback.
		Name: "redis-kill9", What: "Redis SIGKILLed under load (a process crash), started again from its AOF",
		Info: true, Optional: true, Tolerate503Claims: true,
		Fault: outage("redis", syscall.SIGKILL),
	},
}

// Runner runs scenarios on the local services.
type Runner struct {
	Root        string // the repository
	Out         string // this run's results directory
	Stamp       string // this run's id (UTC time)
	Profile     Profile
	APIBin      string
	ConsumerBin string
	APIAddr     string // 127.0.0.1:18090
	MetricsAddr string // the consumer's, 127.0.0.1:19190
	RedisAddr   string
	PostgresDSN string
	Brokers     string
	KeyPrefix   string // REDIS_KEY_PREFIX of the api and consumer: the suite's own namespace
	Token       string
	Keep        bool // keep campaigns, topics and records even when the scenario passed
	Stack       *stack.Stack
	Stores      *harness.Stores
	Logf        func(format string, args ...any)

	touched bool // a service was stopped: bring everything up before exiting
}

// ScenarioStats are the numbers behind a scenario's verdicts.
type ScenarioStats struct {
	Driver      harness.DriverStats `json:"driver"`
	Answers     map[string]int      `json:"answers"`
	DownMs      int64               `json:"down_ms"`      // from the stop or kill until back
	ConvergeMs  int64               `json:"converge_ms"`  // from the last answer until claim_log = Redis; -1: never
	Counts      []harness.Counts    `json:"counts"`       // per campaign, at the end
	Repaired    int                 `json:"repaired"`     // claims the reconciler wrote
	Duplicates  int                 `json:"duplicates"`   // redelivered events the consumer skipped
	DeadLetters int                 `json:"dead_letters"` // events the consumer dead-lettered
	Abandoned   int                 `json:"abandoned"`    // events the api's producer gave up on
	Readded     int                 `json:"readded"`      // claims Redis had lost, put back by the reconciler
	Oversold    int                 `json:"oversold"`     // of those, packets Redis had handed out again
	Latency     Latency             `json:"latency"`      // of the answered opens
	// Unsolicited counts answers the api wrote on a connection with no
	// request in flight (net/http logs and drops them): fasthttp answers a
	// new connection that sends nothing within ReadTimeout, and the api's
	// error handler makes that a 400 "malformed HTTP request".
	Unsolicited int64 `json:"unsolicited"`
	// Actions are the merchant step's requests, with every attempt.
	Actions []*harness.Action `json:"actions,omitempty"`
	// Cluster: a cluster scenario's numbers (cluster.go).
	Cluster *ClusterStats `json:"cluster,omitempty"`
}

// Latency sums up how long the answered opens took.
type Latency struct {
	P50, P99, Max float64 // ms
	Over1s        int     // answers slower than a second
}

// latencies computes Latency over the answered records.
func latencies(recs []harness.Record) Latency {
	var ms []float64
	var l Latency
	for i := range recs {
		if recs[i].Answered() {
			ms = append(ms, recs[i].LatMs)
			if recs[i].LatMs > 1000 {
				l.Over1s++
			}
		}
	}
	if len(ms) == 0 {
		return l
	}
	slices.Sort(ms)
	at := func(q float64) float64 { return ms[min(len(ms)-1, int(q*float64(len(ms))))] }
	l.P50, l.P99, l.Max = at(0.5), at(0.99), ms[len(ms)-1]
	return l
}

// ScenarioResult is what one scenario found.
type ScenarioResult struct {
	Name      string            `json:"name"`
	What      string            `json:"what"`
	Info      bool              `json:"info,omitempty"`
	Err       string            `json:"error,omitempty"` // it could not run to the end
	Verdicts  []harness.Verdict `json:"verdicts"`
	Stats     ScenarioStats     `json:"stats"`
	Events    []string          `json:"events"`
	Campaigns []int64           `json:"campaigns"`
	TookMs    int64             `json:"took_ms"`
	Dir       string            `json:"dir"`
}

// Failed reports whether the scenario fails the run.
func (r *ScenarioResult) Failed() bool {
	return !r.Info && harness.RunFailed(r.Err, r.Verdicts)
}

// run is one scenario in progress.
type run struct {
	*Runner
	sc       *Scenario
	dir      string
	api      *stack.Proc
	consumer *stack.Proc
	start    time.Time // the load's start
	res      *ScenarioResult
	live     harness.Liveness
	faulted  chan struct{} // closed once the fault is in effect (the merchant step waits for it)
	hotKeys  *lua.Keys     // the keys a cluster fault hits: the hot campaign's, or one of its buckets'
	faultOn  sync.Once
	mu       sync.Mutex // the events: the merchant step notes them too
}

// event notes a moment of the scenario, timed from the load's start.
func (r *run) event(format string, args ...any) {
	msg := harness.NoteEvent(&r.mu, &r.res.Events, r.start, format, args...)
	r.Logf("[%s] %s", r.sc.Name, msg)
}

// inEffect tells the merchant step that the fault is in effect.
func (r *run) inEffect() { r.faultOn.Do(func() { close(r.faulted) }) }

func (r *run) proc(name string) *stack.Proc {
	if name == "api" {
		return r.api
	}
	return r.consumer
}

// restart starts p again and waits until it is ready.
func (r *run) restart(ctx context.Context, p *stack.Proc) error {
	if err := p.Start(); err != nil {
		r.live.NotBack = append(r.live.NotBack, err.Error())
		return err
	}
	if err := p.WaitReady(ctx, 90*time.Second); err != nil {
		r.live.NotBack = append(r.live.NotBack, err.Error())
		return err
	}
	r.live.Restarts[p.Name]++
	r.event("%s ready again (pid %d)", p.Name, p.Pid())
	return nil
}

// killProc is the fault "SIGKILL the api (or consumer), restart it".
func killProc(name string) func(ctx context.Context, r *run) error {
	return func(ctx context.Context, r *run) error {
		p := r.proc(name)
		t0 := time.Now()
		r.event("SIGKILL %s (pid %d)", name, p.Pid())
		if err := p.Signal(syscall.SIGKILL, 10*time.Second); err != nil {
			return err
		}
		r.live.Kills[name]++
		r.inEffect()
		harness.Sleep(ctx, r.Profile.KillPause)
		r.event("restarting %s", name)
		err := r.restart(context.WithoutCancel(ctx), p)
		r.res.Stats.DownMs = time.Since(t0).Milliseconds()
		return err
	}
}

// outage is the fault "stop a service with sig for Profile.Outage, start
// it again" (internal/dev/stack holds the service's lock meanwhile). The
// service is started again even when ctx ends meanwhile.
func outage(name string, sig syscall.Signal) func(ctx context.Context, r *run) error {
	return func(ctx context.Context, r *run) error {
		t0 := time.Now()
		r.event("stopping %s (signal %d)", name, sig)
		r.touched = true
		svc, err := harness.Service(r.Stack, name)
		if err != nil {
			return err
		}
		restore, err := r.Stack.Outage(ctx, svc, sig)
		if err != nil {
			r.live.ServiceErr = append(r.live.ServiceErr, fmt.Sprintf("%s not stopped: %v", name, err))
			return err
		}
		r.event("%s down (stopping took %s)", name, time.Since(t0).Round(100*time.Millisecond))
		r.inEffect()
		harness.Sleep(ctx, r.Profile.Outage)
		r.event("starting %s", name)
		if err := restore(context.WithoutCancel(ctx)); err != nil {
			r.live.ServiceErr = append(r.live.ServiceErr, fmt.Sprintf("%s not started again: %v", name, err))
			return err
		}
		r.res.Stats.DownMs = time.Since(t0).Milliseconds()
		r.live.Outages++
		r.event("%s up again, %s after the stop began", name, time.Since(t0).Round(100*time.Millisecond))
		return nil
	}
}

// Run runs one scenario: its own api and consumer, two fresh campaigns, the
// load with the fault in it, then the checker.
func (rn *Runner) Run(ctx context.Context, sc *Scenario) (res *ScenarioResult) {
	t0 := time.Now()
	res = &ScenarioResult{Name: sc.Name, What: sc.What, Info: sc.Info, Stats: ScenarioStats{ConvergeMs: -1}}
	r := &run{Runner: rn, sc: sc, res: res, dir: filepath.Join(rn.Out, sc.Name),
		live: harness.NewLiveness(), faulted: make(chan struct{})}
	res.Dir = r.dir
	defer func() { res.TookMs = time.Since(t0).Milliseconds() }()
	if err := r.run(ctx); err != nil {
		res.Err = err.Error()
		r.event("scenario error: %v", err)
	}
	return res
}

func (r *run) run(ctx context.Context) (err error) {
	p := r.Profile
	limit := p.Duration + p.Tail + p.Converge + p.Outage + 2*time.Minute
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	for _, addr := range []string{r.APIAddr, r.MetricsAddr} {
		if err := stack.PortFree(addr); err != nil {
			return err
		}
	}
	topic := "chaos_" + r.Stamp + "_" + strings.ReplaceAll(r.sc.Name, "-", "_")
	procs := &harness.Procs{APIBin: r.APIBin, ConsumerBin: r.ConsumerBin, RedisAddr: r.RedisAddr, PostgresDSN: r.PostgresDSN,
		Brokers: r.Brokers, Topic: topic, KeyPrefix: r.KeyPrefix, Token: r.Token, Dir: r.dir}
	r.consumer = procs.Consumer(r.MetricsAddr, r.sc.ConsumerEnv...)
	r.api = procs.API("api", r.APIAddr, r.sc.APIEnv...)
	defer func() {
		for _, p := range []*stack.Proc{r.api, r.consumer} {
			if serr := p.Stop(); serr != nil {
				r.event("stopping %s: %v", p.Name, serr)
			}
		}
	}()
	for _, pr := range []*stack.Proc{r.consumer, r.api} {
		if err := pr.Start(); err != nil {
			return err
		}
		if err := pr.WaitReady(ctx, 90*time.Second); err != nil {
			return err
		}
	}
	r.event("api (pid %d) and consumer (pid %d) ready; topic %s", r.api.Pid(), r.consumer.Pid(), topic)

	big, small, err := r.createCampaigns(ctx)
	if err != nil {
		return err
	}
	r.res.Campaigns = []int64{big, small}
	r.event("campaigns: %d (never sells out), %d (sells out mid-run)", big, small)
	labels := []string{"big", "small"}
	targets := []harness.Target{{Campaign: big, Weight: 9}, {Campaign: small, Weight: 1}}
	var plan *merchantPlan
	if !r.sc.NoMerchant {
		if plan, err = r.createMerchantCampaigns(ctx); err != nil {
			return err
		}
		r.res.Campaigns = append(r.res.Campaigns, plan.refill, plan.ended)
		labels = append(labels, "refill", "ended")
		targets = []harness.Target{{Campaign: big, Weight: 7}, {Campaign: small, Weight: 1}, {Campaign: plan.refill, Weight: 1}, {Campaign: plan.ended, Weight: 1}}
		r.event("campaigns: %d (sells out early, restocked under the fault), %d (ended under the fault)", plan.refill, plan.ended)
	}

	recPath := filepath.Join(r.dir, "records.jsonl")
	f, err := os.Create(recPath)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	cfg := harness.DriverConfig{
		BaseURLs: []string{"http://" + r.APIAddr}, Targets: targets,
		Rate: p.Rate, Duration: p.Duration, Tail: p.Tail, Verify: p.Verify,
		Prefix: "chaos-" + r.Stamp + "-" + r.sc.Name, Out: f, Start: start,
	}
	if plan != nil {
		cfg.Observe = plan.observe
	}
	drv, err := harness.NewDriver(cfg)
	if err != nil {
		return err
	}
	type driven struct {
		st  harness.DriverStats
		err error
	}
	dctx, dcancel := context.WithTimeout(ctx, p.Duration+p.Tail+2*time.Minute)
	defer dcancel()
	done := make(chan driven, 1)
	r.start = start
	unsolicited.Store(0)
	go func() {
		st, err := drv.Run(dctx)
		done <- driven{st, err}
	}()
	r.event("load: %d new users/s for %s", p.Rate, p.Duration)
	acted := make(chan []*harness.Action, 1)
	if plan != nil {
		go func() { acted <- r.merchant(dctx, plan, r.faulted) }()
	} else {
		acted <- nil
	}

	harness.Sleep(ctx, p.FaultAt)
	faultErr := r.sc.Fault(ctx, r)
	if faultErr != nil {
		r.event("fault: %v", faultErr)
	}
	d := <-done
	r.res.Stats.Actions = <-acted
	r.res.Stats.Driver = d.st
	if d.err != nil {
		return fmt.Errorf("driver: %w", d.err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	loadEnd := r.start.Add(time.Duration(d.st.LoadEndsMs) * time.Millisecond)
	r.event("load done: %d users, %d attempts, %d skipped, %d gave up, %d abandoned",
		d.st.Users, d.st.Attempts, d.st.Skipped, d.st.GaveUp, d.st.Abandoned)

	// Wait (bounded) for claim_log to hold what Redis holds and for both
	// processes to be healthy, then check.
	ids := r.res.Campaigns
	var counts []harness.Counts
	converged := false
	werr := stack.Poll(ctx, p.Converge, func(ctx context.Context) error {
		counts = counts[:0]
		converged = true
		for _, id := range ids {
			c, err := r.Stores.Counts(ctx, id)
			if err != nil {
				converged = false
				return err
			}
			counts = append(counts, c)
			converged = converged && c.Converged()
		}
		r.live.APIReady = r.api.Ready(ctx) == nil
		r.live.Healthy = r.consumer.Ready(ctx) == nil
		if converged && r.live.APIReady && r.live.Healthy {
			return nil
		}
		return fmt.Errorf("counts %v, api ready %v, consumer healthy %v", counts, r.live.APIReady, r.live.Healthy)
	})
	r.res.Stats.Counts = append([]harness.Counts(nil), counts...)
	if converged {
		r.res.Stats.ConvergeMs = time.Since(loadEnd).Milliseconds()
	}
	if werr != nil {
		r.event("not converged: %v", werr)
	} else {
		r.event("converged: %v", counts)
	}
	if plan != nil {
		// The api's sweep finishes a restock whose Redis step did not run
		// (every 5 s, actions older than 2 s).
		var pending int64
		perr := stack.Poll(ctx, 10*time.Second, func(ctx context.Context) (err error) {
			if pending, err = r.Stores.PendingStock(ctx, ids); err == nil && pending > 0 {
				err = fmt.Errorf("%d stock actions pending", pending)
			}
			return err
		})
		if perr != nil {
			r.event("restock not applied in Redis: %v", perr)
		}
	}

	recs, err := harness.ReadRecords(recPath)
	if err != nil {
		return err
	}
	var states []*harness.CampaignState
	for i, id := range ids {
		st, err := r.Stores.State(ctx, id)
		if err != nil {
			return err
		}
		st.Label = labels[i]
		st.SoldOutOK = st.Label == "small" || st.Label == "refill"
		states = append(states, st)
	}
	r.res.Verdicts = Check(recs, states, CheckOptions{Tolerate503Claims: r.sc.Tolerate503Claims || r.acksReplica(), NoAnswerOK: r.sc.NoAnswerOK,
		Actions: r.res.Stats.Actions})
	r.res.Stats.Latency = latencies(recs)
	r.res.Stats.Unsolicited = unsolicited.Swap(0)
	r.res.Stats.Answers = map[string]int{}
	for i := range recs {
		r.res.Stats.Answers[harness.StatusKey(&recs[i])]++
	}

	// Stop the processes (an expected exit), then read their logs whole.
	r.readRetried(ctx)
	for _, pr := range []*stack.Proc{r.api, r.consumer} {
		if err := pr.Stop(); err != nil {
			r.event("stopping %s: %v", pr.Name, err)
		}
		r.live.Crashes = append(r.live.Crashes, pr.Crashes()...)
	}
	if down := r.Stack.Down(ctx); len(down) > 0 {
		r.live.ServiceErr = append(r.live.ServiceErr, "down at the end: "+strings.Join(down, ", "))
	}
	r.scanLogs(ids)
	if r.sc.Verdicts != nil {
		r.res.Verdicts = append(r.res.Verdicts, r.sc.Verdicts(r, recs)...)
	}
	r.res.Verdicts = append(r.res.Verdicts, r.live.Verdict())

	if !r.res.Failed() && !r.res.Info && !r.Keep {
		r.cleanup(context.WithoutCancel(ctx), ids, topic)
		_ = os.Remove(recPath)
	} else {
		r.event("kept campaigns %v, topic %s and %s", ids, topic, recPath)
	}
	return nil
}

// createCampaigns creates the scenario's two campaigns through the api: one
// too large to sell out and a small one that sells out mid-run.
func (r *run) createCampaigns(ctx context.Context) (big, small int64, err error) {
	n := max(50, int64(float64(r.Profile.Rate)/10*r.Profile.Duration.Seconds()*0.35))
	// On a cluster both are split over ClusterBuckets buckets: the faults
	// then hit one bucket's slot of the hot campaign, and small sells out
	// across buckets (InvBuckets).
	k := 1
	if r.sc.Cluster {
		k = ClusterBuckets
	}
	if big, err = r.createCampaignK(ctx, "big", map[string]int64{"1": 3_000_000, "10": 500_000, "100": 20_000}, k); err != nil {
		return 0, 0, err
	}
	small, err = r.createCampaignK(ctx, "small", map[string]int64{"8": n * 3 / 4, "88": n - n*3/4}, k)
	return big, small, err
}

// createMerchantCampaigns creates the campaigns of the merchant step:
// refill, which a tenth of the users empty half way to the fault (amounts
// 5 and 50, n packets), restocked under the fault with n packets of amount
// 5, and ended, too large to sell out, ended under the fault.
func (r *run) createMerchantCampaigns(ctx context.Context) (*merchantPlan, error) {
	n := max(20, int64(float64(r.Profile.Rate)/10*r.Profile.FaultAt.Seconds()/2))
	m := &merchantPlan{amount: 5, base: n - n/4, count: n, soldOut: make(chan struct{}),
		key: "chaos-" + r.Stamp + "-" + r.sc.Name + "-restock"}
	var err error
	if m.refill, err = r.createCampaign(ctx, "refill", map[string]int64{"5": m.base, "50": n / 4}); err != nil {
		return nil, err
	}
	if m.ended, err = r.createCampaign(ctx, "ended", map[string]int64{"2": 1_000_000, "20": 100_000}); err != nil {
		return nil, err
	}
	return m, nil
}

func (r *run) createCampaign(ctx context.Context, what string, inv map[string]int64) (int64, error) {
	return r.createCampaignK(ctx, what, inv, 1)
}

// createCampaignK creates a campaign of k buckets (1: today's layout).
func (r *run) createCampaignK(ctx context.Context, what string, inv map[string]int64, k int) (int64, error) {
	return harness.CreateCampaign(ctx, "http://"+r.APIAddr, r.Token, fmt.Sprintf("chaos %s %s %s", r.Stamp, r.sc.Name, what), inv, k)
}

// scanLogs reads the api and consumer logs: panics, and the reconciler's,
// consumer's and producer's counts of what they did.
func (r *run) scanLogs(ids []int64) {
	ours := map[int64]bool{}
	for _, id := range ids {
		ours[id] = true
	}
	for _, pr := range []*stack.Proc{r.api, r.consumer} {
		err := harness.ScanLog(pr.Log, func(line string) { r.live.Panics = append(r.live.Panics, pr.Name+": "+line) }, func(e *harness.LogEntry) {
			switch e.Msg {
			case "reconciler repaired claims missing from claim_log":
				if ours[e.CampaignID] {
					r.res.Stats.Repaired += e.Repaired
				}
			case "batch committed":
				r.res.Stats.Duplicates += e.Duplicates
				r.res.Stats.DeadLetters += e.DeadLetters
			case "claim event not produced before shutdown; the reconciler will persist it":
				r.res.Stats.Abandoned++
			case "reconciler put back into redis claims it had lost":
				if ours[e.CampaignID] {
					r.noteReadded(e.Readded, e.Oversold)
				}
			}
		})
		if err != nil {
			r.live.Panics = append(r.live.Panics, fmt.Sprintf("%s log: %v", pr.Name, err))
		}
	}
}

// cleanup deletes what the scenario made: campaigns (rows and Redis keys),
// the topics and the consumer group.
func (r *run) cleanup(ctx context.Context, ids []int64, topic string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.Stores.Delete(ctx, ids); err != nil {
		r.event("cleanup: campaigns %v: %v", ids, err)
	}
	if err := harness.DeleteTopics(ctx, r.Brokers, topic); err != nil {
		r.event("cleanup: %v", err)
	}
}
