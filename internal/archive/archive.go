// Package archive retires the claims of ended campaigns while the service
// runs (`consumer archive`, docs/operations.md): a campaign's partition of
// claim_log is detached without blocking the writer, its claims are
// exported to a gzipped CSV file whose row count and checksum are recorded
// in claim_archive, and the detached table is then kept or dropped. From
// the first step on, the payout routes answer ARCHIVED for the campaign.
package archive

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redpacket/rain/internal/postgres"
)

// Options say where exports go and which campaigns may be archived.
type Options struct {
	// Dir is the directory of the export files, claims-<id>.csv.gz
	// (created if missing).
	Dir string
	// Before: only campaigns that ended before it are archived. A campaign
	// the reconciler may still write claims to (ended within
	// RECONCILE_LOOKBACK) must not be.
	Before time.Time
	// Drop drops the detached table once the export is recorded; without
	// it the table is kept as claim_archived_<id>.
	Drop bool
}

// Result is what archiving one campaign did.
type Result struct {
	Campaign int64  `json:"campaign_id"`
	Claims   int64  `json:"claims"`
	File     string `json:"file"`
	SHA256   string `json:"sha256"`
	Dropped  bool   `json:"dropped"`
	// Earlier: an earlier run had exported it (this one dropped the table,
	// with Drop, or did nothing).
	Earlier bool `json:"earlier,omitempty"`
}

// Header is the first line of an export; the columns of the payout CSV
// (GET /campaign/{id}/claims), then when each claim reached PostgreSQL.
var Header = []string{"user_id", "amount", "claimed_at", "persisted_at"}

// TimeLayout is the export's time format, the payout CSV's: UTC,
// milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Campaign archives the claims of campaign id, or finishes an archive of it
// that stopped half-way.
func Campaign(ctx context.Context, s *postgres.Store, id int64, o Options) (Result, error) {
	a, err := s.StartArchive(ctx, id, o.Before)
	if err != nil {
		return Result{Campaign: id}, err
	}
	res := Result{Campaign: id, Earlier: a.ArchivedAt != nil}
	if a.ArchivedAt == nil {
		if err := s.DetachClaims(ctx, id); err != nil {
			return res, err
		}
		path, n, sum, err := export(ctx, s, id, o.Dir)
		if err != nil {
			return res, err
		}
		if a, err = s.FinishArchive(ctx, id, n, sum, path); err != nil {
			return res, err
		}
	}
	if o.Drop && !a.Dropped {
		if err := s.DropArchived(ctx, id); err != nil {
			return res, err
		}
		a.Dropped = true
	}
	res.Claims, res.File, res.SHA256, res.Dropped = a.Claims, a.Location, a.SHA256, a.Dropped
	return res, nil
}

// Ended archives every campaign that ended before o.Before and is not
// archived yet, oldest first; a campaign that fails does not stop the
// others (its error is joined into the one returned).
func Ended(ctx context.Context, s *postgres.Store, o Options) ([]Result, error) {
	ids, err := s.Archivable(ctx, o.Before)
	if err != nil {
		return nil, err
	}
	var (
		out  []Result
		errs []error
	)
	for _, id := range ids {
		r, err := Campaign(ctx, s, id, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("campaign %d: %w", id, err))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// export writes the detached claims of campaign id into dir, as
// claims-<id>.csv.gz, complete on disk (written to a temporary name,
// synced, renamed, the directory synced) before it returns the file's
// absolute path, the rows and the file's sha256. A run that exports again
// (the last one stopped before recording) writes the same bytes: the
// detached table no longer changes and gzip stamps no time.
func export(ctx context.Context, s *postgres.Store, id int64, dir string) (path string, n int64, sum string, err error) {
	if dir, err = filepath.Abs(dir); err != nil {
		return "", 0, "", err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", 0, "", fmt.Errorf("export: %w", err)
	}
	path = filepath.Join(dir, "claims-"+strconv.FormatInt(id, 10)+".csv.gz")
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return "", 0, "", fmt.Errorf("export: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	zw := gzip.NewWriter(io.MultiWriter(f, h))
	w := csv.NewWriter(zw)
	w.UseCRLF = true // RFC 4180, as the payout CSV
	if err := w.Write(Header); err != nil {
		return "", 0, "", fmt.Errorf("export: %w", err)
	}
	rec := make([]string, len(Header))
	n, err = s.ForEachDetached(ctx, id, func(c postgres.Detached) error {
		rec[0], rec[1] = c.User, strconv.FormatInt(c.Amount, 10)
		rec[2], rec[3] = c.ClaimedAt.UTC().Format(TimeLayout), c.PersistedAt.UTC().Format(TimeLayout)
		return w.Write(rec)
	})
	if err != nil {
		return "", 0, "", err
	}
	w.Flush()
	if err := errors.Join(w.Error(), zw.Close(), f.Sync(), f.Close()); err != nil {
		return "", 0, "", fmt.Errorf("export %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", 0, "", fmt.Errorf("export: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return "", 0, "", fmt.Errorf("export: %w", err)
	}
	return path, n, hex.EncodeToString(h.Sum(nil)), nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
