package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redpacket/rain"
)

// The archive of an ended campaign's claims (claim_archive,
// migrations/005_claim_log_by_campaign.sql): the steps that touch
// PostgreSQL, in the order internal/archive runs them. Each step can be run
// again after a failure: an archive that stopped half-way is finished by
// the next run.
//
//	StartArchive    claim_archive row: the payout reads answer ARCHIVED from now on
//	DetachClaims    the campaign's partition leaves claim_log (DETACH ... CONCURRENTLY)
//	ForEachDetached the export reads the detached table
//	FinishArchive   the export's count, checksum and location recorded; the
//	                table renamed claim_archived_<id>
//	DropArchived    the table dropped

// Archive is a campaign's row of claim_archive.
type Archive struct {
	Campaign  int64
	StartedAt time.Time
	// ArchivedAt is when the export was recorded; nil while the archive
	// has not finished (the claims are detached, or being detached).
	ArchivedAt *time.Time
	Claims     int64  // rows exported
	SHA256     string // of the export file, hex
	Location   string // where the export was written
	Dropped    bool   // the detached table was dropped
}

// Error is what the payout reads answer for an archived campaign: a
// rain.EARCHIVED error, with a message fit for the merchant (the export's
// location is the operator's, not shown).
func (a *Archive) Error() error {
	if a.ArchivedAt == nil {
		return rain.Errorf(rain.EARCHIVED, "the claims of campaign %d are being archived (since %s); they are no longer served here",
			a.Campaign, a.StartedAt.UTC().Format(time.RFC3339))
	}
	return rain.Errorf(rain.EARCHIVED, "the claims of campaign %d were archived at %s (%d claims, export sha256 %s); they are no longer served here",
		a.Campaign, a.ArchivedAt.UTC().Format(time.RFC3339), a.Claims, a.SHA256)
}

const archiveColumns = `campaign_id, started_at, archived_at, coalesce(claims, 0), coalesce(sha256, ''), coalesce(location, ''), dropped`

func (a *Archive) scan(row pgx.Row) error {
	return row.Scan(&a.Campaign, &a.StartedAt, &a.ArchivedAt, &a.Claims, &a.SHA256, &a.Location, &a.Dropped)
}

// partition is the name of campaign id's partition of claim_log, and
// archived that of its table once archived.
func partition(id int64) string { return "claim_log_" + strconv.FormatInt(id, 10) }
func archived(id int64) string  { return "claim_archived_" + strconv.FormatInt(id, 10) }

