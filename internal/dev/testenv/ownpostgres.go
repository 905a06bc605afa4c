package testenv

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain/migrations"
)

// OwnPostgres is a database of the test's own, migrated, dropped when the
// test ends: for a test that acts on every campaign of its database (an
// archive of all ended campaigns) or holds locks that would stall the
// other packages' tests on the shared one.
func OwnPostgres(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	Postgres(tb) // skips under -short
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, PostgresDSN())
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("rain_test_own_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	u, err := url.Parse(PostgresDSN())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	dsn := u.String()
	tb.Cleanup(func() {
		if c, err := pgx.Connect(ctx, PostgresDSN()); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	if err := migrations.Migrate(ctx, dsn); err != nil {
		tb.Fatal(err)
	}
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return db
}
