package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Persistence is how a campaign's claims reached PostgreSQL after the load
// on it stopped.
type Persistence struct {
	CampaignID int64 `json:"campaign_id"`
	// Claims is how many users opened the campaign (the api's "claims",
	// from Redis): every one of them must end up in claim_log.
	Claims int64 `json:"claims"`
	// WrkOK is how many 200s wrk received in phase (b), filled in by the
	// report (a claim whose answer was in flight when wrk stopped is in
	// Claims but not here).
	WrkOK int64 `json:"wrk_ok,omitempty"`
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
	// PostgreSQL saw it (persisted_at is now() of the consumer's
	// transaction, so this is a little earlier than its commit).
	LastPersistedAfterMS *float64 `json:"last_persisted_after_ms,omitempty"`
	// Lag is persisted_at - claimed_at over the campaign's rows, in ms.
	Lag *LagStats `json:"lag_ms,omitempty"`
}

// LagStats summarises claim → row delays in milliseconds.
type LagStats struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func persistCmd(args []string) error {
	fs := flag.NewFlagSet("persist", flag.ExitOnError)
	dsn := fs.String("dsn", os.Getenv("POSTGRES_DSN"), "PostgreSQL DSN")
	base := fs.String("base-url", "", "the api, e.g. http://127.0.0.1:18080")
	token := fs.String("token", os.Getenv("ADMIN_TOKEN"), "a merchant token of the api")
	id := fs.Int64("campaign", 0, "campaign id")
	stopNS := fs.Int64("stop", 0, "when the load stopped, Unix ns (default: now)")
	waitStdin := fs.Bool("wait-stdin", false, "connect, then wait for stdin to close: that is the stop")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	interval := fs.Duration("interval", 100*time.Millisecond, "poll interval")
	out := fs.String("o", "", "write the JSON here (default stdout)")
	fs.Parse(args)
	if *id <= 0 || *base == "" || *dsn == "" {
		return fmt.Errorf("-campaign, -base-url and -dsn are required")
	}
	conn, err := pgx.Connect(context.Background(), *dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if *waitStdin {
		// Connected before the load stops, so the first count is taken
		// right at the stop rather than a process start later.
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			return err
		}
	}
	stop := time.Now()
	if *stopNS > 0 {
		stop = time.Unix(0, *stopNS)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+10*time.Second)
	defer cancel()

	// count is the number of rows as of the start of its statement (its
	// snapshot), which it returns too: counting takes a while on big runs.
	count := func() (int64, time.Time, error) {
		var n int64
		at := time.Now()
		err := conn.QueryRow(ctx, `SELECT count(*) FROM claim_log WHERE campaign_id = $1`, *id).Scan(&n)
		return n, at, err
	}
	p := Persistence{CampaignID: *id, IntervalMS: ms(*interval), TimeoutMS: ms(*timeout)}
	var at time.Time
	if p.AtStop, at, err = count(); err != nil {
		return err
	}
	p.AtStopAfterMS = ms(at.Sub(stop))
	if p.Claims, err = claims(ctx, *base, *token, *id); err != nil {
		return err
	}
	p.Final = p.AtStop
	deadline := stop.Add(*timeout)
	for {
		if p.Final >= p.Claims {
			// Claims answered after the first read would show as extra rows.
			if p.Claims, err = claims(ctx, *base, *token, *id); err != nil {
				return err
			}
			if p.Final >= p.Claims {
				p.All = true
				p.AllAfterMS = ms(at.Sub(stop))
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(*interval)
		if p.Final, at, err = count(); err != nil {
			return err
		}
	}
	if p.Claims > 0 {
		p.AtStopRatio = float64(p.AtStop) / float64(p.Claims)
	}
	var last *time.Time
	var p50, p99, max *float64
	err = conn.QueryRow(ctx, `
		SELECT max(persisted_at),
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
		       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag),
		       max(lag)
		FROM (SELECT persisted_at, extract(epoch FROM persisted_at - claimed_at)::float8 * 1000 AS lag
		      FROM claim_log WHERE campaign_id = $1) t`, *id).Scan(&last, &p50, &p99, &max)
	if err != nil {
		return err
	}
	if last != nil {
		d := ms(last.Sub(stop))
		p.LastPersistedAfterMS = &d
		p.Lag = &LagStats{P50: *p50, P99: *p99, Max: *max}
	}
	return writeJSON(*out, p)
}

// claims reads the api's count of users who opened the campaign.
func claims(ctx context.Context, base, token string, id int64) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/campaign/"+strconv.FormatInt(id, 10), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		Claims *int64 `json:"claims"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK || v.Claims == nil {
		return 0, fmt.Errorf("GET /campaign/%d: status %d, claims missing (%v)", id, resp.StatusCode, err)
	}
	return *v.Claims, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
