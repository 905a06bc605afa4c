package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/lua"
)

var (
	reconcileRepairs   = consumerMetrics.NewCounter(`rain_reconciler_repairs_total`)
	reconcileRejected  = consumerMetrics.NewCounter(`rain_reconciler_rejected_total`)
	reconcileScanned   = consumerMetrics.NewCounter(`rain_reconciler_claims_scanned_total`)
	reconcileCampaigns = consumerMetrics.NewCounter(`rain_reconciler_campaigns_checked_total`)
	reconcileOK        = consumerMetrics.NewCounter(`rain_reconciler_passes_total{result="ok"}`)
	reconcileFailed    = consumerMetrics.NewCounter(`rain_reconciler_passes_total{result="error"}`)
	reconcileLocked    = consumerMetrics.NewCounter(`rain_reconciler_passes_total{result="locked_elsewhere"}`)
	reconcileDuration  = consumerMetrics.NewPrometheusHistogram(`rain_reconciler_pass_duration_seconds`)
	reconcileReadded   = consumerMetrics.NewCounter(`rain_reconciler_readded_total`)
	reconcileOversold  = consumerMetrics.NewCounter(`rain_reconciler_oversold_total`)
	reconcileLastOK    = consumerMetrics.NewGauge(`rain_reconciler_last_success_timestamp_seconds`, nil)
)

// verifyMargin is taken off the cutoff a periodic pass records as checked,
// against clock skew between Redis (which stamps claims) and this process.
const verifyMargin = time.Minute

// reconcileLockKey is the PostgreSQL advisory lock one reconciler pass
// holds, so one replica at a time walks the campaigns ("rainrec0").
const reconcileLockKey int64 = 0x7261696e72656330

// ReconcilerConfig configures a Reconciler. Zero values take the defaults
// named on each field (the environment variables are those of cmd/consumer).
type ReconcilerConfig struct {
	// Interval between periodic passes (RECONCILE_INTERVAL, default 30s).
	Interval time.Duration
	// Lookback: a pass walks the campaigns that have started and whose
	// window ends after now − Lookback (RECONCILE_LOOKBACK, default 24h).
	Lookback time.Duration
	// Grace: periodic passes leave alone the claims younger than this,
	// which are normally still on their way through Kafka
	// (RECONCILE_GRACE, default 30s; a repair then means a claim was lost;
	// negative: none).
	Grace time.Duration
	// Chunk is the most claims written in one transaction (default 5000).
	Chunk int
	// Logger receives the logs (default slog.Default()).
	Logger *slog.Logger
}

