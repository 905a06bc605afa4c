package testenv

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/rediscluster"
)

// slotChecked is a client that refuses, on one Redis as a cluster client
// does, a script call whose keys lie in different hash slots: such a call
// works on one Redis and fails on a Redis Cluster (CROSSSLOT), so every
// test that runs a script also checks that it would run on a cluster.
type slotChecked struct{ rueidis.Client }

func (c slotChecked) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	mustShareSlot(cmd)
	return c.Client.Do(ctx, cmd)
}

func (c slotChecked) DoMulti(ctx context.Context, multi ...rueidis.Completed) []rueidis.RedisResult {
	for _, cmd := range multi {
		mustShareSlot(cmd)
	}
	return c.Client.DoMulti(ctx, multi...)
}

// mustShareSlot panics if cmd is a script or function call (EVAL, EVALSHA,
// FCALL and their _RO forms) whose keys hash to more than one slot.
func mustShareSlot(cmd rueidis.Completed) {
	if err := scriptSlots(cmd.Commands()); err != nil {
		panic(err)
	}
}

// scriptSlots checks the keys of a script call's arguments.
func scriptSlots(args []string) error {
	if len(args) < 3 {
		return nil
	}
	switch strings.ToUpper(args[0]) {
	case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
	default:
		return nil
	}
	n, err := strconv.Atoi(args[2])
	if err != nil || n < 0 || 3+n > len(args) {
		return nil // Redis refuses it anyway
	}
	keys := args[3 : 3+n]
	for _, k := range keys[min(1, len(keys)):] {
		if rediscluster.Slot(k) != rediscluster.Slot(keys[0]) {
			return fmt.Errorf("script call with keys in different hash slots (CROSSSLOT on a Redis Cluster): %s is in slot %d, %s in slot %d",
				keys[0], rediscluster.Slot(keys[0]), k, rediscluster.Slot(k))
		}
	}
	return nil
}
