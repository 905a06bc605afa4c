package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// A schedule is one torture run as data: the tier, the ack mode, the
// campaigns, the load and the steps (faults and merchant actions) with
// their times. Generate draws one from a seed (pure: the same seed and
// options give the same schedule); a schedule saved as JSON replays it.

// Tiers: where the run's Redis is.
const (
	TierStandalone = "standalone" // one redis-server
	TierCluster    = "cluster"    // the local Redis Cluster: 3 masters, 3 replicas
)

// Ack modes: when an open is answered OK (REDIS_ACK of the api).
const (
	AckMaster  = "master"  // once the master ran the claim (a failover may lose it)
	AckReplica = "replica" // once a replica holds it too
	// AckAuto is a setting, not a schedule's mode: master on one Redis,
	// replica and master in turn on the cluster (main.go, ackFor).
	AckAuto = "auto"
)

// ScheduleVersion is the version of the JSON format.
const ScheduleVersion = 1

// Schedule is a torture run, drawn from a seed or read from a file.
type Schedule struct {
	Version   int        `json:"version"`
	Seed      uint64     `json:"seed"`
	Tier      string     `json:"tier"`
	Ack       string     `json:"ack"`
	Profile   string     `json:"profile"`
	Rate      int        `json:"rate"`    // new users per second
	LoadMs    int64      `json:"load_ms"` // how long new users arrive
	Campaigns []Campaign `json:"campaigns"`
	Steps     []Step     `json:"steps"`
	// Known names a product bug this schedule still fails on: a kept
	// schedule with it is not replayed as one that must pass.
	Known string `json:"known,omitempty"`
	Note  string `json:"note,omitempty"`
}

// Campaign is one campaign of a run, created at its start.
type Campaign struct {
	Name      string           `json:"name"`
	Buckets   int              `json:"buckets"`   // K
	Weight    int              `json:"weight"`    // its share of the new users
	Inventory map[string]int64 `json:"inventory"` // amount → packets
}

// Step is one fault or merchant action. Target names what it hits:
//
//	redis                 the one Redis (standalone)
//	master:I, replica:I   the master or the replica of shard I (cluster; shard I
//	                      holds the I-th third of the slots at the start)
//	shard:I               shard I (repl-cut, failover)
//	api:I                 api replica I (0 or 1)
//	campaign:C            campaign C (restock, end)
//	campaign:C/bucket:B   the slot of campaign C's bucket B (migrate; with one
//	                      bucket, bucket 0 is its home)
//	(empty)               the consumer, Kafka, PostgreSQL
type Step struct {
	AtMs   int64  `json:"at_ms"` // after the load's start
	Kind   string `json:"kind"`
	Target string `json:"target,omitempty"`
	ForMs  int64  `json:"for_ms,omitempty"` // how long the fault holds before it heals
	Signal string `json:"signal,omitempty"` // kafka-down, postgres-down: term or kill
	Amount int64  `json:"amount,omitempty"` // restock
	Count  int64  `json:"count,omitempty"`  // restock
}

func (s Step) String() string {
	out := fmt.Sprintf("t=%.1fs %s", float64(s.AtMs)/1000, s.Kind)
	if s.Target != "" {
		out += " " + s.Target
	}
	if s.Signal != "" {
		out += " (SIG" + strings.ToUpper(s.Signal) + ")"
	}
	if s.Kind == "restock" {
		out += fmt.Sprintf(" +%d of %d", s.Count, s.Amount)
	}
	if s.ForMs > 0 {
		out += fmt.Sprintf(" for %.1fs", float64(s.ForMs)/1000)
	}
	return out
}

// Profile is the timing of a run.
type Profile struct {
	Name   string
	Rate   int    // new users per second
	LoadMs int64  // how long new users arrive
	Faults [2]int // steps drawn, at least and at most
}

// Profiles are the timings a run can have: short is CI's, default what
// SEEDS=n runs (about a minute a seed), long a few minutes of faults.
var Profiles = map[string]Profile{
	"short":   {Name: "short", Rate: 200, LoadMs: 16_000, Faults: [2]int{3, 4}},
	"default": {Name: "default", Rate: 300, LoadMs: 32_000, Faults: [2]int{3, 8}},
	"long":    {Name: "long", Rate: 300, LoadMs: 150_000, Faults: [2]int{3, 8}},
}

// Timing of the steps within the load.
const (
	firstStepMs = 2_000 // no step before the load has run this long
	healedByMs  = 2_500 // every fault heals this long before the load ends
	settleMs    = 2_500 // a target is left alone this long after its fault healed
	actionMs    = 3_000 // how long a merchant action holds its campaign
)

