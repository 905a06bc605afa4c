package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
)

// endedCampaign is a campaign that ended two days ago with n claims
// written through the store (u000, u001, ...; amounts 5 and 20).
func endedCampaign(t *testing.T, db *pgxpool.Pool, n int) int64 {
	t.Helper()
	now := time.Now()
	id := testenv.NewCampaign(t, db, now.Add(-72*time.Hour), now.Add(-48*time.Hour), map[int64]int64{5: 1000, 20: 1000})
	if n > 0 {
		var c postgres.Claims
		for i := range n {
			c.Append(id, fmt.Sprintf("u%03d", i), []int64{5, 20}[i%2], now.Add(-50*time.Hour).Add(time.Duration(i)*time.Millisecond).Truncate(time.Millisecond))
		}
		if err := (&postgres.Store{DB: db}).CopyClaims(context.Background(), &c); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// partitionOf is the table that holds campaign id's claims, "" when
// claim_log has none for it.
func partitionOf(t *testing.T, db *pgxpool.Pool, id int64) string {
	t.Helper()
	var name string
	err := db.QueryRow(context.Background(), `SELECT coalesce(min(c.relname), '') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'claim_log'::regclass AND c.relname = $1`, fmt.Sprintf("claim_log_%d", id)).Scan(&name)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// The steps of an archive one by one, with what the payout reads answer
// between them, and the refusals of StartArchive.
func TestArchiveSteps(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := &postgres.Store{DB: db}
	ctx := context.Background()
	id := endedCampaign(t, db, 30)
	now := time.Now()

	// Refused: no such campaign; ended within the guard; counts that
	// disagree (a claim lost between claim_log and opened_count).
	if _, err := s.StartArchive(ctx, 1<<62, now); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Fatalf("unknown campaign: %v", err)
	}
	if _, err := s.StartArchive(ctx, id, now.Add(-49*time.Hour)); rain.ErrorCode(err) != rain.EINVALID || !strings.Contains(err.Error(), "once it ended before") {
		t.Fatalf("ended too recently: %v", err)
	}
	if _, err := db.Exec(ctx, `UPDATE campaign_inventory SET opened_count = opened_count + 1 WHERE campaign_id = $1 AND amount = 5`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartArchive(ctx, id, now); rain.ErrorCode(err) != rain.EINVALID || !strings.Contains(err.Error(), "reconcile") {
		t.Fatalf("counts differ: %v", err)
	}
	if _, err := db.Exec(ctx, `UPDATE campaign_inventory SET opened_count = opened_count - 1 WHERE campaign_id = $1 AND amount = 5`, id); err != nil {
		t.Fatal(err)
	}
	if a, err := s.ArchiveOf(ctx, id); a != nil || err != nil {
		t.Fatalf("a refused archive left %+v, %v", a, err)
	}
	if page, _, err := s.ClaimsPage(ctx, id, 0, "", 10); err != nil || len(page) != 10 {
		t.Fatalf("claims before the archive: %d, %v", len(page), err)
	}

	// Started: the payout reads answer ARCHIVED, though the claims are
	// still in claim_log; starting again resumes.
	a, err := s.StartArchive(ctx, id, now)
	if err != nil || a.ArchivedAt != nil || a.Campaign != id {
		t.Fatalf("start: %+v, %v", a, err)
	}
	if again, err := s.StartArchive(ctx, id, now); err != nil || again.StartedAt != a.StartedAt {
		t.Fatalf("start again: %+v, %v", again, err)
	}
	archivedAnswers(t, s, id, "being archived")

	if err := s.DetachClaims(ctx, id); err != nil {
		t.Fatal(err)
	}
	if p := partitionOf(t, db, id); p != "" {
		t.Fatalf("still attached: %s", p)
	}
	if err := s.DetachClaims(ctx, id); err != nil { // already detached: nothing to do
		t.Fatal(err)
	}
	var got []string
	n, err := s.ForEachDetached(ctx, id, func(c postgres.Detached) error {
		got = append(got, c.User)
		return nil
	})
	if err != nil || n != 30 || got[0] != "u000" || got[29] != "u029" {
		t.Fatalf("detached claims: %d %v, %v", n, got, err)
	}

	// The export is checked against the detached table and opened_count.
	if _, err := s.FinishArchive(ctx, id, 29, strings.Repeat("a", 64), "/x/claims.csv.gz"); err == nil {
		t.Fatal("finish with a count the table does not hold: no error")
	}
	done, err := s.FinishArchive(ctx, id, 30, strings.Repeat("a", 64), "/x/claims.csv.gz")
	if err != nil || done.ArchivedAt == nil || done.Claims != 30 || done.Dropped {
		t.Fatalf("finish: %+v, %v", done, err)
	}
	archivedAnswers(t, s, id, "were archived at")
	if err := s.DropArchived(ctx, id); err != nil {
		t.Fatal(err)
	}
	var tables int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname IN ($1, $2)`,
		fmt.Sprintf("claim_log_%d", id), fmt.Sprintf("claim_archived_%d", id)).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("tables left after the drop: %d, %v", tables, err)
	}
	if a, err := s.ArchiveOf(ctx, id); err != nil || !a.Dropped || a.Claims != 30 {
		t.Fatalf("archive after the drop: %+v, %v", a, err)
	}
	// The campaign's counts stand: GET /campaign/{id} still says 30.
	if n, err := s.OpenedTotal(ctx, id); err != nil || n != 30 {
		t.Fatalf("opened total after the archive: %d, %v", n, err)
	}
}

// archivedAnswers checks that both payout reads answer rain.EARCHIVED with
// a message holding want.
func archivedAnswers(t *testing.T, s *postgres.Store, id int64, want string) {
	t.Helper()
	ctx := context.Background()
	_, _, err := s.ClaimsPage(ctx, id, 0, "", 10)
	if rain.ErrorCode(err) != rain.EARCHIVED || !strings.Contains(rain.ErrorMessage(err), want) {
		t.Fatalf("claims page: %v, want ARCHIVED (%s)", err, want)
	}
	if _, ok, err := s.ClaimOf(ctx, id, 0, "u001"); ok || rain.ErrorCode(err) != rain.EARCHIVED {
		t.Fatalf("claim of a user: %v %v, want ARCHIVED", ok, err)
	}
	if _, ok, err := s.ClaimOf(ctx, id, 0, "nobody"); ok || rain.ErrorCode(err) != rain.EARCHIVED {
		t.Fatalf("claim of a user without one: %v %v, want ARCHIVED, not none", ok, err)
	}
}

// A detach left half-done (interrupted while it waited for a reader) is
// finished by the next one, whichever campaign it is for; PostgreSQL
// refuses a second concurrent detach while one is pending.
func TestDetachFinishesAnInterruptedOne(t *testing.T) {
	t.Parallel()
	// A database of its own: the reader below would hold up the detaches
	// of the other packages' tests (a detach waits for every older
	// transaction of its database), and theirs could finish this one's.
	db := testenv.OwnPostgres(t)
	s := &postgres.Store{DB: db}
	ctx := context.Background()
	first, second := endedCampaign(t, db, 3), endedCampaign(t, db, 3)

	// A reader holds claim_log in an open transaction; the detach of the
	// first campaign gives up waiting for it and stays pending.
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM claim_log WHERE campaign_id = $1`, second); err != nil {
		t.Fatal(err)
	}
	// The detach is interrupted once it waits for the reader: its first
	// transaction (the partition marked pending) has committed then. The
	// reader ends only after the interrupted statement is gone from the
	// server, or the detach could still finish.
	short, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.DetachClaims(short, first) }()
	detaching := func(waiting bool) bool {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'
			AND (NOT $2 OR wait_event = 'virtualxid')`, fmt.Sprintf(`ALTER TABLE claim_log DETACH PARTITION "claim_log_%d" CONCURRENTLY`, first), waiting).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) { return detaching(true), "the detach waiting for the reader" })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("detach returned while a reader held claim_log")
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) { return !detaching(false), "the interrupted detach gone" })
	_ = tx.Rollback(ctx)
	var pending bool
	if err := db.QueryRow(ctx, `SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass($1)`,
		fmt.Sprintf("claim_log_%d", first)).Scan(&pending); err != nil || !pending {
		t.Fatalf("first partition pending: %v, %v", pending, err)
	}
	if err := s.DetachClaims(ctx, second); err != nil {
		t.Fatal(err)
	}
	if p, q := partitionOf(t, db, first), partitionOf(t, db, second); p != "" || q != "" {
		t.Fatalf("still attached: %q %q", p, q)
	}
}

// The statements that write claims refuse a claim on an amount its
// campaign's inventory lacks (claim_log has no foreign key; they hold its
// invariant once a batch), and write nothing of the batch.
func TestClaimAmountOutsideInventory(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := &postgres.Store{DB: db}
	ctx := context.Background()
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 10})
	other := testenv.LiveCampaign(t, db, map[int64]int64{7: 10})
	at := time.Now().Truncate(time.Millisecond)
	for _, write := range []struct {
		name string
		fn   func(*postgres.Claims) error
	}{
		{"copy", func(c *postgres.Claims) error { return s.CopyClaims(ctx, c) }},
		{"insert", func(c *postgres.Claims) error { _, err := s.InsertClaims(ctx, c); return err }},
	} {
		var c postgres.Claims
		c.Append(id, write.name+"-ok", 5, at)
		c.Append(id, write.name+"-bad", 7, at) // 7 is the other campaign's amount
		err := write.fn(&c)
		if !postgres.IsDataError(err) || errors.Is(err, postgres.ErrClaimed) || !strings.Contains(err.Error(), "not in its campaign's inventory") {
			t.Fatalf("%s: %v, want a data error", write.name, err)
		}
	}
	testenv.AssertState(t, db, id, map[string]testenv.Row{})
	testenv.AssertState(t, db, other, map[string]testenv.Row{})
}

// DeleteCampaign (the tools' clean-up) takes the partition with the rows.
func TestDeleteCampaign(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	id := endedCampaign(t, db, 5)
	if err := (&postgres.Store{DB: db}).DeleteCampaign(ctx, id); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM campaign WHERE id = $1) + (SELECT count(*) FROM pg_class WHERE relname = $2)`,
		id, fmt.Sprintf("claim_log_%d", id)).Scan(&left); err != nil || left != 0 {
		t.Fatalf("left behind: %d, %v", left, err)
	}
}
