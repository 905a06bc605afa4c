// Package reconcile repairs what a crash left out of the pipeline: the
// claims Redis holds and claim_log lacks are written (through the
// consumer's Writer), and claims claim_log holds and Redis lost are put back.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/ratelog"
	"github.com/redpacket/rain/internal/rediscluster"
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
	reconcileMalformed = metrics.NewCounter(`rain_reconciler_malformed_total`)
	reconcileDeferred  = metrics.NewCounter(`rain_reconciler_scans_total{result="deferred"}`)
	reconcileComplete  = metrics.NewCounter(`rain_reconciler_scans_total{result="complete"}`)
	reconcilePartial   = metrics.NewCounter(`rain_reconciler_scans_total{result="incomplete"}`)
	reconcileSwept     = metrics.NewCounter(`rain_reconciler_transfers_swept_total`)
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
	// ScanEvery: a periodic pass scans a campaign's claims hash only when
	// the counts show claims missing from claim_log for longer than Grace,
	// or when its last complete scan is older than this. A claim lost while
	// more claims keep arriving than were lost hides from the counts; the
	// counts find it once the campaign quiets, this scan at the latest.
	ScanEvery time.Duration
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
	c.ScanEvery = 10 * time.Minute
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
	fail   *slog.Logger // log, at most one line per message every ratelog.Every

	mu    sync.Mutex
	marks map[int64]*mark // per campaign: what earlier passes of this process saw

	afterHSCAN func(elements []string) // tests: runs after each HSCAN reply
}

// mark is what the passes of this process know of one campaign.
type mark struct {
	// verified: every claim of the hash stamped at or before this unix ms
	// is in claim_log, as a complete scan found (or the counts, when Redis
	// held no claim that claim_log lacks).
	verified int64
	// since is when the last complete scan began, or when this process
	// first saw the campaign: ScanEvery counts from it.
	since time.Time
	// samples are the hash lengths of recent passes, oldest first.
	samples []sample
	// unwritable are the users whose hash entry scans found can never be
	// written (malformed, or refused by claim_log): the counts discount
	// them, so they do not call for a scan on every pass. Past
	// maxUnwritable, overflow is set and the counts are not trusted.
	unwritable map[string]struct{}
	overflow   bool
}

// maxUnwritable bounds the unwritable users a mark keeps.
const maxUnwritable = 10_000

// addUnwritable records that user's entry can never be written.
func (m *mark) addUnwritable(user string) {
	if len(m.unwritable) >= maxUnwritable {
		m.overflow = true
		return
	}
	m.unwritable[user] = struct{}{}
}

type sample struct {
	at   time.Time
	hlen int64
}

// maxSamples bounds a mark's samples (a Grace of many Intervals).
const maxSamples = 64

// observe records the hash length at now and returns the newest sample at
// least grace old (the current one when grace is 0).
func (m *mark) observe(now time.Time, hlen int64, grace time.Duration) (sample, bool) {
	m.samples = append(m.samples, sample{now, hlen})
	for len(m.samples) > 1 && now.Sub(m.samples[1].at) >= grace {
		m.samples = m.samples[1:]
	}
	if len(m.samples) > maxSamples {
		m.samples = append(m.samples[:1], m.samples[2:]...)
	}
	if ref := m.samples[0]; now.Sub(ref.at) >= grace {
		return ref, true
	}
	return sample{}, false
}

// New returns a reconciler of the claims in rdb (under the keys of ks) into db.
func New(cfg Config, db *postgres.Store, rdb rueidis.Client, ks lua.Keyspace, log *slog.Logger) *Reconciler {
	return &Reconciler{cfg: cfg, db: db, redis: rdb, keys: ks, writer: writer.New(db), log: log,
		fail: ratelog.Logger(log, ratelog.Every), marks: make(map[int64]*mark)}
}

// Options tune one Reconcile.
type Options struct {
	// Grace: claims younger than this are left alone (0: none are).
	Grace time.Duration
	// Full scans every campaign's claims. Otherwise (the periodic pass) a
	// campaign is scanned only when its counts call for it (see
	// Config.ScanEvery), and claims a previous complete scan of this
	// process checked are not written again.
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
	Malformed int `json:"malformed"` // claims-hash entries that are not a claim, skipped (see the logs)
	Deferred  int `json:"deferred"`  // campaigns whose counts called for no scan yet
	Partial   int `json:"partial"`   // scans that saw fewer claims than the hash held when they began
}

