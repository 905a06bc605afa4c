package archive_test

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/archive"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
)

// ended is a campaign that ended two days ago with the claims of users
// (amounts 5 and 20 in turn), written as the consumer writes them; it
// returns the rows an export must hold, header first, in user id order.
func ended(t *testing.T, db *pgxpool.Pool, users ...string) (int64, [][]string) {
	return endedAt(t, db, time.Now().Add(-48*time.Hour), users...)
}

// endedAt is ended with the campaign's end at end.
func endedAt(t *testing.T, db *pgxpool.Pool, end time.Time, users ...string) (int64, [][]string) {
	t.Helper()
	id := testenv.NewCampaign(t, db, end.Add(-24*time.Hour), end, map[int64]int64{5: 1000, 20: 1000})
	var c postgres.Claims
	for i, u := range users {
		c.Append(id, u, []int64{5, 20}[i%2], end.Add(-time.Hour).Add(time.Duration(i)*time.Millisecond).Truncate(time.Millisecond))
	}
	if err := (&postgres.Store{DB: db}).CopyClaims(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	want := [][]string{archive.Header}
	rows, err := db.Query(context.Background(), `SELECT user_id, amount::text, claimed_at, persisted_at FROM claim_log WHERE campaign_id = $1 ORDER BY user_id`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var u, a string
		var at, pat time.Time
		if err := rows.Scan(&u, &a, &at, &pat); err != nil {
			t.Fatal(err)
		}
		want = append(want, []string{u, a, at.UTC().Format(archive.TimeLayout), pat.UTC().Format(archive.TimeLayout)})
	}
	return id, want
}

// readExport returns the records of a gzipped CSV export and its sha256.
func readExport(t *testing.T, path string) ([][]string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return recs, hex.EncodeToString(sum[:])
}

// An archive exports every claim (fields with commas, quotes and non-ASCII
// intact) to a file whose checksum it records, detaches the claims and
// keeps their table; run again with Drop, it drops the table and changes
// nothing else.
func TestCampaign(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := &postgres.Store{DB: db}
	ctx := context.Background()
	id, want := ended(t, db, "b,1", `a"2`, "用户3", "c4", "d5")
	dir := filepath.Join(t.TempDir(), "exports")
	o := archive.Options{Dir: dir, Before: time.Now().Add(-24 * time.Hour)}

	res, err := archive.Campaign(ctx, s, id, o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("claims-%d.csv.gz", id))
	if res.Campaign != id || res.Claims != 5 || res.File != path || res.Dropped || res.Earlier {
		t.Fatalf("result %+v", res)
	}
	got, sum := readExport(t, path)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("export:\n got %q\nwant %q", got, want)
	}
	if sum != res.SHA256 {
		t.Fatalf("file sha256 %s, recorded %s", sum, res.SHA256)
	}
	var kept int64
	if err := db.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM claim_archived_%d`, id)).Scan(&kept); err != nil || kept != 5 {
		t.Fatalf("kept table: %d rows, %v", kept, err)
	}
	if _, _, err := s.ClaimsPage(ctx, id, 0, "", 10); rain.ErrorCode(err) != rain.EARCHIVED {
		t.Fatalf("claims of the archived campaign: %v", err)
	}

	o.Drop = true
	again, err := archive.Campaign(ctx, s, id, o)
	if err != nil || !again.Earlier || !again.Dropped || again.SHA256 != res.SHA256 || again.Claims != 5 {
		t.Fatalf("again with Drop: %+v, %v", again, err)
	}
	if err := db.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM claim_archived_%d`, id)).Scan(&kept); err == nil {
		t.Fatal("the archived table is still there after Drop")
	}
}

// An archive that stopped half-way (its export could not be written) is
// finished by the next run: the claims stay detached and unserved in
// between, and the export holds them all.
func TestCampaignResumes(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := &postgres.Store{DB: db}
	ctx := context.Background()
	id, want := ended(t, db, "u1", "u2", "u3")
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	o := archive.Options{Dir: notDir, Before: time.Now().Add(-24 * time.Hour), Drop: true}
	if _, err := archive.Campaign(ctx, s, id, o); err == nil {
		t.Fatal("an export into a file path: no error")
	}
	a, err := s.ArchiveOf(ctx, id)
	if err != nil || a == nil || a.ArchivedAt != nil {
		t.Fatalf("after the failed export: %+v, %v", a, err)
	}
	if _, ok, err := s.ClaimOf(ctx, id, 0, "u1"); ok || rain.ErrorCode(err) != rain.EARCHIVED {
		t.Fatalf("claim during the archive: %v %v", ok, err)
	}

	o.Dir = t.TempDir()
	res, err := archive.Campaign(ctx, s, id, o)
	if err != nil || res.Claims != 3 || !res.Dropped || res.Earlier {
		t.Fatalf("second run: %+v, %v", res, err)
	}
	if got, _ := readExport(t, res.File); !reflect.DeepEqual(got, want) {
		t.Fatalf("export:\n got %q\nwant %q", got, want)
	}
}

// Ended archives the campaigns that ended before the cut-off, and leaves
// the later ones and the live ones alone.
func TestEnded(t *testing.T) {
	t.Parallel()
	// A database of its own: an archive of every ended campaign would
	// drop the other packages' campaigns (some end before 1990) under
	// their running tests.
	db := testenv.OwnPostgres(t)
	s := &postgres.Store{DB: db}
	ctx := context.Background()
	end := time.Date(1990, 1, 2, 0, 0, 0, 0, time.UTC)
	old, _ := endedAt(t, db, end, "x")
	later, _ := endedAt(t, db, end.Add(2*time.Hour), "y")
	live := testenv.LiveCampaign(t, db, map[int64]int64{5: 10})
	res, err := archive.Ended(ctx, s, archive.Options{Dir: t.TempDir(), Before: end.Add(time.Hour), Drop: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Campaign != old || res[0].Claims != 1 || !res[0].Dropped {
		t.Fatalf("archived %+v, want campaign %d alone", res, old)
	}
	for _, id := range []int64{later, live} {
		if a, err := s.ArchiveOf(ctx, id); a != nil || err != nil {
			t.Fatalf("campaign %d archived: %+v %v", id, a, err)
		}
	}
}