// ArchiveOf returns the archive of campaign id, or nil if its claims were
// never archived.
func (s *Store) ArchiveOf(ctx context.Context, id int64) (*Archive, error) {
	var a Archive
	err := a.scan(s.DB.QueryRow(ctx, `SELECT `+archiveColumns+` FROM claim_archive WHERE campaign_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("archive of campaign %d: %w", id, err)
	}
	return &a, nil
}

// Archivable lists the campaigns whose window ended before before and
// whose claims are not archived yet, or not finished archiving, oldest
// first.
func (s *Store) Archivable(ctx context.Context, before time.Time) ([]int64, error) {
	rows, _ := s.DB.Query(ctx, `SELECT c.id FROM campaign c LEFT JOIN claim_archive a ON a.campaign_id = c.id
		WHERE c.end_time < $1 AND (a.archived_at IS NULL) ORDER BY c.end_time, c.id`, before)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list archivable campaigns: %w", err)
	}
	return ids, nil
}

// StartArchive begins (or resumes) the archive of campaign id: it records
// it in claim_archive, after which the payout reads answer ARCHIVED, and
// returns the record. The campaign must have ended before notAfter, so no
// claim can still come to it (none is claimed after the end; the
// reconciler writes late ones only within its lookback), and claim_log
// must hold as many claims as its opened_count says. rain.ENOTFOUND: no
// such campaign; rain.EINVALID: it ended too recently, or the counts
// differ (reconcile it first).
func (s *Store) StartArchive(ctx context.Context, id int64, notAfter time.Time) (*Archive, error) {
	var a Archive
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var end time.Time
		err := tx.QueryRow(ctx, `SELECT end_time FROM campaign WHERE id = $1 FOR UPDATE`, id).Scan(&end)
		if errors.Is(err, pgx.ErrNoRows) {
			return rain.Errorf(rain.ENOTFOUND, "campaign %d not found", id)
		}
		if err != nil {
			return fmt.Errorf("lock campaign %d: %w", id, err)
		}
		err = a.scan(tx.QueryRow(ctx, `SELECT `+archiveColumns+` FROM claim_archive WHERE campaign_id = $1`, id))
		if err == nil {
			return nil // resumed
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("archive of campaign %d: %w", id, err)
		}
		if !end.Before(notAfter) {
			return rain.Errorf(rain.EINVALID, "campaign %d ends at %s; its claims can be archived once it ended before %s",
				id, end.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
		}
		// One statement, one snapshot: a batch adds its rows and its count
		// in one transaction, so the two agree unless a claim was lost.
		var rows, opened int64
		err = tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM claim_log WHERE campaign_id = $1),
			(SELECT coalesce(sum(opened_count), 0)::bigint FROM campaign_inventory WHERE campaign_id = $1)`, id).Scan(&rows, &opened)
		if err != nil {
			return fmt.Errorf("count claims of campaign %d: %w", id, err)
		}
		if rows != opened {
			return rain.Errorf(rain.EINVALID, "campaign %d: claim_log holds %d claims, its opened_count %d; reconcile it before archiving", id, rows, opened)
		}
		return a.scan(tx.QueryRow(ctx, `INSERT INTO claim_archive (campaign_id) VALUES ($1) RETURNING `+archiveColumns, id))
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// detachLockKey is the advisory lock every detach of a claim_log
// partition holds: PostgreSQL lets one partition of a table be pending
// detach at a time, so detaches (archives, the tools' clean-ups) go one
// after the other rather than fail.
const detachLockKey int64 = 0x7261696e64657463 // "raindetc"

// DetachClaims takes campaign id's partition out of claim_log with DETACH
// PARTITION ... CONCURRENTLY. That does not block the writer (SHARE UPDATE
// EXCLUSIVE on claim_log; ACCESS EXCLUSIVE only on the partition, which no
// writer uses: the campaign has ended); it waits for the transactions of
// the database older than its second step to end, and a campaign created
// meanwhile (its partition's ATTACH takes the same lock) waits for it. A detach that was interrupted (any campaign's: one blocks every
// other) is finished first (FINALIZE); a partition already detached is
// left as it is.
func (s *Store) DetachClaims(ctx context.Context, id int64) error {
	_, err := s.WithLock(ctx, detachLockKey, true, func(ctx context.Context) error {
		rows, _ := s.DB.Query(ctx, `SELECT c.relname, i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'claim_log'::regclass AND (i.inhdetachpending OR c.relname = $1)
			ORDER BY i.inhdetachpending DESC`, partition(id))
		type part struct {
			Name    string
			Pending bool
		}
		parts, err := pgx.CollectRows(rows, pgx.RowToStructByPos[part])
		if err != nil {
			return fmt.Errorf("partition of campaign %d: %w", id, err)
		}
		for _, p := range parts {
			how := "CONCURRENTLY"
			if p.Pending {
				how = "FINALIZE"
			}
			// No arguments: pgx sends it with the simple protocol, a
			// statement of its own outside any transaction block, as
			// CONCURRENTLY requires.
			if _, err := s.DB.Exec(ctx, `ALTER TABLE claim_log DETACH PARTITION `+pgx.Identifier{p.Name}.Sanitize()+` `+how); err != nil {
				return fmt.Errorf("detach %s (%s): %w", p.Name, how, err)
			}
		}
		return nil
	})
	return err
}

// Detached is a claim as the archive exports it.
type Detached struct {
	User        string
	Amount      int64
	ClaimedAt   time.Time
	PersistedAt time.Time
}

// ForEachDetached calls fn for every claim of campaign id's detached
// partition, in user id order (claim_log's), and returns how many.
func (s *Store) ForEachDetached(ctx context.Context, id int64, fn func(Detached) error) (int64, error) {
	rows, _ := s.DB.Query(ctx, `SELECT user_id, amount, claimed_at, persisted_at FROM `+
		pgx.Identifier{partition(id)}.Sanitize()+` ORDER BY user_id`)
	var (
		c Detached
		n int64
	)
	_, err := pgx.ForEachRow(rows, []any{&c.User, &c.Amount, &c.ClaimedAt, &c.PersistedAt}, func() error {
		n++
		return fn(c)
	})
	if err != nil {
		return n, fmt.Errorf("export claims of campaign %d: %w", id, err)
	}
	return n, nil
}

// FinishArchive records the export of campaign id's claims (claims rows,
// the file's sha256 and location) once it checked that the detached
// partition holds that many and so does opened_count, and renames the
// partition claim_archived_<id>.
func (s *Store) FinishArchive(ctx context.Context, id int64, claims int64, sha256, location string) (*Archive, error) {
	var a Archive
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		table := pgx.Identifier{partition(id)}.Sanitize()
		var rows, opened int64
		err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+table+`),
			(SELECT coalesce(sum(opened_count), 0)::bigint FROM campaign_inventory WHERE campaign_id = $1)`, id).Scan(&rows, &opened)
		if err != nil {
			return fmt.Errorf("count detached claims of campaign %d: %w", id, err)
		}
		if rows != claims || opened != claims {
			return fmt.Errorf("campaign %d: exported %d claims, the detached table holds %d, opened_count %d", id, claims, rows, opened)
		}
		if _, err := tx.Exec(ctx, `ALTER TABLE `+table+` RENAME TO `+pgx.Identifier{archived(id)}.Sanitize()); err != nil {
			return fmt.Errorf("rename the detached claims of campaign %d: %w", id, err)
		}
		return a.scan(tx.QueryRow(ctx, `UPDATE claim_archive SET archived_at = now(), claims = $2, sha256 = $3, location = $4
			WHERE campaign_id = $1 AND archived_at IS NULL RETURNING `+archiveColumns, id, claims, sha256, location))
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// DropArchived drops the table of campaign id's archived claims. It is
// no longer part of claim_log, so this takes no lock on claim_log.
func (s *Store) DropArchived(ctx context.Context, id int64) error {
	return pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE claim_archive SET dropped = true WHERE campaign_id = $1 AND archived_at IS NOT NULL`, id)
		if err != nil {
			return fmt.Errorf("record the drop of campaign %d's claims: %w", id, err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("campaign %d: its claims are not archived; nothing dropped", id)
		}
		if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{archived(id)}.Sanitize()); err != nil {
			return fmt.Errorf("drop the archived claims of campaign %d: %w", id, err)
		}
		return nil
	})
}