func (r *Report) add(o Report) {
	r.Campaigns += o.Campaigns
	r.Scanned += o.Scanned
	r.Repaired += o.Repaired
	r.Young += o.Young
	r.Rejected += o.Rejected
	r.Readded += o.Readded
	r.Oversold += o.Oversold
	r.Malformed += o.Malformed
	r.Deferred += o.Deferred
	r.Partial += o.Partial
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
		r.forgetOthers(ids)
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
	l, err := r.layout(ctx, id)
	if err != nil {
		return rep, err
	}
	if err := r.sweep(ctx, l); err != nil {
		return rep, err
	}
	now := time.Now()
	grace := max(opts.Grace, 0)
	cutoff := now.Add(-grace).UnixMilli()
	inRedis, err := r.hlenAll(ctx, l)
	if err != nil {
		return rep, err
	}
	persisted, err := r.db.OpenedTotal(ctx, id)
	if err != nil {
		return rep, fmt.Errorf("postgres: %w", err)
	}
	// Every claim in claim_log came from Redis, so fewer claims in Redis
	// means Redis lost some (the last second of writes before a crash,
	// with AOF everysec): put them back before anyone claims twice.
	if inRedis < persisted {
		loaded, err := r.loaded(ctx, k)
		if err != nil {
			return rep, err
		}
		if !loaded {
			// Not in Redis at all (flushed, expired): the api rebuilds it
			// from claim_log when it is opened; nothing to compare.
			return rep, nil
		}
		if err := r.readd(ctx, l, &rep); err != nil {
			return rep, err
		}
		if inRedis, err = r.hlenAll(ctx, l); err != nil {
			return rep, err
		}
	}

	m := r.mark(id, now)
	if !opts.Full {
		ref, ok := m.observe(now, inRedis, grace)
		known := persisted + int64(len(m.unwritable)) // entries accounted for
		switch {
		case inRedis <= known:
			// claim_log holds every claim Redis holds (but those that
			// can never be written).
			m.verified = max(m.verified, cutoff-verifyMargin.Milliseconds())
			return rep, nil
		case m.overflow || now.Sub(m.since) >= r.cfg.ScanEvery:
		case !ok || known >= ref.hlen:
			// claim_log counts at least the claims Redis held a grace
			// ago (or there is no such sample yet): what it lacks is on
			// its way.
			rep.Deferred++
			reconcileDeferred.Inc()
			return rep, nil
		}
	}
	return rep, r.scanAll(ctx, l, m, now, cutoff, opts, &rep)
}

