package edge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain"
)

// Store is the campaign side of PostgreSQL: create, read, list.
type Store struct {
	DB *pgxpool.Pool
}

// CreateCampaign writes the campaign and its inventory in one transaction
// and sets c.ID and c.CreatedAt.
func (s *Store) CreateCampaign(ctx context.Context, c *rain.Campaign) error {
	defer pgCreate.UpdateDuration(time.Now())
	amounts := make([]int64, len(c.Inventory))
	totals := make([]int64, len(c.Inventory))
	for i, st := range c.Inventory {
		amounts[i], totals[i] = st.Amount, st.Total
	}
	return pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx,
			`INSERT INTO campaign (name, start_time, end_time) VALUES ($1, $2, $3) RETURNING id, created_at`,
			c.Name, c.StartTime, c.EndTime).Scan(&c.ID, &c.CreatedAt)
		if err != nil {
			return fmt.Errorf("insert campaign: %w", err)
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO campaign_inventory (campaign_id, amount, total_count)
			 SELECT $1, a, t FROM unnest($2::bigint[], $3::bigint[]) AS i(a, t)`,
			c.ID, amounts, totals)
		if err != nil {
			return fmt.Errorf("insert inventory: %w", err)
		}
		return nil
	})
}

// Campaign reads a campaign with its inventory (opened counts as persisted).
// A missing campaign is a rain.ENOTFOUND error.
func (s *Store) Campaign(ctx context.Context, id int64) (*rain.Campaign, error) {
	defer pgRead.UpdateDuration(time.Now())
	c := &rain.Campaign{ID: id}
	err := s.DB.QueryRow(ctx,
		`SELECT name, start_time, end_time, created_at FROM campaign WHERE id = $1`, id).
		Scan(&c.Name, &c.StartTime, &c.EndTime, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read campaign %d: %w", id, err)
	}
	rows, _ := s.DB.Query(ctx,
		`SELECT amount, total_count, opened_count FROM campaign_inventory
		 WHERE campaign_id = $1 ORDER BY amount DESC`, id)
	c.Inventory, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (rain.Stock, error) {
		var st rain.Stock
		err := r.Scan(&st.Amount, &st.Total, &st.Opened)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("read inventory of campaign %d: %w", id, err)
	}
	return c, nil
}

// LiveCampaignIDs lists the campaigns whose window has not ended.
func (s *Store) LiveCampaignIDs(ctx context.Context) ([]int64, error) {
	rows, _ := s.DB.Query(ctx, `SELECT id FROM campaign WHERE end_time > now() ORDER BY id`)
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// LiveAmounts lists the amounts of every campaign whose window has not
// ended, newest campaigns first, at most limit campaigns.
func (s *Store) LiveAmounts(ctx context.Context, limit int) (ids []int64, amounts map[int64][]int64, err error) {
	rows, _ := s.DB.Query(ctx, `SELECT i.campaign_id, i.amount FROM campaign_inventory i
		WHERE i.campaign_id IN (SELECT id FROM campaign WHERE end_time > now() ORDER BY id DESC LIMIT $1)
		ORDER BY i.campaign_id DESC, i.amount DESC`, limit)
	amounts = make(map[int64][]int64)
	var id, amount int64
	_, err = pgx.ForEachRow(rows, []any{&id, &amount}, func() error {
		if _, ok := amounts[id]; !ok {
			ids = append(ids, id)
		}
		amounts[id] = append(amounts[id], amount)
		return nil
	})
	return ids, amounts, err
}

// Claims calls fn for every persisted claim of a campaign.
func (s *Store) Claims(ctx context.Context, id int64, fn func(user string, amount int64, claimedAt time.Time) error) error {
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
