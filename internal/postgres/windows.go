package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CampaignWindow is a campaign's id, window and bucket count.
type CampaignWindow struct {
	ID         int64
	Start, End time.Time
	Created    time.Time // the row's identity in Redis (its keys' meta 'row')
	Buckets    int
	// Settled: it was created longer than the settle time before the read
	// (by PostgreSQL's clock), so every lower id that will ever exist is
	// committed and in the same read.
	Settled bool
}

// CampaignWindows lists the campaigns with an id above after, by id, each
// settled or not by the time settle (see CampaignWindow), with
// their windows (the whole table from 0: 24 bytes a campaign in memory).
func (s *Store) CampaignWindows(ctx context.Context, after int64, settle time.Duration) ([]CampaignWindow, error) {
	rows, _ := s.DB.Query(ctx, `SELECT id, start_time, end_time, created_at, buckets, created_at < statement_timestamp() - $2::interval
		FROM campaign WHERE id > $1 ORDER BY id`, after, settle)
	var w []CampaignWindow
	var c CampaignWindow
	_, err := pgx.ForEachRow(rows, []any{&c.ID, &c.Start, &c.End, &c.Created, &c.Buckets, &c.Settled}, func() error {
		w = append(w, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list campaign windows: %w", err)
	}
	return w, nil
}
