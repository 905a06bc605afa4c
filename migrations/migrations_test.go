package migrations_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/migrations"
)

// freshDatabase creates an empty database for this test and returns its DSN.
func freshDatabase(t *testing.T) string {
	t.Helper()
	testenv.Need(t, "PostgreSQL at "+testenv.PostgresDSN())
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.PostgresDSN())
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("rain_migrate_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, testenv.PostgresDSN())
		if err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	u, _ := url.Parse(testenv.PostgresDSN())
	u.Path = "/" + name
	return u.String()
}

// TestConcurrentBoot: processes booting at once all succeed and the schema
// is applied once.
func TestConcurrentBoot(t *testing.T) {
	dsn := freshDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = migrations.Migrate(context.Background(), dsn)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var version, rows, tables int
	if err := c.QueryRow(ctx, "SELECT version, (SELECT count(*) FROM "+migrations.VersionTable+") FROM "+migrations.VersionTable).Scan(&version, &rows); err != nil {
		t.Fatal(err)
	}
	if version != migrations.Latest() || version < 1 || rows != 1 {
		t.Errorf("schema version %d in %d rows, want %d in 1", version, rows, migrations.Latest())
	}
	err = c.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name IN ('campaign', 'campaign_inventory', 'claim_log')`).Scan(&tables)
	if err != nil || tables != 3 {
		t.Errorf("tables: %d %v", tables, err)
	}
	// Booting again is a no-op.
	if err := migrations.Migrate(ctx, dsn); err != nil {
		t.Errorf("second boot: %v", err)
	}
}
