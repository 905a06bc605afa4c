package rediscluster_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
)

// node is a client of one Redis server: the test Redis, or one node of the
// test cluster. It does not follow redirects.
func node(t *testing.T) rueidis.Client {
	c := testenv.Redis(t)
	if !rediscluster.IsCluster(c) {
		return c
	}
	for _, n := range c.Nodes() {
		return n
	}
	t.Fatal("a cluster client with no node")
	return nil
}

// reply has Redis answer the error reply msg (a script's error_reply).
func reply(ctx context.Context, c rueidis.Client, msg string) error {
	return c.Do(ctx, c.B().Eval().Script("return redis.error_reply(ARGV[1])").Numkeys(0).Arg(msg).Build()).Error()
}

// TestNotRun: the error replies that prove a command did not run, as Redis
// sends them, and errors that leave the outcome unknown.
func TestNotRun(t *testing.T) {
	c := node(t)
	ctx := context.Background()
	for msg, want := range map[string]string{
		"MOVED 3999 127.0.0.1:7002":         rediscluster.KindMoved,
		"ASK 3999 127.0.0.1:7002":           rediscluster.KindAsk,
		"TRYAGAIN Multiple keys request":    rediscluster.KindTryAgain,
		"CLUSTERDOWN The cluster is down":   rediscluster.KindClusterDown,
		"LOADING Redis is loading the data": rediscluster.KindLoading,
		"ERR something else":                "",
		"NOSCRIPT No matching script":       "",
		"BUSY Redis is busy running":        "", // the script runs: outcome unknown
	} {
		err := reply(ctx, c, msg)
		if err == nil {
			t.Fatalf("%s: no error", msg)
		}
		kind, ok := rediscluster.NotRun(err)
		if kind != want || ok != (want != "") {
			t.Errorf("NotRun(%q) = %q, %v; want %q", msg, kind, ok, want)
		}
	}
	for _, err := range []error{nil, io.EOF, context.DeadlineExceeded, errors.New("dial tcp: connection refused")} {
		if kind, ok := rediscluster.NotRun(err); ok {
			t.Errorf("NotRun(%v) = %q: a lost connection or a timeout leaves the outcome unknown", err, kind)
		}
	}
}

// TestRetry: a not-run reply is sent again up to Retries times, then
// returned; anything else is returned at once; a success ends the retries.
func TestRetry(t *testing.T) {
	c := node(t)
	ctx := context.Background()
	for msg, calls := range map[string]int{
		"TRYAGAIN x":    rediscluster.Retries + 1,
		"CLUSTERDOWN x": rediscluster.Retries + 1,
		"LOADING x":     rediscluster.Retries + 1,
		"ERR x":         1,
	} {
		n := 0
		err := rediscluster.Retry(ctx, func() error { n++; return reply(ctx, c, msg) })
		if err == nil || n != calls {
			t.Errorf("%s: %d calls, error %v; want %d calls and the error", msg, n, err, calls)
		}
	}
	n := 0
	err := rediscluster.Retry(ctx, func() error {
		if n++; n < 3 {
			return reply(ctx, c, "TRYAGAIN x")
		}
		return c.Do(ctx, c.B().Ping().Build()).Error()
	})
	if err != nil || n != 3 {
		t.Errorf("TRYAGAIN twice, then a success: %d calls, %v", n, err)
	}
	// A cancelled context stops the retries after the first call.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	n = 0
	if err := rediscluster.Retry(cctx, func() error { n++; return reply(ctx, c, "TRYAGAIN x") }); err == nil || n != 1 {
		t.Errorf("cancelled: %d calls, %v", n, err)
	}
}

// TestRetryLostConnection: a connection lost under the call is returned at
// once: the script may have run.
func TestRetryLostConnection(t *testing.T) {
	testenv.Need(t, "Redis")
	proxy := testenv.NewProxy(t, testenv.RedisAddr())
	c := testenv.RedisAt(t, proxy.Addr())
	ctx := context.Background()
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	n := 0
	err := rediscluster.Retry(ctx, func() error {
		n++
		return c.Do(ctx, c.B().Eval().Script("return 1").Numkeys(0).Build()).Error()
	})
	if err == nil || n != 1 {
		t.Errorf("lost connection: %d calls, %v; want 1 call and the error", n, err)
	}
	proxy.Restore()
}

// TestRedirectBound: a command that is redirected again and again (here a
// script answering MOVED to the node itself) comes back as the MOVED reply
// after app.MaxRedirects redirects, each counted off the wire. One Redis:
// the client does not follow redirects at all.
func TestRedirectBound(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	target := testenv.RedisAddrs()[0]
	follows := uint64(0)
	if rediscluster.IsCluster(c) {
		shards, err := rediscluster.Shards(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		target, follows = shards[0].Addr, app.MaxRedirects
	}
	before := rediscluster.ErrorReplies(rediscluster.KindMoved)
	err := reply(ctx, c, "MOVED 0 "+target)
	if kind, ok := rediscluster.NotRun(err); kind != rediscluster.KindMoved || !ok {
		t.Fatalf("got %v, want the MOVED reply", err)
	}
	if d := rediscluster.ErrorReplies(rediscluster.KindMoved) - before; d != follows+1 {
		t.Errorf("%d MOVED replies read, want %d (the first and %d redirects)", d, follows+1, follows)
	}
}