func (c *ReconcilerConfig) defaults() {
	if c.Interval <= 0 {
		c.Interval = 30 * time.Second
	}
	if c.Lookback <= 0 {
		c.Lookback = 24 * time.Hour
	}
	switch {
	case c.Grace == 0:
		c.Grace = 30 * time.Second
	case c.Grace < 0:
		c.Grace = 0
	}
	if c.Chunk <= 0 {
		c.Chunk = 5000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Reconciler writes to claim_log the claims Redis holds and PostgreSQL
// lacks: those of an api killed with events in its ring buffer, of a
// producer that gave up, of a dead-lettered batch. The claims hash of each
// campaign (the truth of who got what) is scanned with HSCAN and written
// through the same Writer as the consumer, so a claim is inserted with its
// original amount and claim time, at most once, and only the claims
// inserted are added to opened_count.
type Reconciler struct {
	cfg    ReconcilerConfig
	db     *pgxpool.Pool
	redis  rueidis.Client
	writer *Writer
	log    *slog.Logger

	mu       sync.Mutex
	verified map[int64]int64 // campaign -> claims up to this unix ms are known persisted
}

// NewReconciler returns a reconciler of the claims in rdb into db.
func NewReconciler(cfg ReconcilerConfig, db *pgxpool.Pool, rdb rueidis.Client) *Reconciler {
	registerConsumer()
	cfg.defaults()
	return &Reconciler{cfg: cfg, db: db, redis: rdb, writer: NewWriter(db), log: cfg.Logger,
		verified: make(map[int64]int64)}
}

// ReconcileOptions tune one Reconcile.
type ReconcileOptions struct {
	// Grace: claims younger than this are left alone (0: none are).
	Grace time.Duration
	// Full scans every campaign's claims. Otherwise a campaign whose
	// Redis claim count does not exceed its persisted count is taken as
	// complete, and claims a previous pass of this process checked are
	// not written again (the periodic pass).
	Full bool
}

// ReconcileReport is what a Reconcile did.
type ReconcileReport struct {
	Campaigns int `json:"campaigns"` // campaigns checked
	Scanned   int `json:"scanned"`   // claims read from Redis
	Repaired  int `json:"repaired"`  // claims missing from claim_log, now written
	Young     int `json:"young"`     // claims left alone as younger than the grace
	Rejected  int `json:"rejected"`  // claims that cannot be written (see the logs)
	Readded   int `json:"readded"`   // claims in claim_log that Redis had lost, put back
	Oversold  int `json:"oversold"`  // of those, claims whose packet Redis had handed out again
}

func (r *ReconcileReport) add(o ReconcileReport) {
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
	now := time.Now()
	rows, _ := r.db.Query(ctx,
		`SELECT id FROM campaign WHERE start_time <= $1 AND end_time > $2 ORDER BY id`, now, now.Add(-r.cfg.Lookback))
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list active campaigns: %w", err)
	}
	return ids, nil
}

// Reconcile repairs the given campaigns, or the active ones when ids is
// empty. It goes on past a campaign that fails and returns every failure
// joined: a nil error means every campaign was checked.
func (r *Reconciler) Reconcile(ctx context.Context, opts ReconcileOptions, ids ...int64) (ReconcileReport, error) {
	var rep ReconcileReport
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
func (r *Reconciler) campaign(ctx context.Context, id int64, opts ReconcileOptions) (ReconcileReport, error) {
	rep := ReconcileReport{Campaigns: 1}
	reconcileCampaigns.Inc()
	k := lua.KeysOf(id)
	cutoff := time.Now().Add(-opts.Grace).UnixMilli()
	var verified int64 = -1 << 63
	inRedis, err := r.redis.Do(ctx, r.redis.B().Hlen().Key(k.Claims()).Build()).AsInt64()
	if err != nil {
		return rep, fmt.Errorf("redis: %w", err)
	}
	var persisted int64
	if err := r.db.QueryRow(ctx,
		`SELECT coalesce(sum(opened_count), 0)::bigint FROM campaign_inventory WHERE campaign_id = $1`, id).
		Scan(&persisted); err != nil {
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

	chunk := make([]Event, 0, min(r.cfg.Chunk, 1024))
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
		chunk = append(chunk, Event{CampaignID: id, UserID: user, Amount: amount, ClaimedAt: at})
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
func (r *Reconciler) readd(ctx context.Context, id int64, k *lua.Keys, rep *ReconcileReport) error {
	rows, _ := r.db.Query(ctx, `SELECT user_id, amount, claimed_at FROM claim_log WHERE campaign_id = $1`, id)
	var (
		batch []lua.Record
		cl    lua.Record
		at    time.Time
	)
	flush := func() error {
		n, over, err := lua.Readd(ctx, r.redis, k, batch)
		rep.Readded += n
		rep.Oversold += over
		reconcileReadded.Add(n)
		reconcileOversold.Add(over)
		batch = batch[:0]
		return err
	}
	_, err := pgx.ForEachRow(rows, []any{&cl.User, &cl.Amount, &at}, func() error {
		cl.ClaimedAtMs = at.UnixMilli()
		if batch = append(batch, cl); len(batch) == 500 {
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

// WithLock runs fn while holding the reconciler's PostgreSQL advisory lock
// on a connection of its own (closed afterwards, which releases the lock
// even if unlocking failed). With wait false it returns false at once if
// another process holds the lock; with wait true it waits for it.
func (r *Reconciler) WithLock(ctx context.Context, wait bool, fn func(context.Context) error) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, r.db.Config().ConnConfig.Copy())
	if err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if wait {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, reconcileLockKey); err != nil {
			return false, fmt.Errorf("postgres: advisory lock: %w", err)
		}
	} else {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, reconcileLockKey).Scan(&ok); err != nil {
			return false, fmt.Errorf("postgres: advisory lock: %w", err)
		}
		if !ok {
			return false, nil
		}
	}
	err = fn(ctx)
	_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, reconcileLockKey)
	return true, err
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
func (r *Reconciler) Pass(ctx context.Context) (ReconcileReport, error) {
	start := time.Now()
	var rep ReconcileReport
	ran, err := r.WithLock(ctx, false, func(ctx context.Context) error {
		var err error
		rep, err = r.Reconcile(ctx, ReconcileOptions{Grace: r.cfg.Grace})
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
