// Package reconcile repairs what a crash left out of the pipeline: the
// claims Redis holds and claim_log lacks are written (through the
// consumer's Writer), and claims claim_log holds and Redis lost are put back.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/writer"
)

var (
	reconcileRepairs   = metrics.NewCounter(`rain_reconciler_repairs_total`)
	reconcileRejected  = metrics.NewCounter(`rain_reconciler_rejected_total`)
	reconcileScanned   = metrics.NewCounter(`rain_reconciler_claims_scanned_total`)
	reconcileCampaigns = metrics.NewCounter(`rain_reconciler_campaigns_checked_total`)
	reconcileOK        = metrics.NewCounter(`rain_reconciler_passes_total{result="ok"}`)
	reconcileFailed    = metrics.NewCounter(`rain_reconciler_passes_total{result="error"}`)
	reconcileLocked    = metrics.NewCounter(`rain_reconciler_passes_total{result="locked_elsewhere"}`)
	reconcileDuration  = metrics.NewPrometheusHistogram(`rain_reconciler_pass_duration_seconds`)
	reconcileReadded   = metrics.NewCounter(`rain_reconciler_readded_total`)
	reconcileOversold  = metrics.NewCounter(`rain_reconciler_oversold_total`)
	reconcileLastOK    = metrics.NewGauge(`rain_reconciler_last_success_timestamp_seconds`, nil)
)

// verifyMargin is taken off the cutoff a periodic pass records as checked,
// against clock skew between Redis (which stamps claims) and this process.
const verifyMargin = time.Minute

// reconcileLockKey is the PostgreSQL advisory lock one reconciler pass
// holds, so one replica at a time walks the campaigns ("rainrec0").
const reconcileLockKey int64 = 0x7261696e72656330

// Config tunes a Reconciler.
type Config struct {
	// Interval between periodic passes; 0: no periodic pass.
	Interval time.Duration
	// Lookback: a pass walks the campaigns that have started and whose
	// window ends after now − Lookback.
	Lookback time.Duration
	// Grace: periodic passes leave alone the claims younger than this,
	// which are normally still on their way through Kafka (a repair then
	// means a claim was lost); 0: none.
	Grace time.Duration
	// Chunk is the most claims written in one transaction.
	Chunk int
}

// Bind declares the reconciler's variables.
func (c *Config) Bind(s *config.Set) {
	s.Duration(&c.Interval, "RECONCILE_INTERVAL", 30*time.Second, 0, 24*time.Hour,
		"between reconciler passes; `0` turns the periodic pass off")
	s.Duration(&c.Lookback, "RECONCILE_LOOKBACK", 24*time.Hour, time.Minute, 24*365*time.Hour,
		"campaigns that ended longer ago are not reconciled")
	s.Duration(&c.Grace, "RECONCILE_GRACE", 30*time.Second, 0, 24*time.Hour,
		"periodic passes leave younger claims to the pipeline; `0`: none")
	c.Chunk = 5000
}

// Reconciler writes to claim_log the claims Redis holds and PostgreSQL
// lacks: those of an api killed with events in its ring buffer, of a
// producer that gave up, of a dead-lettered batch. The claims hash of each
// campaign (the truth of who got what) is scanned with HSCAN and written
// through the same Writer as the consumer, so a claim is inserted with its
// original amount and claim time, at most once, and only the claims
// inserted are added to opened_count.
type Reconciler struct {
	cfg    Config
	db     *postgres.Store
	redis  rueidis.Client
	keys   lua.Keyspace
	writer *writer.Writer
	log    *slog.Logger

	mu       sync.Mutex
	verified map[int64]int64 // campaign -> claims up to this unix ms are known persisted
}

// New returns a reconciler of the claims in rdb (under the keys of ks) into db.
func New(cfg Config, db *postgres.Store, rdb rueidis.Client, ks lua.Keyspace, log *slog.Logger) *Reconciler {
	return &Reconciler{cfg: cfg, db: db, redis: rdb, keys: ks, writer: writer.New(db), log: log,
		verified: make(map[int64]int64)}
}

