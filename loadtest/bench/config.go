package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/pipeline"

	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/lua"
)

// Config is the bench's configuration, from the environment.
type Config struct {
	Short          bool
	Duration       time.Duration
	Connections    []int
	Threads        int
	Warmup         time.Duration
	Variants       []string // extra api environment per variant
	Identity       bool     // the identity phases: user tokens and limits off and on
	Viewers        int      // console viewers of the viewed phases (0: none)
	Port           int
	MetricsPort    int
	PprofPort      int
	Pprof          bool
	DupUsers       int
	SoldoutPackets int
	OpenPackets    int
	FloodClaims    int
	PersistTimeout time.Duration
	KeyPrefix      string
	KafkaMode      string
	Keep           bool
	Strict         bool
	Timeout        time.Duration
	RedisAddr      string
	PostgresDSN    string
	KafkaBrokers   string
}

// loadConfig declares every setting (name, default, meaning: `bench -h`
// prints them) and reads the environment through lookup. BENCH_SHORT
// switches the defaults to the smoke-test ones.
func loadConfig(lookup func(string) (string, bool)) (*Config, *config.Set) {
	c := &Config{}
	s := config.New(lookup)
	s.Bool(&c.Short, "BENCH_SHORT", false, "smoke test: a few seconds per phase, a smaller huge campaign")
	short := func(full, smoke time.Duration) time.Duration {
		return map[bool]time.Duration{false: full, true: smoke}[c.Short]
	}
	s.Duration(&c.Duration, "BENCH_DURATION", short(15*time.Second, 3*time.Second), time.Second, time.Hour, "wrk run per phase")
	var conns []string
	s.List(&conns, "BENCH_CONNECTIONS", "64,256", "wrk connections: the trivial and open phases run at each; the others at the first")
	s.Int(&c.Threads, "BENCH_THREADS", 2, 1, 64, "wrk threads")
	s.Duration(&c.Warmup, "BENCH_WARMUP", short(2*time.Second, time.Second), time.Second, time.Minute, "opens on a warm-up campaign after each api start")
	var variants string
	s.String(&variants, "BENCH_API_ENV", "CLAIM_BATCH=false;CLAIM_BATCH=true", "api configurations to compare, ';' between them, each a space-separated list of VAR=value: "+
		"every phase runs for each, the first is the baseline (by default batching off, then on: the api's default)")
	s.Bool(&c.Identity, "BENCH_IDENTITY", true, "identity phases: opens with signed user tokens at the first connections, the api's check and limits off "+
		"(in the last configuration) and on (the same with USER_TOKEN_SECRET and RATE_LIMIT_USER set)")
	s.Int(&c.Viewers, "BENCH_VIEWERS", 10, 0, 1000, "console viewers: in the last configuration, at each connections, the open phase runs again while this many clients "+
		"read the campaign's live route (GET /campaign/{id}/live), the stream the merchant console shows (`0` = no viewed phases)")
	s.Int(&c.Port, "BENCH_PORT", 18080, 1, 65535, "port of the api the bench starts on 127.0.0.1")
	s.Int(&c.MetricsPort, "BENCH_METRICS_PORT", 19091, 1, 65535, "port of its consumer's metrics on 127.0.0.1")
	s.Bool(&c.Pprof, "BENCH_PPROF", false, "CPU and alloc profiles of the api during the open and flood phases (the numbers include the profiler's cost)")
	s.Int(&c.PprofPort, "BENCH_PPROF_PORT", 16060, 1, 65535, "port of the api's pprof server with BENCH_PPROF")
	s.Int(&c.DupUsers, "BENCH_DUP_USERS", 64, 1, 1_000_000, "users of the duplicate storm")
	s.Int(&c.SoldoutPackets, "BENCH_SOLDOUT_PACKETS", 100, 1, 1_000_000, "packets of the small campaign sold out before its flood")
	s.Int(&c.OpenPackets, "BENCH_OPEN_PACKETS", 50_000_000, 1, 1_000_000_000, "packets of each open phase's campaign (must not sell out)")
	s.Int(&c.FloodClaims, "BENCH_FLOOD_CLAIMS", map[bool]int{false: 1_000_000, true: 150_000}[c.Short], 1, 100_000_000,
		"claims of the huge sold-out campaign, written straight into Redis")
	s.Duration(&c.PersistTimeout, "BENCH_PERSIST_TIMEOUT", short(60*time.Second, 30*time.Second), time.Second, time.Hour,
		"how long to wait for an open phase's claims in PostgreSQL")
	s.String(&c.KeyPrefix, "BENCH_KEY_PREFIX", "rpbench", "Redis key prefix of the api and consumer the bench starts: its own namespace, cleared before and after the run")
	s.String(&c.KafkaMode, "BENCH_KAFKA_MODE", "auto", "Kafka to start when none answers: real, embedded or auto")
	s.Duration(&c.Timeout, "BENCH_TIMEOUT", short(30*time.Minute, 10*time.Minute), time.Minute, 6*time.Hour, "the whole run at most (then it stops and cleans up)")
	s.Bool(&c.Keep, "BENCH_KEEP", false, "keep the campaigns, claims, Redis keys and topics for inspection")
	s.Bool(&c.Strict, "BENCH_STRICT", false, "exit 1 when a target is missed")
	s.Addr(&c.RedisAddr, "REDIS_ADDR", app.DefaultRedisAddr, "Redis (loopback only)")
	s.String(&c.PostgresDSN, "POSTGRES_DSN", app.DefaultPostgresDSN, "PostgreSQL (loopback only)")
	s.String(&c.KafkaBrokers, "KAFKA_BROKERS", pipeline.DefaultBrokers, "Kafka brokers (loopback only)")
	for name, err := range map[string]error{"REDIS_ADDR": stack.CheckAddr(c.RedisAddr),
		"KAFKA_BROKERS": stack.CheckAddrs(c.KafkaBrokers), "POSTGRES_DSN": stack.CheckDSN(c.PostgresDSN)} {
		if err != nil {
			s.Errorf(name, "%v", err)
		}
	}
	if c.KeyPrefix == lua.DefaultPrefix || c.KeyPrefix == "" {
		s.Errorf("BENCH_KEY_PREFIX", "%q is the default namespace, which the bench would clear", c.KeyPrefix)
	}
	for _, v := range conns {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n < c.Threads || n > 10_000 {
			s.Errorf("BENCH_CONNECTIONS", "%q: want integers in [BENCH_THREADS, 10000]", v)
		}
		c.Connections = append(c.Connections, n)
	}
	c.Variants = strings.Split(variants, ";")
	for i, v := range c.Variants {
		c.Variants[i] = strings.Join(strings.Fields(v), " ")
		for _, kv := range strings.Fields(v) {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || k == "REDIS_KEY_PREFIX" {
				s.Errorf("BENCH_API_ENV", "%q: want VAR=value items (REDIS_KEY_PREFIX is the bench's)", kv)
			}
		}
	}
	return c, s
}

// variantEnv is the extra environment of variant i.
func (c *Config) variantEnv(i int) []string { return strings.Fields(c.Variants[i]) }
