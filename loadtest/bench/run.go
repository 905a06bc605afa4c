package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/lua"
)

// bench is one run in progress.
type bench struct {
	cfg      *Config
	st       *stack.Stack
	bins     map[string]string
	script   string // loadtest/wrk/bench.lua
	work     string // results/bench-<stamp>: logs, wrk output, profiles
	run      string // id of the run: topic, group, user id prefixes
	token    string
	secret   string // USER_TOKEN_SECRET of the identity phases
	base     string // the api's URL
	ks       lua.Keyspace
	db       *pgxpool.Pool
	rdb      rueidis.Client
	api      *stack.Proc
	consumer *stack.Proc
	pids     func() map[string][]int // the services' processes, for CPU
	created  []int64                 // campaigns to delete at the end
	shared   *campaigns              // made once, reused by every variant
	res      *Result
}

// run is the whole benchmark: set-up, phases, report, clean-up.
func run(ctx context.Context, cfg *Config) (*Result, error) {
	for _, tool := range []string{"wrk", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed", tool)
		}
	}
	scfg, err := stack.FromEnv()
	if err != nil {
		return nil, err
	}
	scfg.RedisAddr, scfg.KafkaMode = cfg.RedisAddr, stack.KafkaMode(cfg.KafkaMode)
	scfg.KafkaAddr = strings.TrimSpace(strings.Split(cfg.KafkaBrokers, ",")[0])
	if pc, err := pgx.ParseConfig(cfg.PostgresDSN); err == nil {
		scfg.PostgresPort = int(pc.Port)
	}
	scfg.Logf = logf
	st, err := stack.New(scfg)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	stamp := now.Format("20060102T150405Z")
	b := &bench{cfg: cfg, st: st, script: filepath.Join(st.Root, "loadtest/wrk/bench.lua"),
		work:  filepath.Join(st.Root, "loadtest/results", "bench-"+stamp),
		run:   fmt.Sprintf("bench_%s_%d", now.Format("20060102150405"), os.Getpid()),
		token: "bench-" + strconv.FormatInt(now.UnixNano(), 36),
		base:  "http://127.0.0.1:" + strconv.Itoa(cfg.Port),
		ks:    lua.NewKeyspace(cfg.KeyPrefix),
		res: &Result{Run: Run{StartedAt: stamp, Threads: cfg.Threads, Duration: cfg.Duration.String(),
			LoadStart: loadavg(), KeyPrefix: cfg.KeyPrefix, Variants: cfg.Variants, FloodClaims: cfg.FloodClaims,
			Pprof: cfg.Pprof, Command: command()}},
	}
	if cfg.Identity {
		b.res.Run.Identity = identityText()
		if b.secret, err = newSecret(); err != nil {
			return nil, err
		}
	}
	b.res.Run.Topic, b.res.Run.Group = b.run, b.run
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return nil, err
	}
	defer b.close()
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	for v := range cfg.Variants {
		if err := b.variant(ctx, v); err != nil {
			return nil, err
		}
	}
	if cfg.Identity {
		if err := b.identity(ctx); err != nil {
			return nil, err
		}
	}
	return b.report()
}

// command is how to repeat the run: the settings given, then make bench.
func command() string {
	var set []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BENCH_") || strings.HasPrefix(k, "RING_") || strings.HasPrefix(k, "BATCH_") ||
			strings.HasPrefix(k, "PRODUCER_") || strings.HasPrefix(k, "RECONCILE_") || strings.HasPrefix(k, "CLAIM_") ||
			k == "MAX_INFLIGHT" || k == "REDIS_CONNS" {
			set = append(set, kv)
		}
	}
	return strings.TrimSpace(strings.Join(set, " ") + " make bench")
}

