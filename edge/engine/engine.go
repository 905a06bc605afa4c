// Package engine is the claim engine of the api, below its HTTP side
// (edge): it opens a campaign's packet for a user (group commit of claim
// calls, answers from memory, bucketed campaigns and their rebalancer),
// loads and rebuilds campaigns from PostgreSQL into Redis, ends them, adds
// stock and settles it, and keeps the catalog of every campaign's window.
// It speaks Redis (lua), PostgreSQL (internal/postgres) and the ring of the
// Kafka producer, and knows nothing of HTTP: its answers are rain.Result
// values and rain errors, which edge maps to statuses. The story of each
// part is in docs/design.md ("The open path", "Hot campaigns").
package engine

import (
	"context"
	"io"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/ratelog"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline/producer"
)

// Config tunes the engine. Bind declares each setting with its default.
type Config struct {
	// MaxInflight caps concurrent opens waiting on Redis (answers from
	// memory do not count); above it opens get 503. rueidis queues at most
	// 1024 commands a connection and waits beyond that ignoring deadlines,
	// so the cap belongs here.
	MaxInflight int
	// ClaimMemo is how many claims the instance remembers to answer repeat
	// opens without Redis (about 100 bytes each); 0 turns it off.
	ClaimMemo int
	// SoldOutTTL is how long a campaign seen sold out is answered 410 from
	// memory before Redis is asked again; 0 turns it off.
	SoldOutTTL time.Duration
	// SoldOutMemory is the memory, in bytes, for the filters of sold-out
	// campaigns' claimants that answer their floods from memory (about
	// 1.8 MB per million claimants); 0 turns them off.
	SoldOutMemory int
	// ClaimBatch turns group commit on: opens of a campaign that arrive
	// while a claim call of it is in flight go out together in the next
	// call (batch.go). ClaimBatchMax is the most opens one call decides.
	ClaimBatch    bool
	ClaimBatchMax int
	// MemoryRefresh is how often the engine re-reads the end and the stock
	// generation of the campaigns it answers from memory, so an end or a
	// restock made through another replica reaches its answers (refresh.go).
	MemoryRefresh time.Duration
	// CampaignKeyTTL is how long after a campaign's end its Redis keys
	// expire; 0 keeps them.
	CampaignKeyTTL time.Duration
	// RepairTimeout bounds the PostgreSQL and Redis work of a merchant
	// action or a campaign rebuild.
	RepairTimeout time.Duration
}

// Bind declares the engine's variables.
func (c *Config) Bind(s *config.Set) {
	s.Int(&c.MaxInflight, "MAX_INFLIGHT", 4096, 1, 1<<20,
		"concurrent opens waiting on Redis (answers from memory do not count); above it, 503")
	s.Int(&c.ClaimMemo, "CLAIM_MEMO_SIZE", 262_144, 0, 1<<26,
		"claims remembered to answer repeat opens without Redis (`0` = off)")
	s.Duration(&c.SoldOutTTL, "SOLD_OUT_TTL", time.Second, 0, time.Minute,
		"how long a sold-out campaign is answered 410 from memory before asking Redis again (`0` = off)")
	s.Int(&c.SoldOutMemory, "SOLD_OUT_MEMORY", 64<<20, 0, 1<<36,
		"bytes (64 MiB) for filters of sold-out campaigns' claimants, which answer their floods 410 from memory: about 1.8 MB per million claimants, the least recently used campaign's evicted first (`0` = off)")
	s.Bool(&c.ClaimBatch, "CLAIM_BATCH", true,
		"group commit: opens of a campaign that arrive while its claim call is in flight share the next call (`false` = one call per open)")
	s.Int(&c.ClaimBatchMax, "CLAIM_BATCH_MAX", 64, 1, 1024, "most opens one claim call decides")
	s.Duration(&c.MemoryRefresh, "MEMORY_REFRESH", 250*time.Millisecond, 10*time.Millisecond, time.Second,
		"how often each api re-reads the end and stock generation of the campaigns it answers from memory: an end or added stock reaches every replica's answers within about twice this")
	s.Duration(&c.CampaignKeyTTL, "CAMPAIGN_KEY_TTL", 7*24*time.Hour, 0, 10*365*24*time.Hour,
		"how long after a campaign's end (its creation, for one created already ended) its Redis keys expire (opens of it are then answered ENDED from its row); keep it above RECONCILE_LOOKBACK (`0` = never)")
	c.RepairTimeout = 5 * time.Second
}

// DefaultConfig is the configuration of an engine with no variable set.
func DefaultConfig() Config { return config.Default[Config]() }

