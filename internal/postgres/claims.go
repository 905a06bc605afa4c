package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// insertClaims inserts the claims claim_log lacks and adds exactly those to
// campaign_inventory.opened_count, in one statement (so one transaction):
// the data-modifying CTE's RETURNING rows are the newly inserted claims only,
// a redelivered claim hits ON CONFLICT DO NOTHING and is not counted. It
// returns how many rows were inserted.
//
// One INSERT … SELECT FROM unnest(arrays) measured faster here than CopyFrom
// into a TEMP staging table followed by the same INSERT … SELECT (README,
// "Consumer"; BenchmarkWriter in pipeline/consumer measures both).
const insertClaims = `
WITH ins AS (
	INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at)
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[])
	ON CONFLICT (campaign_id, user_id) DO NOTHING
	RETURNING campaign_id, amount
), opened AS (
	UPDATE campaign_inventory i SET opened_count = i.opened_count + n.n
	FROM (SELECT campaign_id, amount, count(*) AS n FROM ins GROUP BY campaign_id, amount) n
	WHERE i.campaign_id = n.campaign_id AND i.amount = n.amount
	RETURNING n.n
)
SELECT coalesce(sum(n), 0)::bigint FROM opened`

// Claims is a batch of claims in columns, as InsertClaims takes them.
type Claims struct {
	Campaigns []int64
	Users     []string
	Amounts   []int64
	Times     []time.Time
}

// Append adds one claim.
func (c *Claims) Append(campaign int64, user string, amount int64, claimedAt time.Time) {
	c.Campaigns = append(c.Campaigns, campaign)
	c.Users = append(c.Users, user)
	c.Amounts = append(c.Amounts, amount)
	c.Times = append(c.Times, claimedAt)
}

// Len is the number of claims.
func (c *Claims) Len() int { return len(c.Campaigns) }

// InsertClaims writes the claims claim_log lacks, adding exactly those to
// opened_count, in one statement, and returns how many it inserted. The
// batch must not repeat a (campaign, user).
func (s *Store) InsertClaims(ctx context.Context, c *Claims) (int, error) {
	var n int64
	err := s.DB.QueryRow(ctx, insertClaims, c.Campaigns, c.Users, c.Amounts, c.Times).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("write %d claims: %w", c.Len(), err)
	}
	return int(n), nil
}

// ForEachClaim calls fn for every persisted claim of a campaign.
func (s *Store) ForEachClaim(ctx context.Context, id int64, fn func(user string, amount int64, claimedAt time.Time) error) error {
	rows, _ := s.DB.Query(ctx, `SELECT user_id, amount, claimed_at FROM claim_log WHERE campaign_id = $1`, id)
	var (
		user      string
		amount    int64
		claimedAt time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&user, &amount, &claimedAt}, func() error {
		return fn(user, amount, claimedAt)
	})
	return err
}

// IsDataError reports whether PostgreSQL refused a statement for the data
// it carried (SQLSTATE class 22 data exception or 23 integrity constraint
// violation), which no retry fixes.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) < 2 {
		return false
	}
	return pe.Code[:2] == "22" || pe.Code[:2] == "23"
}