// setup builds, starts the services, the consumer and the api (first
// variant), and creates the campaigns the phases share.
func (b *bench) setup(ctx context.Context) (err error) {
	logf("building bin/api and bin/consumer")
	if b.bins, err = b.st.Build(ctx, "api", "consumer"); err != nil {
		return err
	}
	logf("services (%s Kafka if none answers)", b.cfg.KafkaMode)
	if err := b.st.Up(ctx); err != nil {
		return err
	}
	for _, addr := range []string{"127.0.0.1:" + strconv.Itoa(b.cfg.Port), "127.0.0.1:" + strconv.Itoa(b.cfg.MetricsPort)} {
		if err := stack.PortFree(addr); err != nil {
			return fmt.Errorf("%w (set BENCH_PORT / BENCH_METRICS_PORT)", err)
		}
	}
	if b.db, err = pgxpool.New(ctx, b.cfg.PostgresDSN); err != nil {
		return fmt.Errorf("POSTGRES_DSN: %w", err)
	}
	if b.rdb, err = rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{b.cfg.RedisAddr}, DisableCache: true}); err != nil {
		return fmt.Errorf("REDIS_ADDR: %w", err)
	}
	// The prefix is the bench's alone: clear what a run that did not finish left.
	if _, err := lua.ClearKeyspace(ctx, b.rdb, b.ks); err != nil {
		return fmt.Errorf("redis: clearing %s: %w", b.cfg.KeyPrefix, err)
	}
	b.pids = servicePids(b.st)
	metrics := "127.0.0.1:" + strconv.Itoa(b.cfg.MetricsPort)
	b.consumer = &stack.Proc{Name: "consumer", Path: b.bins["consumer"], Log: filepath.Join(b.work, "consumer.log"),
		Ready: stack.HTTPReady("http://" + metrics + "/healthz"),
		Env: b.env("KAFKA_GROUP="+b.run, "METRICS_ADDR="+metrics,
			// A reconciler pass in the middle of a phase would make runs differ,
			// and the persistence of the open phases is the consumer's alone.
			"RECONCILE_INTERVAL="+cmp.Or(os.Getenv("RECONCILE_INTERVAL"), "0"))}
	logf("consumer, group %s, metrics on %s", b.run, metrics)
	if err := b.consumer.Start(); err != nil {
		return err
	}
	if err := b.consumer.WaitReady(ctx, 90*time.Second); err != nil {
		return err
	}
	return b.startAPI(ctx, variantText(b.cfg.Variants[0]), b.cfg.variantEnv(0))
}

// env is the environment of the api and consumer: this process's (their
// own variables pass through) with the bench's settings on top.
func (b *bench) env(extra ...string) []string {
	return append(os.Environ(), append([]string{"REDIS_ADDR=" + b.cfg.RedisAddr, "POSTGRES_DSN=" + b.cfg.PostgresDSN,
		"KAFKA_BROKERS=" + b.cfg.KafkaBrokers, "KAFKA_TOPIC=" + b.run, "KAFKA_DLQ_TOPIC=" + b.run + ".dlq",
		"REDIS_KEY_PREFIX=" + b.cfg.KeyPrefix}, extra...)...)
}

// startAPI (re)starts the api with extra environment on top of the
// bench's; what describes it in the log.
func (b *bench) startAPI(ctx context.Context, what string, extra []string) error {
	if b.api != nil {
		if err := b.api.Stop(); err != nil {
			return err
		}
	}
	listen := "127.0.0.1:" + strconv.Itoa(b.cfg.Port)
	pprof := ""
	if b.cfg.Pprof {
		pprof = "127.0.0.1:" + strconv.Itoa(b.cfg.PprofPort)
	}
	// wrk sends no user tokens and one address opens for every user: the
	// shell's USER_TOKEN_SECRET or rate limits would measure 401s and 429s
	// (BENCH_API_ENV may still set them, as it comes last).
	env := b.env("LISTEN_ADDR="+listen, "PORT="+strconv.Itoa(b.cfg.Port), "ADMIN_TOKEN="+b.token, "PPROF_ADDR="+pprof,
		"USER_TOKEN_SECRET=", "RATE_LIMIT_USER=0", "RATE_LIMIT_IP=0")
	b.api = &stack.Proc{Name: "api", Path: b.bins["api"], Log: filepath.Join(b.work, "api.log"),
		Ready: stack.HTTPReady(b.base + "/readyz"), Env: append(env, extra...)}
	logf("api on %s, %s", listen, what)
	if err := b.api.Start(); err != nil {
		return err
	}
	return b.api.WaitReady(ctx, 60*time.Second)
}

// campaigns of a variant's phases but the open ones (which get a new
// campaign each).
type campaigns struct{ warmup, soldout, duplicate, flood int64 }