// Deps are what the engine works with.
type Deps struct {
	Redis rueidis.Client
	Keys  lua.Keyspace
	Store *postgres.Store
	Ring  *producer.Ring // where OK claims go; room is taken before a claim
	Log   *slog.Logger
}

// Engine is the claim engine of one api process.
type Engine struct {
	cfg      Config
	redis    rueidis.Client
	keys     lua.Keyspace
	store    *postgres.Store
	ring     *producer.Ring
	log      *slog.Logger
	failLog  *slog.Logger // warnings of repeating failures, rate-limited
	loader   *Loader
	hot      hotCampaigns
	batch    batcher
	catalog  catalog // every campaign's window, for opens Redis cannot answer (catalog.go)
	refresh  refresher
	inflight atomic.Int64
	gauges   *metrics.Set
	stock    stockGauges
	answers  answerPublisher // each campaign's answer counts to Redis, for the live view (live.go)
}

// New returns an engine over its dependencies; Start starts its
// background loops.
func New(cfg Config, d Deps) *Engine {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{cfg: cfg, redis: d.Redis, keys: d.Keys, store: d.Store, ring: d.Ring, log: log,
		failLog: ratelog.Logger(log, ratelog.Every), gauges: metrics.NewSet()}
	e.hot.maxClaims = int64(cfg.ClaimMemo)
	e.hot.soldOutMs = cfg.SoldOutTTL.Milliseconds()
	e.hot.soldOutBudget = int64(cfg.SoldOutMemory)
	e.hot.redis, e.hot.keys, e.hot.log, e.hot.lost = d.Redis, d.Keys, log, e.repairAsync
	e.stock.e = e
	e.answers.replica = newReplicaID()
	e.batch = batcher{redis: d.Redis, log: log, max: cfg.ClaimBatchMax}
	if !cfg.ClaimBatch {
		e.batch.max = 1
	}
	e.loader = &Loader{Store: d.Store, Redis: d.Redis, Keys: d.Keys, Log: log, KeyTTL: cfg.CampaignKeyTTL}
	if ring := d.Ring; ring != nil {
		e.gauges.NewGauge(`rain_ring_length`, func() float64 { return float64(ring.Len()) })
		e.gauges.NewGauge(`rain_ring_capacity`, func() float64 { return float64(ring.Cap()) })
	}
	e.gauges.NewGauge(`rain_open_inflight`, func() float64 { return float64(e.inflight.Load()) })
	return e
}

// Loader returns the engine's campaign loader (boot-time load, tests).
func (e *Engine) Loader() *Loader { return e.loader }

// Start starts the background loops: the memory refresh and the sweep of
// unfinished merchant actions (refresh.go), the catalog (catalog.go), and
// the writes of the answer counts (live.go).
func (e *Engine) Start() {
	e.startRefresh()
	e.catalog.loop.Start(catalogEvery, true, e.failLog, "campaign catalog", func() { e.catalog.tick(e) })
	e.startAnswers()
}

// Stop stops the background loops and waits for them.
func (e *Engine) Stop() {
	e.refresh.loop.Stop()
	e.refresh.sweep.Stop()
	e.catalog.loop.Stop()
	e.answers.loop.Stop()
}

// Ready reports whether Redis answers: one Redis PINGs; on a cluster every
// master answers and says cluster_state:ok, and every slot has a master.
func (e *Engine) Ready(ctx context.Context) error { return rediscluster.Ready(ctx, e.redis) }

// WriteMetrics writes the engine's gauges of this scrape: the ring, the
// opens in flight, and the stock and claims of every live campaign.
func (e *Engine) WriteMetrics(w io.Writer) {
	e.gauges.WritePrometheus(w)
	e.stock.write(w)
}

var panicsBackground = metrics.NewCounter(`rain_panics_total{where="background"}`)

// BackgroundPanics is the number of panics RecoverGoroutine has recovered
// in this process: tests fail on one they did not cause, since a recovered
// panic is otherwise only a log line.
func BackgroundPanics() uint64 { return panicsBackground.Get() }

// RecoverGoroutine, deferred first in a background goroutine of the api,
// stops a panic there from ending the process: counted and logged (log
// nil: the default logger), and the goroutine returns.
func RecoverGoroutine(log *slog.Logger, where string) {
	if v := recover(); v != nil {
		panicsBackground.Inc()
		if log == nil {
			log = slog.Default()
		}
		log.Error("panic in a background goroutine", "where", where, "panic", v, "stack", string(debug.Stack()))
	}
}
