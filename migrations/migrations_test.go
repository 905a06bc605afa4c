package migrations_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	if err := migrations.MigrateTo(ctx, dsn, 3); err != nil { // the schema before merchants (004)
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

// TestMigrationKeepsClaims: a database that holds claims from before
// claim_log was partitioned (version 4: merchants, their campaigns and
// actions, 005 partitions claim_log) is migrated without losing or
// changing a row; every campaign, with claims or not, gets its partition
// holding exactly its claims, the key still refuses a second claim of a
// user, and a campaign made afterwards gets its partition too.
func TestMigrationKeepsClaims(t *testing.T) {
	dsn := freshDatabase(t)
	ctx := context.Background()
	if err := migrations.MigrateTo(ctx, dsn, 4); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Three campaigns: two with claims (user ids with a comma, a quote,
	// non-ASCII and 128 bytes), one without; b is a merchant's, made with
	// one of its tokens (merchants' columns, 004), the others the
	// operator's.
	exec(`INSERT INTO merchant (name) VALUES ('acme')`)
	exec(`INSERT INTO merchant_token (merchant_id, hash, role) SELECT id, sha256('secret'), 'full' FROM merchant`)
	exec(`INSERT INTO campaign (name, start_time, end_time, merchant_id) VALUES
		('a', '2025-01-01Z', '2025-01-02Z', NULL), ('b', '2025-02-01Z', '2099-01-01Z', (SELECT id FROM merchant)),
		('c', '2025-03-01Z', '2025-03-02Z', NULL)`)
	exec(`INSERT INTO campaign_action (campaign_id, kind, actor, request, result, merchant_id, token_id)
		SELECT c.id, 'create', 'acme', '{}', '{}', t.merchant_id, t.id FROM campaign c, merchant_token t WHERE c.name = 'b'`)
	var ids []int64
	rows, _ := c.Query(ctx, `SELECT id FROM campaign ORDER BY id`)
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil || len(ids) != 3 {
		t.Fatalf("campaigns %v: %v", ids, err)
	}
	for _, id := range ids {
		exec(`INSERT INTO campaign_inventory (campaign_id, amount, total_count) VALUES ($1, 5, 1000), ($1, 20, 1000)`, id)
	}
	users := []string{"u-1", "u,2", `u"3`, "用户-4", strings.Repeat("x", 128)}
	for i := range 1000 {
		users = append(users, fmt.Sprintf("user-%04d", i))
	}
	exec(`INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at, persisted_at)
		SELECT $1, u, CASE WHEN n % 3 = 0 THEN 20 ELSE 5 END, '2025-01-01 12:00Z'::timestamptz + n * interval '1.5 ms', '2025-01-01 12:00:01Z'::timestamptz + n * interval '1 s'
		FROM unnest($2::text[]) WITH ORDINALITY AS x(u, n)`, ids[0], users)
	exec(`INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at) SELECT $1, u, 20, now() FROM unnest($2::text[]) u`, ids[1], users[:3])
	type row struct {
		Campaign             int64
		User                 string
		Amount               int64
		ClaimedAt, Persisted time.Time
	}
	read := func() []row {
		t.Helper()
		// Not prepared: user_id's type changes from text to varchar, and
		// a statement prepared before would fail once ("cached plan must
		// not change result type") before pgx prepares it again.
		rows, _ := c.Query(ctx, `SELECT campaign_id, user_id, amount, claimed_at, persisted_at FROM claim_log ORDER BY campaign_id, user_id`,
			pgx.QueryExecModeSimpleProtocol)
		out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := read()
	if len(before) != len(users)+3 {
		t.Fatalf("%d rows before, want %d", len(before), len(users)+3)
	}

	if err := migrations.Migrate(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	if after := read(); !reflect.DeepEqual(after, before) {
		t.Fatalf("claim_log changed by the migration: %d rows before, %d after", len(before), len(after))
	}
	for i, id := range ids {
		want := []int{len(users), 3, 0}[i]
		var n int
		part := fmt.Sprintf("claim_log_%d", id)
		if err := c.QueryRow(ctx, `SELECT count(*) FROM `+part).Scan(&n); err != nil || n != want {
			t.Errorf("partition %s: %d rows (%v), want %d", part, n, err, want)
		}
	}
	var owned, actions int
	err = c.QueryRow(ctx, `SELECT (SELECT count(*) FROM campaign WHERE merchant_id IS NOT NULL AND name = 'b'),
		(SELECT count(*) FROM campaign_action WHERE token_id IS NOT NULL AND campaign_id = $1)`, ids[1]).Scan(&owned, &actions)
	if err != nil || owned != 1 || actions != 1 {
		t.Errorf("the merchant's campaign after the migration: %d owned, %d actions (%v), want 1 and 1", owned, actions, err)
	}
	var tables int
	if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname LIKE 'claim_log_unpartitioned%'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("the old table: %d relations left (%v)", tables, err)
	}
	_, err = c.Exec(ctx, `INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at) VALUES ($1, 'u,2', 5, now())`, ids[0])
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "23505" {
		t.Errorf("a second claim of a user: %v, want a unique violation", err)
	}

	// A campaign made after the migration gets its partition in the same
	// transaction.
	var id int64
	if err := c.QueryRow(ctx, `INSERT INTO campaign (name, start_time, end_time) VALUES ('d', now(), now() + interval '1 hour') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	exec(`INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at) VALUES ($1, 'new', 5, now())`, id)
	var where string
	if err := c.QueryRow(ctx, `SELECT tableoid::regclass::text FROM claim_log WHERE campaign_id = $1`, id).Scan(&where); err != nil || where != fmt.Sprintf("claim_log_%d", id) {
		t.Errorf("claim of a new campaign in %q (%v), want its partition", where, err)
	}
}
