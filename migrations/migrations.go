// Package migrations holds the SQL schema, embedded, and applies it.
package migrations

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// VersionTable records the applied schema version.
const VersionTable = "public.schema_version"

// Migrate applies every migration not yet applied, on one connection of its
// own. tern holds a PostgreSQL advisory lock while it reads and moves the
// version, so any number of processes may boot at once: one migrates, the
// others wait and then find nothing to do.
func Migrate(ctx context.Context, dsn string) error { return migrateTo(ctx, dsn, -1) }

// migrateTo brings the database to version (the latest when negative).
func migrateTo(ctx context.Context, dsn string, version int32) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return fmt.Errorf("migrate: load: %w", err)
	}
	if version < 0 {
		err = m.Migrate(ctx)
	} else {
		err = m.MigrateTo(ctx, version)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Latest is the schema version Migrate brings a database to: the number of
// migration files.
func Latest() int {
	names, _ := migrate.FindMigrations(files)
	return len(names)
}
