package harness

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
	lay, err := s.Layout(ctx, id)
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

// CampaignState is what PostgreSQL and Redis hold for one campaign once a
// run is over.
type CampaignState struct {
	ID        int64
	Label     string           // what the campaign is for ("big", "small")
	SoldOutOK bool             // the campaign may sell out: 410 is an expected answer
	Total     map[int64]int64  // campaign_inventory.total_count per amount
	Opened    map[int64]int64  // campaign_inventory.opened_count per amount
	Log       map[string]int64 // claim_log: user → amount
	LogRows   int              // rows read from claim_log (above len(Log): a user twice)
	Loaded    bool             // Redis has the campaign (its meta hash)
	Remaining map[int64]int64  // Redis stock hash: amount → remaining (sold-out amounts absent)
	Redis     map[string]int64 // Redis claims hash: user → amount
	// What the merchant checks read.
	LogAt        map[string]int64 // claim_log.claimed_at, unix ms, per user
	RedisAt      map[string]int64 // the claimed_at of the Redis claims, unix ms, per user
	EndMs        int64            // campaign.end_time, unix ms
	EndedEarly   bool             // campaign.ended_at is set (a merchant ended it)
	StockActions int              // stock actions in campaign_action
	PendingStock int              // ... of which Redis is not known to have (applied_at null)
	// A bucketed campaign (K > 1): Remaining and Redis are the sums over the
	// pool and the buckets; these are the parts.
	K            int              // buckets (1: today's layout)
	ClaimBuckets map[string][]int // user → the buckets whose claims hash holds them
	BucketClaims []BucketClaim    // every claim as found, bucket by bucket
	BucketLeft   []int64          // packets left per bucket
	PoolLeft     int64            // packets left in the pool
	Pending      int64            // transfers taken and not yet credited (packets in transit)
}

// BucketClaim is one entry of a bucket's claims hash.
type BucketClaim struct {
	User   string
	Bucket int
	Amount int64
}

// Left is the packets left in Redis: the stock hash (the buckets' and the
// pool's for a bucketed campaign), not counting those in transit.
func (st *CampaignState) Left() int64 {
	var n int64
	for _, c := range st.Remaining {
		n += c
	}
	return n
}

// ClaimAmount is the user's claim as the stores hold it: claim_log first,
// else Redis.
func (st *CampaignState) ClaimAmount(user string) (int64, bool) {
	if a, ok := st.Log[user]; ok {
		return a, true
	}
	a, ok := st.Redis[user]
	return a, ok
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
	lay, err := s.Layout(ctx, id)
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

// Layout is campaign id's layout as Redis holds it (its home meta names
// the bucket count); a campaign not in Redis has the layout of one bucket.
func (s *Stores) Layout(ctx context.Context, id int64) (*lua.Layout, error) {
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
		lay, err := s.Layout(ctx, id)
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
