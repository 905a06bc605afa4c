package lua_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/lua"
)

// TestAckedClaimDuringASlotMove (Redis Cluster, REDIS_ACK=replica): a
// claim whose slot is migrating, with every key of the campaign already on
// the importing master, is redirected there with ASK and answered. Before,
// the claim's DoMulti (script, sync write, WAIT) led with the script:
// rueidis marked it blocking (for WAIT), sent it again after an ASKING
// that its reply was then taken for, and panicked in its cluster retry
// path (index out of range; make torture, seed 110).
func TestAckedClaimDuringASlotMove(t *testing.T) {
	c := testenv.RedisCluster(t)
	ctx := context.Background()
	ks := testenv.Keys().WithAck(lua.Ack{Replicas: 1, Timeout: 2 * time.Second})
	k := ks.Of(nextID.Add(1))
	if loaded, err := lua.Load(ctx, c, k, time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli(),
		map[int64]int64{5: 10}); err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
	// A first claim, so that every key the script names exists (on the
	// importing master a missing one is TRYAGAIN, not ASK).
	if r, err := lua.Claim(ctx, c, k, "zed", rand.Uint64()); err != nil || r.Outcome != rain.OK {
		t.Fatalf("the first claim: %+v %v", r, err)
	}
	slot := rediscluster.Slot(k.Meta())
	to, err := rediscluster.OtherMaster(ctx, c, slot)
	if err != nil {
		t.Fatal(err)
	}
	move, err := rediscluster.StartMove(ctx, c, slot, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := move.Finish(ctx); err != nil {
			t.Errorf("finishing the move: %v", err)
		}
		if err := rediscluster.MoveSlot(ctx, c, slot, move.From.Addr); err != nil {
			t.Errorf("moving slot %d back: %v", slot, err)
		}
		c.Do(ctx, c.B().Unlink().Key(k.Meta(), k.Stock(), k.Claims()).Build())
	})
	from := c.Nodes()[move.From.Addr]
	keys, err := from.Do(ctx, from.B().ClusterGetkeysinslot().Slot(int64(slot)).Count(1000).Build()).AsStrSlice()
	if err != nil || len(keys) == 0 {
		t.Fatalf("the campaign's keys on %s: %v %v", move.From.Addr, keys, err)
	}
	if err := move.Migrate(ctx, keys...); err != nil {
		t.Fatal(err)
	}
	r, err := func() (r rain.Result, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return lua.Claim(ctx, c, k, "alice", rand.Uint64())
	}()
	if err != nil || r.Outcome != rain.OK {
		t.Fatalf("a claim while its slot migrates: %+v %v, want OK", r, err)
	}
}