// variant runs every phase against the api with variant v's configuration.
func (b *bench) variant(ctx context.Context, v int) error {
	if v > 0 {
		if err := b.startAPI(ctx, variantText(b.cfg.Variants[v]), b.cfg.variantEnv(v)); err != nil {
			return err
		}
	}
	c, err := b.sharedCampaigns(ctx)
	if err != nil {
		return err
	}
	first, cfg := b.cfg.Connections[0], b.cfg
	user := func(what string) string { return fmt.Sprintf("%s%s%d", b.run, what, v) }
	logf("warm-up: %s of opens; sell out the small campaign; the duplicate users open once; the flood campaign seen sold out", cfg.Warmup)
	for _, l := range []Load{
		{URL: b.openURL(c.warmup), Mode: "unique", Prefix: user("w"), Duration: cfg.Warmup},
		{URL: b.openURL(c.soldout), Mode: "unique", Prefix: user("p"), Duration: time.Second},
		{URL: b.openURL(c.duplicate), Mode: "fixed", Prefix: b.run + "d", Users: cfg.DupUsers, Duration: time.Second},
		// As long as the open warm-up: the api may build something from a
		// sold-out campaign's claims in the background first.
		{URL: b.openURL(c.flood), Mode: "unique", Prefix: user("q"), Duration: cfg.Warmup},
	} {
		l.Threads, l.Connections = cfg.Threads, first
		if _, _, err := runWrk(ctx, b.script, l); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	if left, _, err := b.view(ctx, c.soldout); err != nil || left != 0 {
		return fmt.Errorf("the small campaign %d is not sold out after its warm-up (%d left, %v)", c.soldout, left, err)
	}
	if _, n, err := b.view(ctx, c.duplicate); err != nil || n != int64(cfg.DupUsers) {
		return fmt.Errorf("campaign %d has %d claims after its warm-up, want %d (%v)", c.duplicate, n, cfg.DupUsers, err)
	}
	for _, id := range []int64{c.warmup, c.soldout, c.duplicate} {
		p, err := persisted(ctx, b.db, id, b.claims(id), time.Now(), 30*time.Second, 100*time.Millisecond)
		if err != nil {
			return err
		}
		if !p.All {
			logf("WARNING: the warm-up claims of campaign %d were not all in PostgreSQL within 30 s (%d of %d)", id, p.Final, p.Claims)
		}
	}

	for _, conns := range cfg.Connections {
		if err := b.phase(ctx, Trivial, v, conns, 0, Load{URL: b.base + "/healthz", Mode: "get", Prefix: "x"}); err != nil {
			return err
		}
		id, err := b.createCampaign(ctx, fmt.Sprintf("open-v%d-%d", v+1, conns), map[string]int{"1": cfg.OpenPackets})
		if err != nil {
			return err
		}
		if err := b.phase(ctx, Open, v, conns, id, Load{URL: b.openURL(id), Mode: "unique", Prefix: user(fmt.Sprintf("o%d-", conns))}); err != nil {
			return err
		}
		// The live view's cost: the same phase with console viewers, next
		// to it, in the api's default configuration (the last).
		if cfg.Viewers > 0 && v == len(cfg.Variants)-1 {
			if err := b.viewed(ctx, v, conns); err != nil {
				return err
			}
		}
		// The identity phases' baseline: the same requests as with the check
		// on (identity), next to this configuration's open phase.
		if cfg.Identity && v == len(cfg.Variants)-1 && conns == first {
			if err := b.signed(ctx, v, conns); err != nil {
				return err
			}
		}
	}
	for _, ph := range []struct {
		kind string
		id   int64
		l    Load
	}{
		{SoldOut, c.soldout, Load{Mode: "unique", Prefix: user("s")}},
		{Duplicate, c.duplicate, Load{Mode: "fixed", Prefix: b.run + "d", Users: cfg.DupUsers}},
		{Flood, c.flood, Load{Mode: "unique", Prefix: user("f")}},
	} {
		ph.l.URL = b.openURL(ph.id)
		if err := b.phase(ctx, ph.kind, v, first, ph.id, ph.l); err != nil {
			return err
		}
	}
	for name, url := range map[string]string{"api": b.base + "/metrics", "consumer": "http://127.0.0.1:" + strconv.Itoa(cfg.MetricsPort) + "/metrics"} {
		if text, err := get(ctx, url, ""); err == nil {
			_ = os.WriteFile(filepath.Join(b.work, fmt.Sprintf("%s-metrics-v%d.txt", name, v+1)), text, 0o644)
		}
	}
	return nil
}

// sharedCampaigns creates, once, the campaigns every variant reuses: the
// warm-up one, the small one sold out by the first warm-up, the duplicate
// storm's, and the huge sold-out one (its claims written into Redis).
func (b *bench) sharedCampaigns(ctx context.Context) (*campaigns, error) {
	if b.shared != nil {
		return b.shared, nil
	}
	cfg := b.cfg
	c := &campaigns{}
	var err error
	for _, x := range []struct {
		id    *int64
		name  string
		count int
	}{
		{&c.warmup, "warmup", cfg.OpenPackets},
		{&c.soldout, "soldout", cfg.SoldoutPackets},
		{&c.duplicate, "duplicate", cfg.DupUsers * 10},
		{&c.flood, "flood", cfg.FloodClaims},
	} {
		if *x.id, err = b.createCampaign(ctx, x.name, map[string]int{"1": x.count}); err != nil {
			return nil, err
		}
	}
	logf("campaigns: warm-up %d, sold out %d, duplicates %d, flood %d", c.warmup, c.soldout, c.duplicate, c.flood)
	t0 := time.Now()
	if err := b.fillClaims(ctx, c.flood, cfg.FloodClaims); err != nil {
		return nil, err
	}
	logf("flood campaign %d: %s claims written into Redis in %s, stock 0", c.flood, thousands(float64(cfg.FloodClaims)), time.Since(t0).Round(time.Millisecond))
	b.shared = c
	return c, nil
}

// fillClaims sells campaign id out in Redis alone: n claims of amount 1 by
// users who never open it in the phases, then no stock. PostgreSQL does
// not hear of them (the consumer's reconciler is off); the campaign is
// deleted at the end.
func (b *bench) fillClaims(ctx context.Context, id int64, n int) error {
	k := b.ks.Of(id)
	value := lua.ClaimValue(1, time.Now().UnixMilli())
	const perCmd, perBatch = 1000, 50
	var cmds rueidis.Commands
	flush := func() error {
		for _, r := range b.rdb.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				return fmt.Errorf("redis: filling claims of %d: %w", id, err)
			}
		}
		cmds = cmds[:0]
		return nil
	}
	for i := 0; i < n; i += perCmd {
		fv := b.rdb.B().Hset().Key(k.Claims()).FieldValue()
		for j := i; j < min(n, i+perCmd); j++ {
			fv = fv.FieldValue(b.run+"-filled-"+strconv.Itoa(j), value)
		}
		if cmds = append(cmds, fv.Build()); len(cmds) == perBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	cmds = append(cmds, b.rdb.B().Del().Key(k.Stock()).Build())
	return flush()
}

