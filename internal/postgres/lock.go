package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// WithLock runs fn while holding the PostgreSQL advisory lock key on a
// connection of its own (closed afterwards, which releases the lock even if
// unlocking failed). With wait false it returns false at once if another
// session holds the lock; with wait true it waits for it.
func (s *Store) WithLock(ctx context.Context, key int64, wait bool, fn func(context.Context) error) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, s.DB.Config().ConnConfig.Copy())
	if err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if wait {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
			return false, fmt.Errorf("postgres: advisory lock: %w", err)
		}
	} else {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
			return false, fmt.Errorf("postgres: advisory lock: %w", err)
		}
		if !ok {
			return false, nil
		}
	}
	err = fn(ctx)
	_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
	return true, err
}
