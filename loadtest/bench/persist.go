package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Persistence is how an open phase's claims reached PostgreSQL after the
// load stopped.
type Persistence struct {
	// Claims is how many users opened the campaign (the api's count, from
	// Redis): every one of them must end up in claim_log. It can exceed
	// wrk's 200s by the answers in flight when wrk stopped.
	Claims int64 `json:"claims"`
	// AtStop is the claim_log row count of the first query after the load
	// stopped, whose snapshot was taken AtStopAfterMS after the stop.
	AtStop        int64   `json:"at_stop"`
	AtStopAfterMS float64 `json:"at_stop_after_ms"`
	AtStopRatio   float64 `json:"at_stop_ratio"`
	// All is true when claim_log held every claim before the timeout;
	// AllAfterMS is the time from the stop to the snapshot of the poll that
	// saw it (the poll interval plus a count's time is the resolution).
	All        bool    `json:"all"`
	AllAfterMS float64 `json:"all_after_ms,omitempty"`
	Final      int64   `json:"final"`
	IntervalMS float64 `json:"poll_interval_ms"`
	TimeoutMS  float64 `json:"timeout_ms"`
	// LastPersistedAfterMS is the newest persisted_at minus the stop, as
	// PostgreSQL saw it.
	LastPersistedAfterMS *float64 `json:"last_persisted_after_ms,omitempty"`
	// Lag is persisted_at - claimed_at over the campaign's rows, in ms.
	Lag *LagStats `json:"lag_ms,omitempty"`
	// RowsPerSec is AtStop over the phase's seconds: the consumer's rate
	// while the load ran (the campaign was new, so every row is the phase's).
	RowsPerSec float64 `json:"rows_per_sec"`
	// PostgresCPUus and ConsumerCPUus are the CPU PostgreSQL and the
	// consumer used during the phase per row of AtStop, in µs (0: not
	// measured). PostgreSQL's is that of the bench database's backends and
	// of the WAL writer, checkpointer and background writer (Snapshot.PG),
	// not the other databases' of the shared cluster. Nothing else of the
	// bench writes meanwhile: the previous phase's rows were all in before
	// this one started, and the bench polls only after the stop.
	PostgresCPUus float64 `json:"postgres_cpu_us_per_row"`
	ConsumerCPUus float64 `json:"consumer_cpu_us_per_row"`
}

// LagStats summarises claim → row delays in milliseconds.
type LagStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// persisted polls claim_log until it holds every claim of campaign id
// (claims reads the api's count) or timeout passes after stop.
func persisted(ctx context.Context, db *pgxpool.Pool, id int64, claims func(context.Context) (int64, error),
	stop time.Time, timeout, interval time.Duration) (*Persistence, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	// count returns the rows as of the start of its statement (its snapshot)
	// and that moment: counting takes a while on big runs.
	count := func() (int64, time.Time, error) {
		var n int64
		at := time.Now()
		err := db.QueryRow(ctx, `SELECT count(*) FROM claim_log WHERE campaign_id = $1`, id).Scan(&n)
		return n, at, err
	}
	p := &Persistence{IntervalMS: ms(interval), TimeoutMS: ms(timeout)}
	var at time.Time
	var err error
	if p.AtStop, at, err = count(); err != nil {
		return nil, err
	}
	p.AtStopAfterMS = ms(at.Sub(stop))
	if p.Claims, err = claims(ctx); err != nil {
		return nil, err
	}
	p.Final = p.AtStop
	for deadline := stop.Add(timeout); ; {
		if p.Final >= p.Claims {
			// A claim answered after the first read would show as an extra row.
			if p.Claims, err = claims(ctx); err != nil {
				return nil, err
			}
			if p.Final >= p.Claims {
				p.All, p.AllAfterMS = true, ms(at.Sub(stop))
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(interval)
		if p.Final, at, err = count(); err != nil {
			return nil, err
		}
	}
	p.AtStopRatio = div(float64(p.AtStop), float64(p.Claims))
	var last *time.Time
	var p50, p99, mx *float64
	err = db.QueryRow(ctx, `
		SELECT max(persisted_at),
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
		       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag),
		       max(lag)
		FROM (SELECT persisted_at, extract(epoch FROM persisted_at - claimed_at)::float8 * 1000 AS lag
		      FROM claim_log WHERE campaign_id = $1) t`, id).Scan(&last, &p50, &p99, &mx)
	if err != nil {
		return nil, err
	}
	if last != nil {
		d := ms(last.Sub(stop))
		p.LastPersistedAfterMS = &d
		p.Lag = &LagStats{P50: *p50, P99: *p99, Max: *mx}
	}
	return p, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
