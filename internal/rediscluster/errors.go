package rediscluster

import (
	"context"
	"errors"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/retry"
)

// Kinds of error replies that prove the command was not run: the server
// answered without running it.
const (
	KindMoved       = "moved"       // the slot lives on another master (past the client's redirect bound)
	KindAsk         = "ask"         // the slot is migrating and the key has left (past the bound)
	KindTryAgain    = "tryagain"    // a multi-key command whose keys a migration split
	KindClusterDown = "clusterdown" // the slot has no master that answers (a failover in progress)
	KindLoading     = "loading"     // the node is loading its data set (a restart)
)

// NotRun reports whether err is an error reply proving that the command
// was not run, and of which kind. Any other error (a lost connection, a
// timeout after sending, an error of the script itself) leaves the outcome
// unknown, or is not the cluster's, and is not retried.
func NotRun(err error) (kind string, ok bool) {
	if err == nil { // the claim path's common case: errors.As would allocate its target
		return "", false
	}
	var re *rueidis.RedisError
	if !errors.As(err, &re) {
		return "", false
	}
	if _, ok := re.IsMoved(); ok {
		return KindMoved, true
	}
	if _, ok := re.IsAsk(); ok {
		return KindAsk, true
	}
	switch {
	case re.IsTryAgain():
		return KindTryAgain, true
	case re.IsClusterDown():
		return KindClusterDown, true
	case re.IsLoading():
		return KindLoading, true
	}
	return "", false
}

// Retries is how many times Retry sends a command again.
const Retries = 3

var retried = map[string]*metrics.Counter{}

func init() {
	for _, k := range []string{KindMoved, KindAsk, KindTryAgain, KindClusterDown, KindLoading} {
		retried[k] = metrics.NewCounter(`rain_redis_retries_total{kind="` + k + `"}`)
	}
}

// Retried is how many times Retry has sent a command again after a reply
// of kind.
func Retried(kind string) uint64 {
	if c := retried[kind]; c != nil {
		return c.Get()
	}
	return 0
}

// Retry runs fn, and runs it again, up to Retries times with a short
// backoff (the retry policy starting at 5 ms, capped at 50 ms), while it
// fails with an error reply that proves it did not run (NotRun), and ctx
// lasts. It returns fn's last error.
func Retry(ctx context.Context, fn func() error) error {
	err := fn()
	if _, notRun := NotRun(err); !notRun {
		return err // the common case: no backoff is made
	}
	b := retry.BackOff(50 * time.Millisecond)
	b.InitialInterval = 5 * time.Millisecond
	b.Reset()
	for range Retries {
		kind, notRun := NotRun(err)
		if !notRun {
			return err
		}
		t := time.NewTimer(b.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		retried[kind].Inc()
		err = fn()
	}
	return err
}
