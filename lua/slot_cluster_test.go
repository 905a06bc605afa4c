package lua_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/lua"
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

// TestBucketsSpreadOverMasters: on a Redis Cluster whose masters own equal
// ranges, K buckets land on min(K, masters) different masters, and
// CLUSTER KEYSLOT agrees with the slot each tag was chosen for.
func TestBucketsSpreadOverMasters(t *testing.T) {
	c := testenv.Redis(t)
	if c.Mode() != rueidis.ClientModeCluster {
		t.Skip("needs a Redis Cluster")
	}
	ctx := context.Background()
	slots, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	owner := make([]string, lua.Slots)
	for _, r := range slots {
		v, _ := r.ToArray()
		lo, _ := v[0].AsInt64()
		hi, _ := v[1].AsInt64()
		node, _ := v[2].ToArray()
		port, _ := node[1].AsInt64()
		for s := lo; s <= hi; s++ {
			owner[s] = fmt.Sprint(port)
		}
	}
	masters := map[string]bool{}
	for _, o := range owner {
		masters[o] = true
	}
	for _, k := range []int{3, 12} {
		l, _ := testenv.Keys().Layout(nextID.Add(1), k)
		on := map[string]bool{}
		for _, b := range l.Buckets {
			slot, err := c.Do(ctx, c.B().ClusterKeyslot().Key(b.Meta()).Build()).AsInt64()
			if err != nil || int(slot) != lua.KeySlot(b.Meta()) {
				t.Fatalf("CLUSTER KEYSLOT %s: %d %v, want %d", b.Meta(), slot, err, lua.KeySlot(b.Meta()))
			}
			on[owner[slot]] = true
		}
		if want := min(k, len(masters)); len(on) != want {
			t.Errorf("%d buckets on %d masters of %d, want %d", k, len(on), len(masters), want)
		}
	}
}
