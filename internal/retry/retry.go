// Package retry is the one backoff policy for retries of an unavailable
// dependency.
package retry

import (
	"context"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// BackOff returns the capped exponential backoff used for every retry of
// an unavailable dependency: 100ms doubling to max, with ±50% jitter.
func BackOff(max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     100 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         max,
	}
}

// Forever runs fn until it succeeds or ctx ends, backing off up to 2s and
// logging each failure as a warning about what. Used at start-up, where
// Redis, PostgreSQL or Kafka may come up after the process.
func Forever[T any](ctx context.Context, log *slog.Logger, what string, fn func() (T, error)) (T, error) {
	return backoff.Retry(ctx, fn,
		backoff.WithBackOff(BackOff(2*time.Second)),
		backoff.WithMaxElapsedTime(0), // ctx decides
		backoff.WithNotify(func(err error, next time.Duration) {
			log.Warn(what+" failed; retrying", "err", err, "retry_in", next)
		}))
}
