// Command consumer writes the claim events of Kafka into PostgreSQL with
// exactly-once effect, dead-letters what cannot be written, and reconciles
// the claims Redis holds with claim_log.
//
//	consumer                                   consume; reconcile every RECONCILE_INTERVAL
//	consumer reconcile [-campaign ID] [-grace D] [-timeout D]
//	                                           one full reconcile now; exit status 1 if it
//	                                           could not finish or a claim cannot be written
//	consumer archive -dir DIR (-campaign ID | -ended-before D) [-drop] [-timeout D]
//	                                           export the claims of ended campaigns to DIR and
//	                                           detach (with -drop, drop) them from claim_log
//
// Configuration is by environment; `consumer -help` lists every variable
// with its default and meaning (docs/configuration.md's tables are the same list).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/app/consumerproc"
	"github.com/redpacket/rain/internal/archive"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline/reconcile"
)

func main() {
	var cfg consumerproc.MainConfig
	os.Exit(app.Main("consumer", os.Args[1:], os.Stderr, func(s *config.Set) { cfg.Bind(s) }, func(ctx context.Context, log *slog.Logger, args []string) error {
		if len(args) > 0 && args[0] == "reconcile" {
			return reconcileNow(ctx, cfg, args[1:], os.Stdout, log)
		}
		if len(args) > 0 && args[0] == "archive" {
			return archiveNow(ctx, cfg, args[1:], os.Stdout, log)
		}
		if len(args) > 0 {
			return app.UsageError("usage: consumer [reconcile [-campaign ID] [-grace D] [-timeout D] | " + archiveUsage + "]")
		}
		return run(ctx, cfg, log)
	}))
}

// run consumes until ctx ends, then finishes the batch in flight, commits
// it and stops.
func run(ctx context.Context, cfg consumerproc.MainConfig, log *slog.Logger) error {
	m := consumerproc.NewMain(cfg, log)
	if err := m.Open(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-m.Done(): // the client closed by itself
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Boot.ShutdownTimeout+5*time.Second)
	defer cancel()
	return m.Close(sctx)
}

// errIncomplete is the exit status 1 of a reconcile that finished with
// claims it could not write (already logged).
var errIncomplete = fmt.Errorf("reconcile finished, but claims in redis cannot be written (see the logs above)")

// errPartial is the exit status 1 of a reconcile whose scans could not see
// every claim (a slot migrated or failed over mid-scan): run it again.
var errPartial = fmt.Errorf("reconcile finished, but a scan saw fewer claims than the hash held (a slot moved mid-scan): run it again")

// reconcileNow is `consumer reconcile`: one full pass now (every active
// campaign, or -campaign), waiting for a periodic pass of another process
// to finish first. It prints the report as JSON on out.
// oneOff is what a one-off command on a running system starts with: ctx
// bounded by timeout, and PostgreSQL without a migration (the service owns
// the schema). done releases both.
func oneOff(ctx context.Context, cfg consumerproc.MainConfig, cmd string, timeout time.Duration) (_ context.Context, _ *postgres.Store, done func(), _ error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	pool, err := pgxpool.New(ctx, cfg.Boot.PostgresDSN)
	if err != nil {
		cancel()
		return nil, nil, nil, fmt.Errorf("%s: POSTGRES_DSN: %w", cmd, err)
	}
	return ctx, &postgres.Store{DB: pool}, func() { pool.Close(); cancel() }, nil
}

func reconcileNow(ctx context.Context, cfg consumerproc.MainConfig, args []string, out io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	campaign := fs.Int64("campaign", 0, "reconcile this campaign only (default: every campaign active within RECONCILE_LOOKBACK)")
	grace := fs.Duration("grace", 0, "leave alone the claims younger than this (they may still be on their way through Kafka)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *campaign < 0 || *grace < 0 {
		return app.UsageError("usage: consumer reconcile [-campaign ID] [-grace D] [-timeout D]")
	}
	ctx, db, done, err := oneOff(ctx, cfg, "reconcile", *timeout)
	if err != nil {
		return err
	}
	defer done()
	rdb, err := rueidis.NewClient(cfg.Boot.RedisOptions())
	if err != nil {
		return fmt.Errorf("reconcile: redis %s: %w", cfg.Boot.RedisAddr, err)
	}
	defer rdb.Close()

	ks, err := cfg.Boot.Keys(ctx, rdb, log)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	rec := reconcile.New(cfg.Reconcile, db, rdb, ks, log)
	var ids []int64
	if *campaign > 0 {
		ids = []int64{*campaign}
	}
	var rep reconcile.Report
	_, err = rec.WithLock(ctx, true, func(ctx context.Context) error {
		var err error
		rep, err = rec.Reconcile(ctx, reconcile.Options{Grace: *grace, Full: true}, ids...)
		return err
	})
	_ = json.NewEncoder(out).Encode(rep)
	switch {
	case err != nil:
		return fmt.Errorf("reconcile could not finish (repaired %d): %w", rep.Repaired, err)
	case rep.Rejected > 0:
		return errIncomplete
	case rep.Partial > 0:
		return errPartial
	}
	log.Info("reconcile done", "campaigns", rep.Campaigns, "scanned", rep.Scanned, "repaired", rep.Repaired, "young", rep.Young)
	return nil
}

const archiveUsage = "archive -dir DIR (-campaign ID | -ended-before D) [-drop] [-timeout D]"

// archiveNow is `consumer archive`: the claims of one campaign (-campaign),
// or of every campaign that ended more than -ended-before ago and is not
// archived yet, exported into -dir and detached from claim_log (dropped
// with -drop), while the service runs. A campaign that ended within
// RECONCILE_LOOKBACK is refused: the reconciler may still write its
// claims. It prints one JSON line per campaign archived.
func archiveNow(ctx context.Context, cfg consumerproc.MainConfig, args []string, out io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("archive", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory of the exports, claims-<id>.csv.gz (created if missing)")
	campaign := fs.Int64("campaign", 0, "archive this campaign")
	endedBefore := fs.Duration("ended-before", 0, "archive every campaign that ended longer ago than this (at least RECONCILE_LOOKBACK)")
	drop := fs.Bool("drop", false, "drop the detached claims once exported (default: keep them as the table claim_archived_<id>)")
	timeout := fs.Duration("timeout", 6*time.Hour, "give up after this long")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *dir == "" || *campaign < 0 || (*campaign > 0) == (*endedBefore > 0) {
		return app.UsageError("usage: consumer " + archiveUsage)
	}
	lookback := cfg.Reconcile.Lookback
	if *endedBefore > 0 && *endedBefore < lookback {
		return app.UsageError(fmt.Sprintf("-ended-before %s is within RECONCILE_LOOKBACK (%s): the reconciler may still write claims of those campaigns", *endedBefore, lookback))
	}
	ctx, db, done, err := oneOff(ctx, cfg, "archive", *timeout)
	if err != nil {
		return err
	}
	defer done()
	o := archive.Options{Dir: *dir, Before: time.Now().Add(-max(lookback, *endedBefore)), Drop: *drop}
	var results []archive.Result
	if *campaign > 0 {
		var r archive.Result
		if r, err = archive.Campaign(ctx, db, *campaign, o); err == nil {
			results = append(results, r)
		}
	} else {
		results, err = archive.Ended(ctx, db, o)
	}
	enc := json.NewEncoder(out)
	for _, r := range results {
		_ = enc.Encode(r)
		log.Info("campaign archived", "campaign_id", r.Campaign, "claims", r.Claims, "file", r.File, "dropped", r.Dropped)
	}
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}
