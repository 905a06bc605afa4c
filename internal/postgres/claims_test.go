package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
)

func TestCopyClaims(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	s := &postgres.Store{DB: db}
	ctx := context.Background()
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 10, 20: 10})
	at := time.Now().Truncate(time.Millisecond).UTC()
	claims := func(users ...string) *postgres.Claims {
		var c postgres.Claims
		for i, u := range users {
			c.Append(id, u, []int64{5, 20}[i%2], at)
		}
		return &c
	}
	want := map[string]testenv.Row{
		"a": {Amount: 5, ClaimedAt: at.UnixMilli()},
		"b": {Amount: 20, ClaimedAt: at.UnixMilli()},
		"c": {Amount: 5, ClaimedAt: at.UnixMilli()},
	}

	if err := s.CopyClaims(ctx, claims("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	testenv.AssertState(t, db, id, want)

	// One claim already there: nothing of the batch is written, and the
	// error is ErrClaimed, not a data error (which would reject the rows).
	err := s.CopyClaims(ctx, claims("d", "a", "e"))
	if !errors.Is(err, postgres.ErrClaimed) || postgres.IsDataError(err) {
		t.Fatalf("copy with a written claim: %v, want ErrClaimed and no data error", err)
	}
	testenv.AssertState(t, db, id, want)

	// A claim on an amount the campaign lacks: the foreign key refuses it.
	c := claims("f")
	c.Amounts[0] = 7
	if err := s.CopyClaims(ctx, c); !postgres.IsDataError(err) || errors.Is(err, postgres.ErrClaimed) {
		t.Fatalf("copy of an unknown amount: %v, want a data error", err)
	}
	// Past the inventory: the CHECK on opened_count refuses the batch.
	if err := s.CopyClaims(ctx, claims("g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z")); !postgres.IsDataError(err) {
		t.Fatalf("copy past the inventory: %v, want a data error", err)
	}
	testenv.AssertState(t, db, id, want)

	// PostgreSQL unreachable: an error to retry, neither ErrClaimed nor a
	// data error.
	closed := testenv.Postgres(t)
	closed.Close()
	err = (&postgres.Store{DB: closed}).CopyClaims(ctx, claims("y"))
	if err == nil || errors.Is(err, postgres.ErrClaimed) || postgres.IsDataError(err) {
		t.Fatalf("copy on a closed pool: %v, want a plain error", err)
	}
}