// nodeTimeoutMs is the local cluster's cluster-node-timeout: a master
// stopped this long is failed over.
const nodeTimeoutMs = 2_000

// Options are what a schedule is drawn for besides its seed.
type Options struct {
	Tier    string
	Ack     string
	Profile string
	// MasterLoss allows, in ack mode master, the faults that make a master
	// lose writes its replica never got: a master killed, or
	// stopped past the node timeout. In ack mode replica they are always
	// drawn.
	MasterLoss bool
}

// Generate draws a schedule from seed: the campaigns (K ∈ {1, 3, 12}), 3
// to 8 steps (the profile's range) of the kinds the tier allows, at random
// times in the load, overlapping but never two on the same target at once.
func Generate(seed uint64, o Options) (*Schedule, error) {
	p, ok := Profiles[o.Profile]
	if !ok {
		return nil, fmt.Errorf("no profile %q", o.Profile)
	}
	if o.Tier != TierStandalone && o.Tier != TierCluster {
		return nil, fmt.Errorf("tier %q: want standalone or cluster", o.Tier)
	}
	if o.Ack != AckMaster && o.Ack != AckReplica {
		return nil, fmt.Errorf("ack %q: want master or replica", o.Ack)
	}
	g := &drawer{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), o: o, p: p}
	s := &Schedule{Version: ScheduleVersion, Seed: seed, Tier: o.Tier, Ack: o.Ack, Profile: p.Name, Rate: p.Rate, LoadMs: p.LoadMs}
	s.Campaigns = g.campaigns()
	g.s = s
	want := p.Faults[0] + g.r.IntN(p.Faults[1]-p.Faults[0]+1)
	for tries := 0; len(s.Steps) < want && tries < 500; tries++ {
		if st, ok := g.step(); ok {
			s.Steps = append(s.Steps, st)
		}
	}
	sort.SliceStable(s.Steps, func(i, j int) bool { return s.Steps[i].AtMs < s.Steps[j].AtMs })
	return s, s.Validate()
}

// drawer draws one schedule.
type drawer struct {
	r *rand.Rand
	o Options
	p Profile
	s *Schedule
}

func (g *drawer) between(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + g.r.Int64N(hi-lo+1)
}

// campaigns draws the run's three campaigns: hot (most of the users, too
// large to sell out), mid (sells out part way) and small (sells out
// early), each of K ∈ {1, 3, 12} buckets.
func (g *drawer) campaigns() []Campaign {
	ks := []int{1, 3, 12}
	users := int64(g.p.Rate) * g.p.LoadMs / 1000
	mid := max(40, users*3/10*g.between(25, 65)/100)
	small := max(20, users/10*g.between(10, 50)/100)
	return []Campaign{
		{Name: "hot", Buckets: ks[g.r.IntN(3)], Weight: 6, Inventory: map[string]int64{"1": 1_000_000, "10": 100_000}},
		{Name: "mid", Buckets: ks[g.r.IntN(3)], Weight: 3, Inventory: map[string]int64{"8": mid * 3 / 4, "88": mid - mid*3/4}},
		{Name: "small", Buckets: ks[g.r.IntN(3)], Weight: 1, Inventory: map[string]int64{"5": small}},
	}
}

// step draws one step and reports whether it fits the schedule so far.
func (g *drawer) step() (Step, bool) {
	kinds := KindsFor(g.o.Tier)
	k := kinds[g.r.IntN(len(kinds))]
	st := Step{Kind: k.Name}
	if k.Hold[1] > 0 {
		st.ForMs = g.between(k.Hold[0], k.Hold[1])
	}
	st.AtMs = g.between(firstStepMs, g.p.LoadMs-healedByMs-st.ForMs-1_000)
	k.draw(g, &st)
	if MasterLoss(g.o.Tier, st) && g.o.Ack == AckMaster && !g.o.MasterLoss {
		return st, false
	}
	return st, g.fits(st)
}

// fits reports whether st can join the schedule: nothing else on its
// targets meanwhile, and a campaign is never both restocked and ended.
func (g *drawer) fits(st Step) bool {
	for _, o := range g.s.Steps {
		if overlaps(st, o) && conflicts(resources(g.s.Tier, st), resources(g.s.Tier, o)) {
			return false
		}
		if st.Target == o.Target && (st.Kind == "end" && o.Kind == "restock" || st.Kind == "restock" && o.Kind == "end" || st.Kind == "end" && o.Kind == "end") {
			return false
		}
	}
	return true
}

