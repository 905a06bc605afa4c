package rediscluster_test

import (
	"context"
	"testing"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
)

// TestReady: the test Redis is ready (one Redis: it answers PING; a
// cluster: every master answers and sees cluster_state ok, and the slots
// are covered). A cluster with a master down is not: see the stack's
// cluster test.
func TestReady(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	if err := rediscluster.Ready(ctx, c); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if !rediscluster.IsCluster(c) {
		return
	}
	shards, err := rediscluster.Shards(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	covered := 0
	for _, s := range shards {
		if s.ID == "" || len(s.Ranges) == 0 {
			t.Errorf("shard %+v", s)
		}
		for _, r := range s.Ranges {
			covered += int(r[1]-r[0]) + 1
		}
	}
	if len(shards) < 3 || covered != rediscluster.Slots {
		t.Errorf("%d shards cover %d slots: %+v", len(shards), covered, shards)
	}
	if s, ok := rediscluster.ShardOf(shards, "rp:{42}:meta"); !ok || !s.Owns(rediscluster.Slot("42")) {
		t.Errorf("ShardOf: %+v %v", s, ok)
	}
}