// layout is the layout of campaign id: as Redis holds it (its bucket
// count), or when its home is not in Redis as PostgreSQL's row says, so
// the claims in the buckets of a campaign whose home was lost are still
// scanned and persisted (the api lays the campaign out again).
func (r *Reconciler) layout(ctx context.Context, id int64) (*lua.Layout, error) {
	l, loaded, err := r.keys.LayoutOf(ctx, r.redis, id)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if loaded {
		return l, nil
	}
	c, err := r.db.Campaign(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return r.keys.Layout(id, c.K())
}

// sweep finishes a bucketed campaign's half-done stock transfers
// (lua.SweepBuckets). A lease held elsewhere means a rebalance runs, which
// sweeps first itself.
func (r *Reconciler) sweep(ctx context.Context, l *lua.Layout) error {
	if l.K() == 1 {
		return nil
	}
	n, err := lua.SweepBuckets(ctx, r.redis, l, nil)
	reconcileSwept.Add(n)
	if n > 0 {
		r.log.Warn("reconciler finished half-done stock transfers", "campaign_id", l.ID, "transfers", n)
	}
	if err != nil && !errors.Is(err, lua.ErrLeaseHeld) && !errors.Is(err, lua.ErrNotLoaded) && !errors.Is(err, lua.ErrFrozen) {
		return fmt.Errorf("redis: sweep transfers: %w", err)
	}
	return nil
}

// hlenAll is the number of claims of every bucket.
func (r *Reconciler) hlenAll(ctx context.Context, l *lua.Layout) (int64, error) {
	var sum int64
	for _, b := range l.Buckets {
		n, err := r.hlen(ctx, b.Keys)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// scanAll scans every bucket's claims hash (scan). The campaign's mark
// moves only when every bucket's scan was complete.
func (r *Reconciler) scanAll(ctx context.Context, l *lua.Layout, m *mark, now time.Time, cutoff int64, opts Options, rep *Report) error {
	if l.K() == 1 {
		return r.scan(ctx, l.ID, l.Home, m, now, cutoff, opts, rep)
	}
	complete := true
	var unwritable map[string]struct{}
	overflow := false
	for _, b := range l.Buckets {
		mb := &mark{verified: m.verified, since: m.since, unwritable: m.unwritable, overflow: m.overflow}
		partial := rep.Partial
		if err := r.scan(ctx, l.ID, b.Keys, mb, now, cutoff, opts, rep); err != nil {
			return err
		}
		if rep.Partial != partial {
			complete = false
			continue
		}
		if opts.Full {
			if unwritable == nil {
				unwritable = make(map[string]struct{})
			}
			for u := range mb.unwritable {
				unwritable[u] = struct{}{}
			}
			overflow = overflow || mb.overflow
		} else {
			m.unwritable, m.overflow = mb.unwritable, mb.overflow
		}
	}
	if complete {
		m.verified = max(m.verified, cutoff-verifyMargin.Milliseconds())
		m.since = now
		if opts.Full {
			m.unwritable, m.overflow = unwritable, overflow || len(unwritable) > maxUnwritable
		}
	}
	return nil
}

// scan reads the whole claims hash and writes the claims claim_log lacks
// (older than cutoff; in a periodic pass, newer than what a previous
// complete scan verified). Entries that are not a valid claim are counted
// and skipped. HSCAN returns every entry present throughout the scan only
// while its cursor walks one table, so on a Redis Cluster the whole scan
// reads from the master that serves the hash when it begins, and follows
// no redirect: a hash that moves to another node mid-scan (a slot
// migration or a failover) answers the next HSCAN with ASK or MOVED, which
// ends the scan as incomplete (and a dead master with an error). The scan
// counts as complete, and moves the mark, only if it was not cut short so
// and saw at least as many entries as the hash held when it began.
func (r *Reconciler) scan(ctx context.Context, id int64, k *lua.Keys, m *mark, now time.Time, cutoff int64, opts Options, rep *Report) error {
	hlen, err := r.hlen(ctx, k)
	if err != nil {
		return err
	}
	node, err := r.scanNode(ctx, k)
	if err != nil {
		return err
	}
	verified := int64(math.MinInt64)
	unwritable := m
	if opts.Full {
		// Everything is checked again: the unwritable entries are those
		// this scan finds.
		unwritable = &mark{unwritable: make(map[string]struct{})}
	} else {
		verified = m.verified
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
			unwritable.addUnwritable(ev.UserID)
			r.fail.Error("claim in redis cannot be written to claim_log", "campaign_id", ev.CampaignID,
				"user_id", ev.UserID, "amount", ev.Amount, "claimed_at_ms", ev.ClaimedAt, "reason", rj.Reason, "err", rj.Err)
		}
		chunk = chunk[:0]
		return nil
	}
	var seen int64
	var cursor uint64
	moved := "" // where a redirect said the hash went
	for {
		e, err := node.Do(ctx, node.B().Hscan().Key(k.Claims()).Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if addr, ok := redirect(err); ok {
			moved = addr
			break
		}
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		for i := 0; i+1 < len(e.Elements); i += 2 {
			seen++
			rep.Scanned++
			reconcileScanned.Inc()
			user, value := e.Elements[i], e.Elements[i+1]
			amount, at, ok := parseClaim(user, value)
			switch {
			case !ok:
				rep.Malformed++
				reconcileMalformed.Inc()
				unwritable.addUnwritable(user)
				r.fail.Error("claims-hash entry is not a claim; skipped", "campaign_id", id,
					"user_id", cutText(user, 160), "value", cutText(value, 64))
				continue
			case at > cutoff:
				rep.Young++
				continue
			case at <= verified:
				continue
			}
			chunk = append(chunk, pipeline.Event{CampaignID: id, UserID: user, Amount: amount, ClaimedAt: at})
			if len(chunk) >= r.cfg.Chunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if r.afterHSCAN != nil {
			r.afterHSCAN(e.Elements)
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	if err := flush(); err != nil {
		return err
	}
	switch {
	case moved != "":
		rep.Partial++
		reconcilePartial.Inc()
		r.fail.Warn("claims hash moved to another Redis node mid-scan; not marked verified",
			"campaign_id", id, "seen", seen, "hlen", hlen, "moved_to", moved)
	case seen < hlen:
		rep.Partial++
		reconcilePartial.Inc()
		r.fail.Warn("claims scan saw fewer entries than the hash held when it began; not marked verified",
			"campaign_id", id, "seen", seen, "hlen", hlen)
	default:
		reconcileComplete.Inc()
		m.verified = max(m.verified, cutoff-verifyMargin.Milliseconds())
		m.since = now
		if opts.Full {
			m.unwritable, m.overflow = unwritable.unwritable, unwritable.overflow
		}
	}
	if rep.Repaired > 0 || rep.Rejected > 0 || rep.Malformed > 0 {
		r.log.Warn("reconciler repaired claims missing from claim_log", "campaign_id", id,
			"repaired", rep.Repaired, "rejected", rep.Rejected, "malformed", rep.Malformed, "scanned", rep.Scanned)
	}
	return nil
}

// parseClaim reads one claims-hash entry: a valid user id, and "amount:ms"
// with an amount in range and a time after 1970.
func parseClaim(user, value string) (amount, at int64, ok bool) {
	amount, at, err := lua.ParseClaimValue(value)
	if err != nil || amount < 1 || amount > rain.MaxAmount || at < 0 || !rain.ValidUserID([]byte(user)) {
		return 0, 0, false
	}
	return amount, at, true
}

// cutText is s cut to at most n bytes (at a rune boundary), for the logs.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// scanNode is the client a scan of k's claims reads from: on one Redis the
// client; on a cluster the master that serves the hash's slot now, a
// client of that node alone, which follows no redirect.
func (r *Reconciler) scanNode(ctx context.Context, k *lua.Keys) (rueidis.Client, error) {
	if !rediscluster.IsCluster(r.redis) {
		return r.redis, nil
	}
	shards, err := rediscluster.Shards(ctx, r.redis)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	s, ok := rediscluster.ShardOf(shards, k.Claims())
	if !ok {
		return nil, fmt.Errorf("redis: slot %d of %s has no master", rediscluster.Slot(k.Claims()), k.Claims())
	}
	n := r.redis.Nodes()[s.Addr]
	if n == nil {
		return nil, fmt.Errorf("redis: master %s not yet known to the client", s.Addr)
	}
	return n, nil
}

// redirect reports whether err is a MOVED or ASK reply, and to where.
func redirect(err error) (string, bool) {
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return "", false
	}
	if addr, ok := re.IsMoved(); ok {
		return addr, true
	}
	return re.IsAsk()
}

func (r *Reconciler) hlen(ctx context.Context, k *lua.Keys) (int64, error) {
	n, err := r.redis.Do(ctx, r.redis.B().Hlen().Key(k.Claims()).Build()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("redis: %w", err)
	}
	return n, nil
}

// loaded reports whether the campaign is in Redis (its meta key exists).
func (r *Reconciler) loaded(ctx context.Context, k *lua.Keys) (bool, error) {
	n, err := r.redis.Do(ctx, r.redis.B().Exists().Key(k.Meta()).Build()).AsInt64()
	if err != nil {
		return false, fmt.Errorf("redis: %w", err)
	}
	return n > 0, nil
}

// readd puts back into Redis the claims of claim_log that Redis lacks.
func (r *Reconciler) readd(ctx context.Context, l *lua.Layout, rep *Report) error {
	id := l.ID
	var batch []lua.Record
	flush := func() error {
		n, over, err := lua.ReaddBuckets(ctx, r.redis, l, batch)
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

// mark is the campaign's mark, made at now if there was none. The caller
// holds the reconciler's lock (one pass at a time).
func (r *Reconciler) mark(id int64, now time.Time) *mark {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.marks[id]
	if !ok {
		m = &mark{verified: math.MinInt64, since: now, unwritable: make(map[string]struct{})}
		r.marks[id] = m
	}
	return m
}

// forgetOthers drops the marks of campaigns no longer active.
func (r *Reconciler) forgetOthers(active []int64) {
	keep := make(map[int64]bool, len(active))
	for _, id := range active {
		keep[id] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.marks {
		if !keep[id] {
			delete(r.marks, id)
		}
	}
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
		r.fail.Error("reconcile pass failed", "err", err, "campaigns", rep.Campaigns, "repaired", rep.Repaired)
	default:
		reconcileOK.Inc()
		reconcileLastOK.Set(float64(time.Now().Unix()))
		r.log.Info("reconcile pass done", "campaigns", rep.Campaigns, "deferred", rep.Deferred, "scanned", rep.Scanned,
			"repaired", rep.Repaired, "young", rep.Young, "rejected", rep.Rejected, "malformed", rep.Malformed,
			"took_ms", time.Since(start).Milliseconds())
	}
	reconcileDuration.UpdateDuration(start)
	return rep, err
}

// DefaultConfig is the configuration with no variable set.
func DefaultConfig() Config { return config.Default[Config]() }
