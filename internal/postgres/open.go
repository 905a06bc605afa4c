// Package postgres is the service's PostgreSQL: opening (migrations
// applied first) and every query, one method of Store each.
package postgres

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/migrations"
)

// Open migrates the database at dsn, retrying while it is unreachable until
// ctx ends (PostgreSQL may come up after the process), and opens a
// connection pool on it. Both binaries start this way.
func Open(ctx context.Context, log *slog.Logger, dsn string) (*Store, error) {
	_, err := retry.Forever(ctx, log, "migrate postgres", func() (struct{}, error) {
		return struct{}{}, migrations.Migrate(ctx, dsn)
	})
	if err != nil {
		return nil, err
	}
	db, err := pgxpool.New(context.WithoutCancel(ctx), dsn)
	if err != nil {
		return nil, fmt.Errorf("POSTGRES_DSN: %w", err)
	}
	return &Store{DB: db}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.DB.Close() }