// busy is how long a step holds its targets.
func busy(st Step) (from, to int64) {
	switch st.Kind {
	case "restock", "end":
		return st.AtMs, st.AtMs + actionMs
	}
	return st.AtMs, st.AtMs + st.ForMs + settleMs
}

func overlaps(a, b Step) bool {
	af, at := busy(a)
	bf, bt := busy(b)
	return af < bt && bf < at
}

// resources are what a step holds: "shard:I" (or "redis"), "api:I",
// "consumer", "kafka", "postgres", "campaign:C"; a migration holds every
// shard ("shard:*").
func resources(tier string, st Step) []string {
	switch st.Kind {
	case "migrate":
		return []string{"shard:*"}
	case "redis-kill", "redis-stop":
		if tier == TierStandalone {
			return []string{"redis"}
		}
		_, i, _, _ := parseTarget(st.Target)
		return []string{"shard:" + strconv.Itoa(i)}
	case "consumer-kill":
		return []string{"consumer"}
	case "kafka-down":
		return []string{"kafka"}
	case "postgres-down":
		return []string{"postgres"}
	}
	return []string{st.Target} // shard:I, api:I, campaign:C
}

func conflicts(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y || (x == "shard:*" && strings.HasPrefix(y, "shard:")) || (y == "shard:*" && strings.HasPrefix(x, "shard:")) {
				return true
			}
		}
	}
	return false
}

// MasterLoss reports whether st can make a master lose writes it
// acknowledged and its replica never got: on a cluster, a master killed,
// or stopped past the node timeout (its replica is promoted).
func MasterLoss(tier string, st Step) bool {
	if tier != TierCluster || !strings.HasPrefix(st.Target, "master:") {
		return false
	}
	return st.Kind == "redis-kill" || st.Kind == "redis-stop" && st.ForMs >= nodeTimeoutMs
}

// Kind is a kind of step: where it can be drawn, how long it holds, and
// how its target and parameters are drawn.
type Kind struct {
	Name    string
	What    string
	Cluster bool     // drawn only on a cluster
	Hold    [2]int64 // ms the fault holds, drawn in this range ({0, 0}: at once)
	draw    func(g *drawer, st *Step)
}

// Kinds are the kinds of step, the table the generator draws from and the
// nemesis applies (nemesis.go).
var Kinds = []Kind{
	{Name: "redis-kill", What: "kill -9 of a Redis master or replica, started again after the hold (it rejoins as a replica if its replica took over)",
		Hold: [2]int64{2_000, 8_000}, draw: drawNode},
	{Name: "redis-stop", What: "SIGSTOP of a Redis master or replica, SIGCONT after the hold (past the node timeout a master is failed over)",
		Hold: [2]int64{1_000, 6_000}, draw: drawNode},
	{Name: "repl-cut", What: "the replication stream of a shard cut: its master drops its replica's link every 100 ms for the hold",
		Cluster: true, Hold: [2]int64{2_000, 5_000}, draw: drawShard},
	{Name: "migrate", What: "the slot of a campaign's bucket migrated to another master under load: its claims hash first, the rest after the hold",
		Cluster: true, Hold: [2]int64{500, 2_500}, draw: drawBucket},
	{Name: "failover", What: "CLUSTER FAILOVER on a shard's replica (a manual failover)",
		Cluster: true, draw: drawShard},
	{Name: "api-kill", What: "kill -9 of one of the two api replicas, started again after the hold",
		Hold: [2]int64{1_000, 5_000}, draw: func(g *drawer, st *Step) { st.Target = "api:" + strconv.Itoa(g.r.IntN(2)) }},
	{Name: "consumer-kill", What: "kill -9 of the consumer, started again after the hold",
		Hold: [2]int64{1_000, 5_000}, draw: func(*drawer, *Step) {}},
	{Name: "kafka-down", What: "the Kafka broker stopped (SIGTERM: controlled; SIGKILL: a crash), started again after the hold",
		Hold: [2]int64{3_000, 10_000}, draw: drawSignal},
	{Name: "postgres-down", What: "PostgreSQL stopped (SIGTERM: fast mode; SIGKILL: immediate mode), started again after the hold",
		Hold: [2]int64{2_000, 8_000}, draw: drawSignal},
	{Name: "restock", What: "the merchant adds stock to a campaign (retried with its Idempotency-Key, then sent again on purpose)",
		draw: drawRestock},
	{Name: "end", What: "the merchant ends a campaign now (retried until answered)",
		draw: func(g *drawer, st *Step) { st.Target = "campaign:" + strconv.Itoa(g.r.IntN(len(g.s.Campaigns))) }},
}

