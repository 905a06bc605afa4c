package migrations_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
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

// TestMerchantsMigration: the campaigns made before merchants existed are
// the operator's (merchant_id NULL), as docs/security.md says, and their
// audit rows keep their token names with no merchant.
func TestMerchantsMigration(t *testing.T) {
	dsn := freshDatabase(t)
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	m, err := migrate.NewMigrator(ctx, c, migrations.VersionTable)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(os.DirFS(".")); err != nil { // the files migrations embeds
		t.Fatal(err)
	}
	before := int32(migrations.Latest() - 1) // the schema before merchants
	if err := m.MigrateTo(ctx, before); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := c.QueryRow(ctx, `INSERT INTO campaign (name, start_time, end_time) VALUES ('old', now(), now() + interval '1 hour') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO campaign_action (campaign_id, kind, actor, request, result) VALUES ($1, 'create', 'ops', '{}', '{}')`, id); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	var owner, merchant, token *int64
	var actor string
	err = c.QueryRow(ctx, `SELECT c.merchant_id, a.merchant_id, a.token_id, a.actor FROM campaign c JOIN campaign_action a ON a.campaign_id = c.id
		WHERE c.id = $1`, id).Scan(&owner, &merchant, &token, &actor)
	if err != nil || owner != nil || merchant != nil || token != nil || actor != "ops" {
		t.Errorf("an old campaign after the migration: owner %v, action by %v/%v/%q, %v", owner, merchant, token, actor, err)
	}
	var version int64
	if err := c.QueryRow(ctx, `SELECT version FROM merchant_token_version`).Scan(&version); err != nil || version < 1 {
		t.Errorf("token version: %d %v", version, err)
	}
	// A merchant name the API refuses is refused by the table too.
	for _, bad := range []string{"Acme", "-a", "", strings.Repeat("a", 65), "a b", "a.b"} {
		if _, err := c.Exec(ctx, `INSERT INTO merchant (name) VALUES ($1)`, bad); err == nil {
			t.Errorf("merchant name %q accepted", bad)
		}
	}
}
