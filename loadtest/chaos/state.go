package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
)

// Stores reads what PostgreSQL and Redis hold of the run's campaigns.
type Stores struct {
	DB    *pgxpool.Pool
	Redis rueidis.Client
	Keys  lua.Keyspace // the namespace of the api and consumer the suite runs
}

// Counts are the three numbers that agree once a campaign has converged.
type Counts struct {
	Redis  int64 // claims in the Redis claims hash
	Log    int64 // rows in claim_log
	Opened int64 // sum of campaign_inventory.opened_count
}

// Converged reports whether every claim Redis holds is counted in claim_log
// and opened_count.
func (c Counts) Converged() bool { return c.Redis == c.Log && c.Log == c.Opened }

func (c Counts) String() string {
	return fmt.Sprintf("redis %d, claim_log %d, opened %d", c.Redis, c.Log, c.Opened)
}

// Counts reads the three counts of campaign id.
func (s *Stores) Counts(ctx context.Context, id int64) (Counts, error) {
	var c Counts
	lay, err := s.layout(ctx, id)
	if err != nil {
		return c, fmt.Errorf("redis: %w", err)
	}
	for _, b := range lay.Buckets {
		n, err := s.Redis.Do(ctx, s.Redis.B().Hlen().Key(b.Claims()).Build()).AsInt64()
		if err != nil {
			return c, fmt.Errorf("redis: %w", err)
		}
		c.Redis += n
	}
	err = s.DB.QueryRow(ctx, `SELECT (SELECT count(*) FROM claim_log WHERE campaign_id = $1),
		(SELECT coalesce(sum(opened_count), 0)::bigint FROM campaign_inventory WHERE campaign_id = $1)`, id).
		Scan(&c.Log, &c.Opened)
	if err != nil {
		return c, fmt.Errorf("postgres: %w", err)
	}
	return c, nil
}

// State reads everything the checker compares for campaign id.
func (s *Stores) State(ctx context.Context, id int64) (*CampaignState, error) {
	st := &CampaignState{ID: id, Total: map[int64]int64{}, Opened: map[int64]int64{},
		Log: map[string]int64{}, Redis: map[string]int64{}, LogAt: map[string]int64{}, RedisAt: map[string]int64{}}
	var end time.Time
	err := s.DB.QueryRow(ctx, `SELECT end_time, ended_at IS NOT NULL,
		(SELECT count(*) FROM campaign_action WHERE campaign_id = $1 AND kind = 'stock'),
		(SELECT count(*) FROM campaign_action WHERE campaign_id = $1 AND kind = 'stock' AND applied_at IS NULL)
		FROM campaign WHERE id = $1`, id).Scan(&end, &st.EndedEarly, &st.StockActions, &st.PendingStock)
	if err != nil {
		return nil, fmt.Errorf("postgres: campaign %d: %w", id, err)
	}
	st.EndMs = end.UnixMilli()
	rows, _ := s.DB.Query(ctx, `SELECT amount, total_count, opened_count FROM campaign_inventory WHERE campaign_id = $1`, id)
	var amount, total, opened int64
	if _, err := pgx.ForEachRow(rows, []any{&amount, &total, &opened}, func() error {
		st.Total[amount], st.Opened[amount] = total, opened
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: inventory of %d: %w", id, err)
	}
	if len(st.Total) == 0 {
		return nil, fmt.Errorf("postgres: campaign %d has no inventory", id)
	}
	rows, _ = s.DB.Query(ctx, `SELECT user_id, amount, claimed_at FROM claim_log WHERE campaign_id = $1`, id)
	var user string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&user, &amount, &at}, func() error {
		st.LogRows++
		st.Log[user] = amount
		st.LogAt[user] = at.UnixMilli()
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: claim_log of %d: %w", id, err)
	}
	lay, err := s.layout(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("redis: layout of %d: %w", id, err)
	}
	rs, err := lua.ReadBuckets(ctx, s.Redis, lay)
	if err != nil {
		return nil, fmt.Errorf("redis: state of %d: %w", id, err)
	}
	st.Loaded, st.Remaining = rs.Loaded, rs.Remaining
	st.K, st.Pending, st.PoolLeft = lay.K(), rs.Pending, rs.PoolLeft
	if st.K > 1 {
		st.ClaimBuckets = map[string][]int{}
		for _, b := range rs.Buckets {
			st.BucketLeft = append(st.BucketLeft, b.Left)
		}
	}
	for _, b := range lay.Buckets {
		err = lua.ScanClaims(ctx, s.Redis, b.Keys, func(user string, amount, at int64) error {
			if st.K > 1 {
				st.ClaimBuckets[user] = append(st.ClaimBuckets[user], b.Index)
				st.BucketClaims = append(st.BucketClaims, BucketClaim{User: user, Bucket: b.Index, Amount: amount})
			}
			st.Redis[user], st.RedisAt[user] = amount, at
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("redis: claims of %d: %w", id, err)
		}
	}
	return st, nil
}

// layout is campaign id's layout as Redis holds it (its home meta names
// the bucket count); a campaign not in Redis has the layout of one bucket.
func (s *Stores) layout(ctx context.Context, id int64) (*lua.Layout, error) {
	lay, loaded, err := s.Keys.LayoutOf(ctx, s.Redis, id)
	if err != nil {
		return nil, err
	}
	if !loaded {
		return s.Keys.Layout(id, 1)
	}
	return lay, nil
}

// PendingStock counts the stock actions of campaigns ids whose Redis step
// is not known to have run (campaign_action.applied_at null): the api
// finishes them within its sweep (every 5 s, actions older than 2 s).
func (s *Stores) PendingStock(ctx context.Context, ids []int64) (int64, error) {
	var n int64
	err := s.DB.QueryRow(ctx, `SELECT count(*) FROM campaign_action
		WHERE campaign_id = ANY($1) AND kind = 'stock' AND applied_at IS NULL`, ids).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("postgres: pending stock: %w", err)
	}
	return n, nil
}

// Delete removes campaigns: their PostgreSQL rows and Redis keys.
func (s *Stores) Delete(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	store := &postgres.Store{DB: s.DB}
	for _, id := range ids {
		if err := store.DeleteCampaign(ctx, id); err != nil {
			return err
		}
	}
	for _, id := range ids {
		lay, err := s.layout(ctx, id)
		if err != nil {
			return err
		}
		// One DEL per key: a bucketed campaign's keys are on several slots.
		for _, key := range append(lay.AllKeys(), lay.Home.Loading()) {
			if err := s.Redis.Do(ctx, s.Redis.B().Del().Key(key).Build()).Error(); err != nil {
				return err
			}
		}
	}
	return nil
}