// KindsFor are the kinds drawn on tier.
func KindsFor(tier string) []Kind {
	var out []Kind
	for _, k := range Kinds {
		if !k.Cluster || tier == TierCluster {
			out = append(out, k)
		}
	}
	return out
}

// KindOf is the kind named name.
func KindOf(name string) (Kind, bool) {
	i := slices.IndexFunc(Kinds, func(k Kind) bool { return k.Name == name })
	if i < 0 {
		return Kind{}, false
	}
	return Kinds[i], true
}

func drawNode(g *drawer, st *Step) {
	if g.s.Tier == TierStandalone {
		st.Target = "redis"
		return
	}
	st.Target = []string{"master:", "replica:"}[g.r.IntN(2)] + strconv.Itoa(g.r.IntN(3))
}

func drawShard(g *drawer, st *Step) { st.Target = "shard:" + strconv.Itoa(g.r.IntN(3)) }

func drawBucket(g *drawer, st *Step) {
	c := g.r.IntN(len(g.s.Campaigns))
	st.Target = fmt.Sprintf("campaign:%d/bucket:%d", c, g.r.IntN(g.s.Campaigns[c].Buckets))
}

func drawSignal(g *drawer, st *Step) { st.Signal = []string{"term", "kill"}[g.r.IntN(2)] }

// drawRestock adds stock to a campaign that sells out (not the hot one).
func drawRestock(g *drawer, st *Step) {
	c := 1 + g.r.IntN(len(g.s.Campaigns)-1)
	st.Target = "campaign:" + strconv.Itoa(c)
	inv := g.s.Campaigns[c].Inventory
	amounts := slices.Sorted(func(yield func(string) bool) {
		for a := range inv {
			if !yield(a) {
				return
			}
		}
	})
	a := amounts[g.r.IntN(len(amounts))]
	st.Amount, _ = strconv.ParseInt(a, 10, 64)
	st.Count = max(10, min(inv[a]/3, 10_000))
}

// parseTarget reads a step's target: its kind (redis, master, replica,
// shard, api, campaign, or "" when empty) and its numbers (a campaign's
// bucket in b).
func parseTarget(t string) (kind string, a, b int, err error) {
	if t == "" || t == "redis" {
		return t, 0, 0, nil
	}
	head, rest, _ := strings.Cut(t, "/")
	kind, num, ok := strings.Cut(head, ":")
	if a, err = strconv.Atoi(num); !ok || err != nil || a < 0 {
		return "", 0, 0, fmt.Errorf("target %q: want KIND:N", t)
	}
	if rest != "" {
		bs, ok := strings.CutPrefix(rest, "bucket:")
		if b, err = strconv.Atoi(bs); !ok || err != nil || b < 0 || kind != "campaign" {
			return "", 0, 0, fmt.Errorf("target %q: want campaign:C/bucket:B", t)
		}
	}
	if !slices.Contains([]string{"master", "replica", "shard", "api", "campaign"}, kind) {
		return "", 0, 0, fmt.Errorf("target %q: unknown kind %q", t, kind)
	}
	return kind, a, b, nil
}

// targetKinds are the target kinds each step kind takes.
var targetKinds = map[string][]string{
	"redis-kill": {"redis", "master", "replica"}, "redis-stop": {"redis", "master", "replica"},
	"repl-cut": {"shard"}, "failover": {"shard"}, "migrate": {"campaign"},
	"api-kill": {"api"}, "consumer-kill": {""}, "kafka-down": {""}, "postgres-down": {""},
	"restock": {"campaign"}, "end": {"campaign"},
}

// Validate checks a schedule read from a file (or drawn): known tier,
// ack, kinds and targets, numbers in range, steps within the load.
func (s *Schedule) Validate() error {
	var errs []error
	if s.Version != ScheduleVersion {
		errs = append(errs, fmt.Errorf("version %d, want %d", s.Version, ScheduleVersion))
	}
	if s.Tier != TierStandalone && s.Tier != TierCluster {
		errs = append(errs, fmt.Errorf("tier %q", s.Tier))
	}
	if s.Ack != AckMaster && s.Ack != AckReplica {
		errs = append(errs, fmt.Errorf("ack %q", s.Ack))
	}
	if s.Rate < 1 || s.Rate > 20_000 || s.LoadMs < 5_000 || s.LoadMs > 3_600_000 {
		errs = append(errs, fmt.Errorf("rate %d, load %dms: want 1-20000/s, 5s-1h", s.Rate, s.LoadMs))
	}
	if len(s.Campaigns) == 0 {
		errs = append(errs, errors.New("no campaign"))
	}
	for i, c := range s.Campaigns {
		if err := c.validate(); err != nil {
			errs = append(errs, fmt.Errorf("campaign %d: %w", i, err))
		}
	}
	for i, st := range s.Steps {
		if err := s.validStep(st); err != nil {
			errs = append(errs, fmt.Errorf("step %d (%s): %w", i, st.Kind, err))
		}
	}
	return errors.Join(errs...)
}

