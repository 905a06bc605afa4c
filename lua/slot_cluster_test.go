package lua_test

import (
	"context"
	"testing"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
)

// TestKeysMatchClusterKeyslot: on a Redis Cluster, CLUSTER KEYSLOT puts
// every key of a campaign in the slot rediscluster.Slot computes, one slot
// for all of them.
func TestKeysMatchClusterKeyslot(t *testing.T) {
	c := testenv.RedisCluster(t)
	ctx := context.Background()
	for _, id := range []int64{1, 2, 42, 1 << 40, 1<<63 - 1} {
		k := testenv.Keys().Of(id)
		for _, key := range []string{k.Meta(), k.Stock(), k.Claims(), k.Loading()} {
			s, err := c.Do(ctx, c.B().ClusterKeyslot().Key(key).Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			if s != int64(rediscluster.Slot(k.Meta())) {
				t.Errorf("%s: CLUSTER KEYSLOT %d, want %d (the campaign's slot)", key, s, rediscluster.Slot(k.Meta()))
			}
		}
	}
}
