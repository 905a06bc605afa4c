package writer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/testenv"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/writer"
)

// BenchmarkWriter compares the two ways NOTES.md describes of writing one
// batch of claims with exactly-once effect, with 10 % of each batch
// redelivered from earlier batches:
//
//	unnest: writer.Writer (one INSERT … SELECT FROM unnest(…) ON CONFLICT
//	        DO NOTHING, opened_count bumped from the CTE's RETURNING rows)
//	copy:   CopyFrom into a TEMP staging table (ON COMMIT DELETE ROWS), then
//	        the same INSERT … SELECT FROM the staging table, in a transaction
//
// go test -run '^$' -bench Writer -benchtime 100x ./pipeline/
func BenchmarkWriter(b *testing.B) {
	db := testenv.Postgres(b)
	for _, size := range []int{500, 5000} {
		for _, method := range []string{"unnest", "copy"} {
			b.Run(fmt.Sprintf("%s/batch=%d", method, size), func(b *testing.B) {
				id := testenv.LiveCampaign(b, db, map[int64]int64{1: 50_000_000, 5: 30_000_000, 20: 20_000_000})
				w := writer.New(&postgres.Store{DB: db})
				ctx := context.Background()
				batches := make([][]pipeline.Event, b.N)
				var prev []pipeline.Event
				for i := range batches {
					batches[i] = benchBatch(id, i, size, prev)
					prev = batches[i]
				}
				b.ResetTimer()
				start := time.Now()
				inserted := 0
				for i := 0; i < b.N; i++ {
					var n int
					var err error
					if method == "unnest" {
						var res writer.Result
						res, err = w.Write(ctx, batches[i])
						n = res.Inserted
					} else {
						n, err = copyWrite(ctx, db, batches[i])
					}
					if err != nil {
						b.Fatal(err)
					}
					inserted += n
				}
				el := time.Since(start)
				b.ReportMetric(float64(b.N*size)/el.Seconds(), "rows/s")
				b.ReportMetric(float64(inserted)/el.Seconds(), "inserted/s")
			})
		}
	}
}

// benchBatch is batch i of size events, 10 % of them taken from prev (a
// redelivery), the rest new users.
func benchBatch(id int64, i, size int, prev []pipeline.Event) []pipeline.Event {
	evs := make([]pipeline.Event, 0, size)
	now := time.Now().UnixMilli()
	amounts := [...]int64{1, 1, 1, 5, 5, 20}
	for len(evs) < size {
		if len(prev) > 0 && len(evs)%10 == 9 {
			evs = append(evs, prev[rand.IntN(len(prev))])
			continue
		}
		evs = append(evs, pipeline.Event{CampaignID: id, UserID: fmt.Sprintf("bench-%d-%d", i, len(evs)),
			Amount: amounts[rand.IntN(len(amounts))], ClaimedAt: now})
	}
	return evs
}

const copyInsert = `
WITH ins AS (
	INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at)
	SELECT campaign_id, user_id, amount, claimed_at FROM claim_stage
	ON CONFLICT (campaign_id, user_id) DO NOTHING
	RETURNING campaign_id, amount
), opened AS (
	UPDATE campaign_inventory i SET opened_count = i.opened_count + n.n
	FROM (SELECT campaign_id, amount, count(*) AS n FROM ins GROUP BY campaign_id, amount) n
	WHERE i.campaign_id = n.campaign_id AND i.amount = n.amount
	RETURNING n.n
)
SELECT coalesce(sum(n), 0)::bigint FROM opened`

// copyWrite is the staging-table variant the Writer was measured against.
func copyWrite(ctx context.Context, db *pgxpool.Pool, evs []pipeline.Event) (int, error) {
	seen := make(map[string]bool, len(evs))
	rows := make([][]any, 0, len(evs))
	for _, ev := range evs {
		if seen[ev.UserID] {
			continue
		}
		seen[ev.UserID] = true
		rows = append(rows, []any{ev.CampaignID, ev.UserID, ev.Amount, time.UnixMilli(ev.ClaimedAt)})
	}
	var n int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS claim_stage
			(campaign_id bigint, user_id text, amount bigint, claimed_at timestamptz) ON COMMIT DELETE ROWS`); err != nil {
			return err
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"claim_stage"},
			[]string{"campaign_id", "user_id", "amount", "claimed_at"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		return tx.QueryRow(ctx, copyInsert).Scan(&n)
	})
	return int(n), err
}
