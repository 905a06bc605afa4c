// Package history fills claim_log with the claims of ended campaigns, by
// SQL, so that benchmarks run against a database with a past (make bench's
// BENCH_HISTORY, BenchmarkWriter's, `bin/dev history`). Development
// tooling: the product never imports it.
package history

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain/internal/postgres"
	"golang.org/x/sync/errgroup"
)

// PerCampaign is the claims of each history campaign: a campaign of a busy
// day (the deployment averaged 75,000).
const PerCampaign = 200_000

// Name is the name of every history campaign: Fill counts and Clear
// deletes the campaigns that carry it.
const Name = "history (generated)"

// Have is how many claims the history campaigns hold, and their ids.
func Have(ctx context.Context, db *pgxpool.Pool) (claims int64, ids []int64, err error) {
	rows, _ := db.Query(ctx, `SELECT c.id, coalesce(sum(i.opened_count), 0)::bigint FROM campaign c
		LEFT JOIN campaign_inventory i ON i.campaign_id = c.id WHERE c.name = $1 GROUP BY c.id ORDER BY c.id`, Name)
	var id, n int64
	_, err = pgx.ForEachRow(rows, []any{&id, &n}, func() error {
		ids, claims = append(ids, id), claims+n
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("history: %w", err)
	}
	return claims, ids, nil
}

// Fill adds history campaigns until they hold at least claims claims, and
// returns the ids it made (with an error, those made before it). Each is
// a campaign that ended days ago with PerCampaign claims (amounts 1, 5 and
// 20 in the proportions 5:3:2, every packet opened), made through the
// schema as a campaign made by the api is: its row (and so its partition),
// its inventory, its claims with opened_count. Two connections work at
// once (one per core of a small machine); the user ids of a campaign
// ascend, so each claim lands at the end of its index. Each campaign's
// partition is then vacuumed (frozen, analyzed), as months-old claims are.
// logf reports progress.
func Fill(ctx context.Context, db *pgxpool.Pool, claims int64, logf func(string, ...any)) ([]int64, error) {
	have, _, err := Have(ctx, db)
	if err != nil {
		return nil, err
	}
	campaigns := int((claims - have + PerCampaign - 1) / PerCampaign)
	if campaigns <= 0 {
		return nil, nil
	}
	logf("history: %d claims there, adding %d campaigns of %d claims", have, campaigns, PerCampaign)
	start := time.Now()
	var (
		mu   sync.Mutex
		made []int64
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for k := range campaigns {
		g.Go(func() error {
			id, err := campaign(gctx, db, k)
			mu.Lock()
			defer mu.Unlock()
			if id != 0 {
				made = append(made, id)
			}
			if err == nil && len(made)%10 == 0 {
				logf("history: %d of %d campaigns, %s", len(made), campaigns, time.Since(start).Round(time.Second))
			}
			return err
		})
	}
	err = g.Wait()
	logf("history: %d claims in %d campaigns added in %s", int64(len(made))*PerCampaign, len(made), time.Since(start).Round(time.Second))
	return made, err
}

// campaign makes history campaign k (it ended k+1 days ago), in one
// transaction, then vacuums its claims.
func campaign(ctx context.Context, db *pgxpool.Pool, k int) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		// A benchmark's data: nothing to lose with the commit's flush.
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		end := time.Now().Add(-time.Duration(k+1) * 24 * time.Hour).Truncate(time.Millisecond)
		err := tx.QueryRow(ctx, `INSERT INTO campaign (name, start_time, end_time) VALUES ($1, $2, $3) RETURNING id`,
			Name, end.Add(-time.Hour), end).Scan(&id)
		if err != nil {
			return err
		}
		// Of every 10 claims 5 are of amount 1, 3 of 5, 2 of 20.
		_, err = tx.Exec(ctx, `INSERT INTO campaign_inventory (campaign_id, amount, total_count, opened_count)
			VALUES ($1, 1, $2 / 10 * 5, $2 / 10 * 5), ($1, 5, $2 / 10 * 3, $2 / 10 * 3), ($1, 20, $2 / 10 * 2, $2 / 10 * 2)`,
			id, PerCampaign)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at, persisted_at)
			SELECT $1::bigint, 'h' || $1::bigint || '-' || lpad(g::text, 8, '0'),
			       CASE WHEN g % 10 < 5 THEN 1 WHEN g % 10 < 8 THEN 5 ELSE 20 END,
			       $2::timestamptz + g * interval '10 ms', $2::timestamptz + g * interval '10 ms' + interval '150 ms'
			FROM generate_series(0, $3 - 1) g`, id, end.Add(-time.Hour), PerCampaign)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("history campaign %d: %w", k, err)
	}
	// Claims of months ago have long been vacuumed, frozen and analyzed;
	// left to autovacuum, a hundred partitions fresh from their inserts
	// would be vacuumed in the middle of what is measured next.
	if _, err := db.Exec(ctx, `VACUUM (FREEZE, ANALYZE) `+pgx.Identifier{fmt.Sprintf("claim_log_%d", id)}.Sanitize()); err != nil {
		return id, fmt.Errorf("history campaign %d: %w", k, err)
	}
	return id, nil
}

// Clear deletes the history campaigns, with their claims.
func Clear(ctx context.Context, db *pgxpool.Pool) (int, error) {
	_, ids, err := Have(ctx, db)
	if err != nil {
		return 0, err
	}
	s := &postgres.Store{DB: db}
	for i, id := range ids {
		if err := s.DeleteCampaign(ctx, id); err != nil {
			return i, err
		}
	}
	return len(ids), nil
}
