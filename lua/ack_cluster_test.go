package lua_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
	"github.com/redpacket/rain/lua"
)

// movedCampaign loads a campaign acknowledged by ack, claims once (so that
// every key the script names exists: on the importing master a missing
// one is TRYAGAIN, not ASK), then starts moving its slot to another master
// and migrates every key of the slot there, the slot's sync key included:
// the slot stays migrating until the test ends, then moves back.
func movedCampaign(t *testing.T, c rueidis.Client, ack lua.Ack) (*lua.Keys, *rediscluster.Move) {
	t.Helper()
	ctx := context.Background()
	k := testenv.Keys().WithAck(ack).Of(nextID.Add(1))
	if loaded, err := lua.Load(ctx, c, k, time.Now().Add(-time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli(),
		map[int64]int64{5: 10}); err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
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
	return k, move
}

// TestAckedClaimDuringASlotMove (Redis Cluster, REDIS_ACK=replica): a
// claim whose slot is migrating, with every key of the campaign already on
// the importing master, is redirected there with ASK and answered. Before,
// the claim's DoMulti (script, sync write, WAIT) led with the script:
// rueidis marked it blocking (for WAIT), sent it again after an ASKING
// that its reply was then taken for, and panicked in its cluster retry
// path (index out of range; make torture, seed 110).
func TestAckedClaimDuringASlotMove(t *testing.T) {
	c := testenv.RedisCluster(t)
	k, _ := movedCampaign(t, c, lua.Ack{Replicas: 1, Timeout: 2 * time.Second})
	r, err := func() (r rain.Result, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return lua.Claim(context.Background(), c, k, "alice", rand.Uint64())
	}()
	if err != nil || r.Outcome != rain.OK {
		t.Fatalf("a claim while its slot migrates: %+v %v, want OK", r, err)
	}
}

// TestAckedClaimDuringASlotMoveWaitsForItsReplica (Redis Cluster,
// REDIS_ACK=replica): a claim redirected by ASK to the importing master
// counts that master's replica, not the migrating master's. With the
// importing master's replica stopped it is not acknowledged. Before, WAIT
// (which has no key) stayed on the migrating master, whose replica was
// fine, and the claim was answered OK while no replica held it: a failover
// of the importing master then would lose it.
func TestAckedClaimDuringASlotMoveWaitsForItsReplica(t *testing.T) {
	c := testenv.RedisCluster(t)
	ctx := context.Background()
	k, move := movedCampaign(t, c, lua.Ack{Replicas: 1, Timeout: 300 * time.Millisecond})
	shards, err := rediscluster.Shards(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	var replica string
	for _, sh := range shards {
		if sh.Addr == move.To.Addr && len(sh.Replicas) > 0 {
			replica = sh.Replicas[0]
		}
	}
	if replica == "" {
		t.Fatalf("the importing master %s has no replica", move.To.Addr)
	}
	resume := stopNode(t, replica)
	_, err = lua.Claim(ctx, c, k, "alice", rand.Uint64())
	resume()
	if !errors.Is(err, lua.ErrNotAcked) {
		t.Fatalf("a claim redirected to a master whose replica is stopped: %v, want ErrNotAcked", err)
	}
	// The replica back, the claim made on the importing master is on it.
	if r, err := lua.Claim(ctx, c, k, "alice", rand.Uint64()); err != nil || r.Outcome != rain.AlreadyOpened {
		t.Fatalf("the same user again: %+v %v, want ALREADY_OPENED", r, err)
	}
}

// stopNode stops the node at addr (SIGSTOP; the local cluster runs on this
// host) and returns the function that resumes it, also run at cleanup.
func stopNode(t *testing.T, addr string) (resume func()) {
	t.Helper()
	ctx := context.Background()
	node, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	info, err := node.Do(ctx, node.B().Info().Section("server").Build()).ToString()
	node.Close()
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 1 {
		t.Fatalf("%s: no process_id in INFO", addr)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}