// Options tune one Reconcile.
type Options struct {
	// Grace: claims younger than this are left alone (0: none are).
	Grace time.Duration
	// Full scans every campaign's claims. Otherwise a campaign whose
	// Redis claim count does not exceed its persisted count is taken as
	// complete, and claims a previous pass of this process checked are
	// not written again (the periodic pass).
	Full bool
}

// Report is what a Reconcile did.
type Report struct {
	Campaigns int `json:"campaigns"` // campaigns checked
	Scanned   int `json:"scanned"`   // claims read from Redis
	Repaired  int `json:"repaired"`  // claims missing from claim_log, now written
	Young     int `json:"young"`     // claims left alone as younger than the grace
	Rejected  int `json:"rejected"`  // claims that cannot be written (see the logs)
	Readded   int `json:"readded"`   // claims in claim_log that Redis had lost, put back
	Oversold  int `json:"oversold"`  // of those, claims whose packet Redis had handed out again
}

func (r *Report) add(o Report) {
	r.Campaigns += o.Campaigns
	r.Scanned += o.Scanned
	r.Repaired += o.Repaired
	r.Young += o.Young
	r.Rejected += o.Rejected
	r.Readded += o.Readded
	r.Oversold += o.Oversold
}

// ActiveCampaigns lists the campaigns a pass walks: started, and ending
// after now − Lookback (so live ones and those that ended recently).
func (r *Reconciler) ActiveCampaigns(ctx context.Context) ([]int64, error) {
	return r.db.ActiveCampaignIDs(ctx, time.Now(), r.cfg.Lookback)
}

