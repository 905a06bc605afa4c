package app_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
)

// TestRedisAckModes: REDIS_ACK=auto waits for a replica where the master
// has one and for the master alone where it has none; master and replica
// say so whatever Redis has. A value of another kind is refused, by name.
func TestRedisAckModes(t *testing.T) {
	p := testenv.NewReplicaPair(t)
	alone := testenv.Redis(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The test Redis has no replica in `make test`; its cluster tier's
	// masters each have one.
	var shared int64
	if rediscluster.IsCluster(alone) {
		shared = 1
	}
	for _, c := range []struct {
		mode string
		pair bool // the pair's master, which has a replica; else the test Redis
		want int64
	}{
		{app.AckAuto, true, 1}, {app.AckMaster, true, 0}, {app.AckReplica, true, 1},
		{app.AckAuto, false, shared}, {app.AckReplica, false, 1}, {app.AckMaster, false, 0},
	} {
		cfg := config.Default[app.Config]()
		cfg.RedisAck = c.mode
		r := alone
		if c.pair {
			r = p.Master
		}
		ks, err := cfg.Keys(context.Background(), r, log)
		if err != nil || ks.Ack().Replicas != c.want {
			t.Errorf("REDIS_ACK=%s, pair %v: %+v %v, want %d replicas", c.mode, c.pair, ks.Ack(), err, c.want)
		}
	}
	s := config.New(func(k string) (string, bool) { return map[string]string{"REDIS_ACK": "quorum"}[k], k == "REDIS_ACK" })
	var cfg app.Config
	cfg.Bind(s)
	if err := s.Err(); err == nil {
		t.Error("REDIS_ACK=quorum accepted")
	}
}
