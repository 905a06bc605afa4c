package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain"
)

// Store is the service's PostgreSQL: every query of every table is a
// method of it, in this package (campaigns.go: campaign and
// campaign_inventory; claims.go: claim_log; lock.go: advisory locks;
// merchant.go: the merchant's list, end, added stock, payout reads and the
// audit, campaign_action).
type Store struct {
	DB *pgxpool.Pool
}

// CreateCampaign writes the campaign and its inventory in one transaction
// and sets c.ID and c.CreatedAt.
func (s *Store) CreateCampaign(ctx context.Context, c *rain.Campaign) error {
	return pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error { return createCampaign(ctx, tx, c, 0) })
}

// createCampaign inserts c, merchant's (0: the operator's).
func createCampaign(ctx context.Context, tx pgx.Tx, c *rain.Campaign, merchant int64) error {
	amounts := make([]int64, len(c.Inventory))
	totals := make([]int64, len(c.Inventory))
	for i, st := range c.Inventory {
		amounts[i], totals[i] = st.Amount, st.Total
	}
	err := tx.QueryRow(ctx,
		`INSERT INTO campaign (name, start_time, end_time, buckets, merchant_id) VALUES ($1, $2, $3, $4, nullif($5, 0))
		 RETURNING id, created_at`,
		c.Name, c.StartTime, c.EndTime, c.K(), merchant).Scan(&c.ID, &c.CreatedAt)
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
}

// DeleteCampaign deletes campaign id and everything of it: the partition
// of its claims (detached, then dropped, so no writer waits), its archive
// and archived table, its actions and its inventory. The service never
// deletes a campaign; the tests and the benchmarks clean up with it. A
// partition it could not detach (ctx ended first) is left behind, its rows
// deleted.
func (s *Store) DeleteCampaign(ctx context.Context, id int64) error {
	detach := s.DetachClaims(ctx, id)
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var err error
		if detach == nil {
			_, err = tx.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{partition(id)}.Sanitize()+`, `+pgx.Identifier{archived(id)}.Sanitize())
		} else {
			_, err = tx.Exec(ctx, `DELETE FROM claim_log WHERE campaign_id = $1`, id)
		}
		if err != nil {
			return err
		}
		for _, q := range []string{`DELETE FROM claim_archive WHERE campaign_id = $1`,
			`DELETE FROM campaign_inventory WHERE campaign_id = $1`,
			`DELETE FROM campaign WHERE id = $1`, // campaign_action: ON DELETE CASCADE
		} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("delete campaign %d: %w", id, err)
	}
	return errors.Join(detach, err)
}

// Campaign reads a campaign with its inventory (opened counts as persisted).
// A missing campaign is a rain.ENOTFOUND error.
func (s *Store) Campaign(ctx context.Context, id int64) (*rain.Campaign, error) {
	o, err := s.CampaignFor(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	return o.Campaign, nil
}

func (s *Store) inventory(ctx context.Context, id int64) ([]rain.Stock, error) {
	rows, _ := s.DB.Query(ctx,
		`SELECT amount, total_count, opened_count FROM campaign_inventory
		 WHERE campaign_id = $1 ORDER BY amount DESC`, id)
	inv, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rain.Stock, error) {
		var st rain.Stock
		err := r.Scan(&st.Amount, &st.Total, &st.Opened)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("read inventory of campaign %d: %w", id, err)
	}
	return inv, nil
}

// Owned is a campaign as a merchant route reads it: with its owner and
// when it was ended early.
type Owned struct {
	*rain.Campaign
	Merchant *string    // the owner's name; nil: the operator's
	EndedAt  *time.Time // when a merchant ended it early (nil: it was not)
}

// CampaignFor reads campaign id with its inventory for a caller of scope
// (a merchant's id; 0: the operator, every campaign). A campaign that does
// not exist and one of another merchant are the same rain.ENOTFOUND error,
// from the same query: the caller cannot tell them apart.
func (s *Store) CampaignFor(ctx context.Context, id, scope int64) (*Owned, error) {
	o := &Owned{Campaign: &rain.Campaign{ID: id}}
	c := o.Campaign
	err := s.DB.QueryRow(ctx,
		`SELECT c.name, c.start_time, c.end_time, c.created_at, c.buckets, c.ended_at, m.name
		 FROM campaign c LEFT JOIN merchant m ON m.id = c.merchant_id
		 WHERE c.id = $1 AND ($2::bigint = 0 OR c.merchant_id = $2)`, id, scope).
		Scan(&c.Name, &c.StartTime, &c.EndTime, &c.CreatedAt, &c.Buckets, &o.EndedAt, &o.Merchant)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rain.Errorf(rain.ENOTFOUND, "campaign %d not found", id)
	}
	if err != nil {
		return nil, fmt.Errorf("read campaign %d: %w", id, err)
	}
	if c.Inventory, err = s.inventory(ctx, id); err != nil {
		return nil, err
	}
	return o, nil
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

// ActiveCampaignIDs lists the campaigns that have started by now and end
// after now − lookback (live ones and those that ended recently).
func (s *Store) ActiveCampaignIDs(ctx context.Context, now time.Time, lookback time.Duration) ([]int64, error) {
	rows, _ := s.DB.Query(ctx,
		`SELECT id FROM campaign WHERE start_time <= $1 AND end_time > $2 ORDER BY id`, now, now.Add(-lookback))
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list active campaigns: %w", err)
	}
	return ids, nil
}

// OpenedTotal is the number of claims of a campaign persisted in claim_log,
// as campaign_inventory counts them.
func (s *Store) OpenedTotal(ctx context.Context, id int64) (int64, error) {
	var n int64
	err := s.DB.QueryRow(ctx,
		`SELECT coalesce(sum(opened_count), 0)::bigint FROM campaign_inventory WHERE campaign_id = $1`, id).Scan(&n)
	return n, err
}

// InventoryAmounts returns, for those of the given campaigns that exist,
// the set of amounts of their inventory.
func (s *Store) InventoryAmounts(ctx context.Context, ids []int64) (map[int64]map[int64]struct{}, error) {
	rows, _ := s.DB.Query(ctx,
		`SELECT campaign_id, amount FROM campaign_inventory WHERE campaign_id = ANY($1)`, ids)
	found := make(map[int64]map[int64]struct{}, len(ids))
	var id, amount int64
	_, err := pgx.ForEachRow(rows, []any{&id, &amount}, func() error {
		if found[id] == nil {
			found[id] = make(map[int64]struct{}, 4)
		}
		found[id][amount] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load inventories of campaigns %v: %w", ids, err)
	}
	return found, nil
}