// phase measures one wrk run: CPU and Redis CPU around it, and for an open
// phase the persistence of its claims.
func (b *bench) phase(ctx context.Context, kind string, v, conns int, id int64, l Load) error {
	l.Threads, l.Connections, l.Duration = b.cfg.Threads, conns, b.cfg.Duration
	name := fmt.Sprintf("%s@%d-v%d", kind, conns, v+1)
	l.Output = filepath.Join(b.work, name+".wrk.txt")
	logf("%s: %s, %d connections, %s", name, kinds[kind].title, conns, b.cfg.Duration)
	time.Sleep(time.Second) // the previous phase's connections close
	var profiled chan struct{}
	if b.cfg.Pprof && kind != Trivial {
		profiled = make(chan struct{})
		go func() { defer close(profiled); b.profile(ctx, name) }()
	}
	before, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	w, wrkCPU, err := runWrk(ctx, b.script, l)
	if err != nil {
		return err
	}
	after, err := b.snapshot(ctx)
	if err != nil {
		return err
	}
	if profiled != nil {
		<-profiled
	}
	p := newPhase(kind, v, conns, id, w)
	p.CPU = Cores(before, after, wrkCPU)
	p.RedisCPUus = (after.RedisCPU - before.RedisCPU) * 1e6
	if opens(kind) {
		logf("%s: waiting for its claims in PostgreSQL (at most %s)", name, b.cfg.PersistTimeout)
		ps, err := persisted(ctx, b.db, id, b.claims(id), after.At, b.cfg.PersistTimeout, 100*time.Millisecond)
		if err != nil {
			return fmt.Errorf("%s: persistence: %w", name, err)
		}
		ps.RowsPerSec = div(float64(ps.AtStop), p.Seconds)
		ps.PostgresCPUus = div(pgSeconds(before, after)*1e6, float64(ps.AtStop))
		if s := cpuSeconds(before, after, "consumer"); s >= 0 {
			ps.ConsumerCPUus = div(s*1e6, float64(ps.AtStop))
		}
		p.Persistence = ps
	}
	b.res.Phases = append(b.res.Phases, p)
	return nil
}