// Reconcile repairs the given campaigns, or the active ones when ids is
// empty. It goes on past a campaign that fails and returns every failure
// joined: a nil error means every campaign was checked.
func (r *Reconciler) Reconcile(ctx context.Context, opts Options, ids ...int64) (Report, error) {
	var rep Report
	if len(ids) == 0 {
		var err error
		if ids, err = r.ActiveCampaigns(ctx); err != nil {
			return rep, err
		}
	}
	var errs []error
	for _, id := range ids {
		crep, err := r.campaign(ctx, id, opts)
		rep.add(crep)
		if err != nil {
			errs = append(errs, fmt.Errorf("campaign %d: %w", id, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	return rep, errors.Join(errs...)
}

// campaign repairs one campaign.
func (r *Reconciler) campaign(ctx context.Context, id int64, opts Options) (Report, error) {
	rep := Report{Campaigns: 1}
	reconcileCampaigns.Inc()
	k := r.keys.Of(id)
	cutoff := time.Now().Add(-opts.Grace).UnixMilli()
	var verified int64 = -1 << 63
	inRedis, err := r.redis.Do(ctx, r.redis.B().Hlen().Key(k.Claims()).Build()).AsInt64()
	if err != nil {
		return rep, fmt.Errorf("redis: %w", err)
	}
	persisted, err := r.db.OpenedTotal(ctx, id)
	if err != nil {
		return rep, fmt.Errorf("postgres: %w", err)
	}
	// Every claim in claim_log came from Redis, so fewer claims in Redis
	// means Redis lost some (the last second of writes before a crash,
	// with AOF everysec): put them back before anyone claims twice.
	if inRedis < persisted {
		if err := r.readd(ctx, id, k, &rep); err != nil {
			return rep, err
		}
	}
	if !opts.Full {
		if inRedis <= persisted {
			r.setVerified(id, cutoff-verifyMargin.Milliseconds())
			return rep, nil
		}
		verified = r.getVerified(id)
	}

	chunk := make([]pipeline.Event, 0, min(r.cfg.Chunk, 1024))
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		res, err := r.writer.Write(ctx, chunk)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		rep.Repaired += res.Inserted
		reconcileRepairs.Add(res.Inserted)
		for _, rj := range res.Rejected {
			rep.Rejected++
			reconcileRejected.Inc()
			ev := chunk[rj.Index]
			r.log.Error("claim in redis cannot be written to claim_log", "campaign_id", ev.CampaignID,
				"user_id", ev.UserID, "amount", ev.Amount, "claimed_at_ms", ev.ClaimedAt, "reason", rj.Reason, "err", rj.Err)
		}
		chunk = chunk[:0]
		return nil
	}
	err = lua.ScanClaims(ctx, r.redis, k, func(user string, amount, at int64) error {
		rep.Scanned++
		reconcileScanned.Inc()
		switch {
		case at > cutoff:
			rep.Young++
			return nil
		case at <= verified:
			return nil
		}
		chunk = append(chunk, pipeline.Event{CampaignID: id, UserID: user, Amount: amount, ClaimedAt: at})
		if len(chunk) >= r.cfg.Chunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return rep, err
	}
	if !opts.Full {
		r.setVerified(id, cutoff-verifyMargin.Milliseconds())
	}
	if rep.Repaired > 0 || rep.Rejected > 0 {
		r.log.Warn("reconciler repaired claims missing from claim_log", "campaign_id", id,
			"repaired", rep.Repaired, "rejected", rep.Rejected, "scanned", rep.Scanned)
	}
	return rep, nil
}

// readd puts back into Redis the claims of claim_log that Redis lacks.
func (r *Reconciler) readd(ctx context.Context, id int64, k *lua.Keys, rep *Report) error {
	var batch []lua.Record
	flush := func() error {
		n, over, err := lua.Readd(ctx, r.redis, k, batch)
		rep.Readded += n
		rep.Oversold += over
		reconcileReadded.Add(n)
		reconcileOversold.Add(over)
		batch = batch[:0]
		return err
	}
	err := r.db.ForEachClaim(ctx, id, func(user string, amount int64, at time.Time) error {
		if batch = append(batch, lua.Record{User: user, Amount: amount, ClaimedAtMs: at.UnixMilli()}); len(batch) == 500 {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("put lost claims back into redis: %w", err)
	}
	if rep.Readded > 0 {
		r.log.Warn("reconciler put back into redis claims it had lost", "campaign_id", id,
			"readded", rep.Readded, "oversold", rep.Oversold)
	}
	if rep.Oversold > 0 {
		r.log.Error("redis handed out again packets it had lost: campaign oversold", "campaign_id", id, "oversold", rep.Oversold)
	}
	return nil
}

func (r *Reconciler) getVerified(id int64) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.verified[id]; ok {
		return v
	}
	return -1 << 63
}

func (r *Reconciler) setVerified(id, at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.verified[id] = max(r.verified[id], at)
}

// WithLock runs fn while holding the reconciler's PostgreSQL advisory lock,
// so one process at a time walks the campaigns. With wait false it returns
// false at once if another process holds the lock.
func (r *Reconciler) WithLock(ctx context.Context, wait bool, fn func(context.Context) error) (bool, error) {
	return r.db.WithLock(ctx, reconcileLockKey, wait, fn)
}

// Run reconciles the active campaigns every Interval until ctx ends, one
// replica at a time: a pass is skipped when another process holds the lock.
func (r *Reconciler) Run(ctx context.Context) {
	r.log.Info("reconciler started", "interval", r.cfg.Interval.String(), "lookback", r.cfg.Lookback.String(),
		"grace", r.cfg.Grace.String())
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.Pass(ctx)
	}
}

// Pass is one periodic pass: under the lock if no other process holds it,
// over the active campaigns, leaving claims younger than Grace alone.
func (r *Reconciler) Pass(ctx context.Context) (Report, error) {
	start := time.Now()
	var rep Report
	ran, err := r.WithLock(ctx, false, func(ctx context.Context) error {
		var err error
		rep, err = r.Reconcile(ctx, Options{Grace: r.cfg.Grace})
		return err
	})
	switch {
	case !ran && err == nil:
		reconcileLocked.Inc()
		r.log.Debug("reconcile pass skipped: another process holds the lock")
		return rep, nil
	case err != nil:
		reconcileFailed.Inc()
		r.log.Error("reconcile pass failed", "err", err, "campaigns", rep.Campaigns, "repaired", rep.Repaired)
	default:
		reconcileOK.Inc()
		reconcileLastOK.Set(float64(time.Now().Unix()))
		r.log.Info("reconcile pass done", "campaigns", rep.Campaigns, "scanned", rep.Scanned,
			"repaired", rep.Repaired, "young", rep.Young, "rejected", rep.Rejected, "took_ms", time.Since(start).Milliseconds())
	}
	reconcileDuration.UpdateDuration(start)
	return rep, err
}

// DefaultConfig is the configuration with no variable set.
func DefaultConfig() Config { return config.Default[Config]() }
