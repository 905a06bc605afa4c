package pipeline

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	pgWriteClaims   = consumerMetrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="write_claims"}`)
	pgLoadInventory = consumerMetrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="load_inventory"}`)
)

// insertClaims inserts the claims claim_log lacks and adds exactly those to
// campaign_inventory.opened_count, in one statement (so one transaction):
// the data-modifying CTE's RETURNING rows are the newly inserted claims only,
// a redelivered claim hits ON CONFLICT DO NOTHING and is not counted. It
// returns how many rows were inserted.
//
// One INSERT … SELECT FROM unnest(arrays) measured faster here than CopyFrom
// into a TEMP staging table followed by the same INSERT … SELECT (README,
// "Consumer"; BenchmarkWriter in writer_bench_test.go measures both).
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

// Writer persists claims into PostgreSQL with exactly-once effect: a claim
// claim_log already holds changes nothing, so any batch may be written again
// (a redelivery, a retry after an error whose outcome is unknown, the
// reconciler and the consumer writing the same claim) without harm.
type Writer struct {
	db  *pgxpool.Pool
	inv *inventories
}

// NewWriter returns a writer over db.
func NewWriter(db *pgxpool.Pool) *Writer {
	registerConsumer()
	return &Writer{db: db, inv: newInventories(db)}
}

// WriteResult is what one Write did with its events.
type WriteResult struct {
	// Inserted claims were new to claim_log and were added to opened_count.
	Inserted int
	// Duplicates were already in claim_log, or repeated an earlier event of
	// the same batch (same campaign and user).
	Duplicates int
	// Rejected events were not written, each with its reason
	// (ReasonUnknownCampaign, ReasonUnknownAmount, ReasonRejected).
	Rejected []Rejection
}

// Rejection is an event Write did not write and why.
type Rejection struct {
	Index  int    // into the events given to Write
	Reason string // one of the Reason constants
	Err    error  // detail, for the logs and the dead-letter header
}

// Write persists evs in one transaction: the claims not yet in claim_log are
// inserted with their amount and claim time and only they are added to
// opened_count. Events of unknown campaigns or amounts are rejected before
// the write. Events repeating a (campaign, user) earlier in evs are counted
// as duplicates (the first one is written).
//
// If PostgreSQL refuses the batch for what a row holds (SQLSTATE classes 22
// and 23: a constraint or a bad value), the rows are written one by one and
// those refused are rejected, so one bad row never blocks the others.
//
// An error means PostgreSQL is unavailable or failed in a way worth
// retrying; the whole Write may be retried as it is.
func (w *Writer) Write(ctx context.Context, evs []Event) (WriteResult, error) {
	var res WriteResult
	if len(evs) == 0 {
		return res, nil
	}
	// Dedupe in Go: the same key twice in one INSERT … ON CONFLICT would
	// fail the statement ("cannot affect row a second time") if it were
	// DO UPDATE, and with DO NOTHING it is wasted work. Sorting gives every
	// transaction the same lock order (fewer deadlocks between replicas).
	idx := make([]int, len(evs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if c := cmp.Compare(evs[a].CampaignID, evs[b].CampaignID); c != 0 {
			return c
		}
		return cmp.Compare(evs[a].UserID, evs[b].UserID)
	})
	uniq := idx[:0] // in place: uniq never overtakes the loop
	for _, i := range idx {
		if len(uniq) > 0 {
			p := uniq[len(uniq)-1]
			if evs[p].CampaignID == evs[i].CampaignID && evs[p].UserID == evs[i].UserID {
				res.Duplicates++
				continue
			}
		}
		uniq = append(uniq, i)
	}

	batch := make([]Event, len(uniq))
	for k, i := range uniq {
		batch[k] = evs[i]
	}
	reasons, err := w.inv.Check(ctx, batch)
	if err != nil {
		return WriteResult{}, err
	}
	valid := uniq[:0]
	for k, i := range uniq {
		if reasons[k] != "" {
			res.Rejected = append(res.Rejected, Rejection{Index: i, Reason: reasons[k],
				Err: fmt.Errorf("campaign %d amount %d: %s", evs[i].CampaignID, evs[i].Amount, reasons[k])})
			continue
		}
		valid = append(valid, i)
	}
	if len(valid) == 0 {
		return res, nil
	}

	n, err := w.insert(ctx, evs, valid)
	if err == nil {
		res.Inserted = n
		res.Duplicates += len(valid) - n
		return res, nil
	}
	if !rowError(err) {
		return WriteResult{}, err
	}
	// One row (or more) is refused: find which, one statement per row.
	for _, i := range valid {
		n, err := w.insert(ctx, evs, []int{i})
		switch {
		case err == nil:
			res.Inserted += n
			res.Duplicates += 1 - n
		case rowError(err):
			res.Rejected = append(res.Rejected, Rejection{Index: i, Reason: ReasonRejected,
				Err: fmt.Errorf("campaign %d user %q amount %d: %w", evs[i].CampaignID, evs[i].UserID, evs[i].Amount, err)})
		default:
			return WriteResult{}, err
		}
	}
	return res, nil
}

// insert runs insertClaims for evs[i], i in idx.
func (w *Writer) insert(ctx context.Context, evs []Event, idx []int) (int, error) {
	campaigns := make([]int64, len(idx))
	users := make([]string, len(idx))
	amounts := make([]int64, len(idx))
	times := make([]time.Time, len(idx))
	for k, i := range idx {
		ev := &evs[i]
		campaigns[k], users[k], amounts[k] = ev.CampaignID, ev.UserID, ev.Amount
		times[k] = time.UnixMilli(ev.ClaimedAt).UTC()
	}
	start := time.Now()
	var n int64
	err := w.db.QueryRow(ctx, insertClaims, campaigns, users, amounts, times).Scan(&n)
	pgWriteClaims.UpdateDuration(start)
	if err != nil {
		return 0, fmt.Errorf("write %d claims: %w", len(idx), err)
	}
	return int(n), nil
}

// rowError reports whether PostgreSQL refused a statement for the data it
// carried (SQLSTATE class 22 data exception or 23 integrity constraint
// violation), which no retry fixes.
func rowError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) < 2 {
		return false
	}
	return pe.Code[:2] == "22" || pe.Code[:2] == "23"
}