func (c Campaign) validate() error {
	if c.Buckets < 1 || c.Buckets > 64 || c.Weight < 1 || len(c.Inventory) == 0 {
		return fmt.Errorf("buckets %d, weight %d, %d amounts", c.Buckets, c.Weight, len(c.Inventory))
	}
	for a, n := range c.Inventory {
		if v, err := strconv.ParseInt(a, 10, 64); err != nil || v < 1 || n < 1 {
			return fmt.Errorf("inventory %q: %d", a, n)
		}
	}
	return nil
}

func (s *Schedule) validStep(st Step) error {
	k, ok := KindOf(st.Kind)
	if !ok {
		return errors.New("unknown kind")
	}
	if k.Cluster && s.Tier != TierCluster {
		return errors.New("needs the cluster tier")
	}
	tk, a, b, err := parseTarget(st.Target)
	switch {
	case err != nil:
		return err
	case !slices.Contains(targetKinds[st.Kind], tk):
		return fmt.Errorf("target %q", st.Target)
	case tk == "redis" && s.Tier != TierStandalone, (tk == "master" || tk == "replica") && s.Tier != TierCluster:
		return fmt.Errorf("target %q on tier %s", st.Target, s.Tier)
	case (tk == "shard" || tk == "master" || tk == "replica") && a > 2, tk == "api" && a > 1:
		return fmt.Errorf("target %q out of range", st.Target)
	case tk == "campaign" && (a >= len(s.Campaigns) || b >= s.Campaigns[a].Buckets):
		return fmt.Errorf("target %q: no such campaign or bucket", st.Target)
	case st.AtMs < 0 || st.ForMs < 0 || st.AtMs+st.ForMs > s.LoadMs:
		return fmt.Errorf("at %dms for %dms: outside the load (%dms)", st.AtMs, st.ForMs, s.LoadMs)
	case st.Kind == "restock" && (st.Count < 1 || s.Campaigns[a].Inventory[strconv.FormatInt(st.Amount, 10)] == 0):
		return fmt.Errorf("restock of %d × %d: not an amount of the campaign", st.Count, st.Amount)
	case (st.Kind == "kafka-down" || st.Kind == "postgres-down") && st.Signal != "term" && st.Signal != "kill":
		return fmt.Errorf("signal %q: want term or kill", st.Signal)
	}
	return nil
}

// LoadSchedule reads a schedule saved as JSON.
func LoadSchedule(path string) (*Schedule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Schedule
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sort.SliceStable(s.Steps, func(i, j int) bool { return s.Steps[i].AtMs < s.Steps[j].AtMs })
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// JSON is the schedule as saved: indented, a campaign or a step a line.
func (s *Schedule) JSON() []byte {
	c := *s
	c.Campaigns, c.Steps = nil, nil
	b, _ := json.MarshalIndent(&c, "", "  ")
	out := string(b)
	out = strings.Replace(out, `"campaigns": null`, `"campaigns": `+lines(s.Campaigns), 1)
	out = strings.Replace(out, `"steps": null`, `"steps": `+lines(s.Steps), 1)
	return []byte(out + "\n")
}

// lines is a JSON array of xs, one compact element a line.
func lines[T any](xs []T) string {
	if len(xs) == 0 {
		return "[]"
	}
	parts := make([]string, len(xs))
	for i := range xs {
		b, _ := json.Marshal(xs[i])
		parts[i] = "    " + string(b)
	}
	return "[\n" + strings.Join(parts, ",\n") + "\n  ]"
}

// Summary is the schedule in a few lines, as printed before a run.
func (s *Schedule) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %s, ack %s, profile %s: %d new users/s for %.0fs\n", s.Seed, s.Tier, s.Ack, s.Profile, s.Rate, float64(s.LoadMs)/1000)
	for i, c := range s.Campaigns {
		fmt.Fprintf(&b, "  campaign %d %s: K=%d, weight %d, inventory %v\n", i, c.Name, c.Buckets, c.Weight, c.Inventory)
	}
	for _, st := range s.Steps {
		fmt.Fprintf(&b, "  %s\n", st)
	}
	if s.Known != "" {
		fmt.Fprintf(&b, "  known to fail: %s\n", s.Known)
	}
	return b.String()
}