// snapshot reads the CPU counters of the machine, each part and Redis.
func (b *bench) snapshot(ctx context.Context) (Snapshot, error) {
	s := Snapshot{At: time.Now(), Ticks: map[string]int64{}}
	var err error
	if s.Machine, err = machineBusy(); err != nil {
		return s, err
	}
	parts := b.pids()
	parts["api"], parts["consumer"] = []int{b.api.Pid()}, []int{b.consumer.Pid()}
	for name, pids := range parts {
		if len(pids) > 0 && pids[0] > 0 {
			s.Ticks[name] = ticksOf(pids)
		}
	}
	rows, _ := b.db.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
		OR backend_type IN ('walwriter', 'checkpointer', 'background writer')`)
	var pid int
	s.PG = map[int]int64{}
	if _, err := pgx.ForEachRow(rows, []any{&pid}, func() error {
		if t, err := procTicks(pid); err == nil {
			s.PG[pid] = t
		}
		return nil
	}); err != nil {
		return s, fmt.Errorf("postgres: its processes: %w", err)
	}
	info, err := b.rdb.Do(ctx, b.rdb.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		return s, fmt.Errorf("redis INFO cpu: %w", err)
	}
	s.RedisCPU, err = redisCPU(info)
	return s, err
}

// profile takes the api's CPU and alloc profiles over the middle of a phase.
func (b *bench) profile(ctx context.Context, name string) {
	secs := max(1, int(b.cfg.Duration.Seconds())-2)
	time.Sleep(time.Second)
	base := "http://127.0.0.1:" + strconv.Itoa(b.cfg.PprofPort) + "/debug/pprof/"
	done := make(chan struct{})
	for _, p := range []string{"profile", "allocs"} {
		go func() {
			defer func() { done <- struct{}{} }()
			if out, err := get(ctx, base+p+"?seconds="+strconv.Itoa(secs), ""); err == nil {
				_ = os.WriteFile(filepath.Join(b.work, name+"."+map[string]string{"profile": "cpu", "allocs": "allocs"}[p]+".pprof"), out, 0o644)
			} else {
				logf("WARNING: %s profile of %s: %v", p, name, err)
			}
		}()
	}
	<-done
	<-done
}

func (b *bench) openURL(id int64) string {
	return b.base + "/campaign/" + strconv.FormatInt(id, 10) + "/open"
}

// createCampaign creates a campaign open from a minute ago for 30 minutes.
func (b *bench) createCampaign(ctx context.Context, name string, inventory map[string]int) (int64, error) {
	now := time.Now().UTC()
	body, _ := json.Marshal(map[string]any{"name": b.run + "-" + name, "start_time": now.Add(-time.Minute).Format(time.RFC3339),
		"end_time": now.Add(30 * time.Minute).Format(time.RFC3339), "inventory": inventory})
	var out struct {
		ID int64 `json:"id"`
	}
	if err := b.admin(ctx, http.MethodPost, "/campaign", body, http.StatusCreated, &out); err != nil {
		return 0, err
	}
	b.created = append(b.created, out.ID)
	return out.ID, nil
}

// view reads a campaign's packets left and claims from the merchant view.
func (b *bench) view(ctx context.Context, id int64) (remaining, claims int64, err error) {
	var v struct {
		Remaining *int64 `json:"remaining"`
		Claims    *int64 `json:"claims"`
	}
	if err := b.admin(ctx, http.MethodGet, "/campaign/"+strconv.FormatInt(id, 10), nil, http.StatusOK, &v); err != nil {
		return 0, 0, err
	}
	if v.Remaining == nil || v.Claims == nil {
		return 0, 0, fmt.Errorf("GET /campaign/%d: no remaining or claims", id)
	}
	return *v.Remaining, *v.Claims, nil
}

// claims reads the api's count of a campaign's claims.
func (b *bench) claims(id int64) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		_, n, err := b.view(ctx, id)
		return n, err
	}
}

// admin calls a merchant route and decodes its answer into out.
func (b *bench) admin(ctx context.Context, method, path string, body []byte, want int, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(text))
	}
	return json.Unmarshal(text, out)
}

// get GETs a loopback URL.
func get(ctx context.Context, url, token string) ([]byte, error) {
	if err := stack.CheckURL(url); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return text, err
}

// report finishes the result, writes it and prints the table.
func (b *bench) report() (*Result, error) {
	r := b.res
	r.Run.FinishedAt = time.Now().UTC().Format("20060102T150405Z")
	r.Run.LoadEnd = loadavg()
	r.Run.Commit = commit(b.st.Root)
	if f := strings.Fields(firstLine(exec.Command("wrk", "-v"))); len(f) >= 2 {
		r.Run.Wrk = f[0] + " " + f[1] // "wrk 4.1.0"
	}
	r.Run.Stack = b.versions()
	r.Machine = machine()
	r.evaluate()
	out := strings.TrimSuffix(b.work, "/")
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	md := r.Markdown()
	if err := errors.Join(os.WriteFile(out+".json", append(js, '\n'), 0o644), os.WriteFile(out+".md", []byte(md), 0o644)); err != nil {
		return nil, err
	}
	fmt.Printf("\n%s\n", md)
	logf("results: %s.json and .md (logs and wrk output in %s/)", out, out)
	return r, nil
}

// versions are the stack's parts as the report names them.
func (b *bench) versions() map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v := map[string]string{"Go": runtime.Version(), "consumer reconciler": "off"}
	if ri := cmp.Or(os.Getenv("RECONCILE_INTERVAL"), "0"); ri != "0" {
		v["consumer reconciler"] = "every " + ri
	}
	if info, err := b.rdb.Do(ctx, b.rdb.B().Info().Section("server").Build()).ToString(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if s, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				v["Redis"] = s
			}
		}
	}
	var pg string
	if err := b.db.QueryRow(ctx, "SHOW server_version").Scan(&pg); err == nil {
		v["PostgreSQL"], _, _ = strings.Cut(pg, " ")
	}
	v["Kafka"] = b.st.Kafka().Status(ctx).What
	return v
}

// close stops the api and consumer and, unless BENCH_KEEP=1, deletes the
// campaigns, their Redis keys, the topics and the consumer group.
func (b *bench) close() {
	for _, p := range []*stack.Proc{b.api, b.consumer} {
		if p != nil {
			if err := p.Stop(); err != nil {
				logf("WARNING: %v", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b.cfg.Keep {
		logf("kept campaigns %v (Redis prefix %s), topic %s, group %s (BENCH_KEEP=1)", b.created, b.cfg.KeyPrefix, b.run, b.run)
	} else {
		if err := b.cleanup(ctx); err != nil {
			logf("WARNING: clean-up: %v", err)
		}
	}
	if b.rdb != nil {
		b.rdb.Close()
	}
	if b.db != nil {
		b.db.Close()
	}
}

func (b *bench) cleanup(ctx context.Context) error {
	var errs []error
	if b.db != nil && len(b.created) > 0 {
		errs = append(errs, pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
			for _, q := range []string{
				`DELETE FROM claim_log WHERE campaign_id = ANY($1)`,
				`DELETE FROM campaign_inventory WHERE campaign_id = ANY($1)`,
				`DELETE FROM campaign WHERE id = ANY($1)`,
			} {
				if _, err := tx.Exec(ctx, q, b.created); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	if b.rdb != nil {
		// Every key under the bench's prefix: its campaigns', and those of the
		// live campaigns its api loaded at start.
		_, err := lua.ClearKeyspace(ctx, b.rdb, b.ks)
		errs = append(errs, err)
	}
	if b.consumer != nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(b.cfg.KafkaBrokers, ",")...))
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		if _, err := adm.DeleteGroup(ctx, b.run); err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", b.run, err))
		}
		if _, err := adm.DeleteTopics(ctx, b.run, b.run+".dlq"); err != nil {
			errs = append(errs, fmt.Errorf("topics %s: %w", b.run, err))
		}
	}
	return errors.Join(errs...)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// commit is HEAD, marked when the tree has changes outside the results.
func commit(root string) string {
	c := firstLine(exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD"))
	if c == "" {
		return "unknown"
	}
	out, _ := exec.Command("git", "-C", root, "status", "--porcelain").Output()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "loadtest/results/") {
			return c + " + uncommitted changes"
		}
	}
	return c
}

func firstLine(cmd *exec.Cmd) string {
	out, _ := cmd.CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}
