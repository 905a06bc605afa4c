package rediscluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/rediscluster"
)

// TestSlot: the examples of the Redis Cluster specification.
func TestSlot(t *testing.T) {
	for key, want := range map[string]uint16{
		"123456789":            0x31C3, // the specification's CRC16 check value
		"{user1000}.following": rediscluster.Slot("user1000"),
		"{user1000}.followers": rediscluster.Slot("user1000"),
		"foo{}{bar}":           rediscluster.Slot("foo{}{bar}"), // an empty tag: the whole key
		"foo{{bar}}zap":        rediscluster.Slot("{bar"),
		"foo{bar}{zap}":        rediscluster.Slot("bar"),
		"rp:{42}:claims":       rediscluster.Slot("42"),
		"no{brace":             rediscluster.Slot("no{brace"),
	} {
		if got := rediscluster.Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if s := rediscluster.Slot("123456789"); s != 0x31C3%rediscluster.Slots {
		t.Errorf("Slot(123456789) = %d", s)
	}
}

// TestSlotMatchesCluster: Slot agrees with CLUSTER KEYSLOT (on a cluster).
func TestSlotMatchesCluster(t *testing.T) {
	c := testenv.RedisCluster(t)
	ctx := context.Background()
	keys := []string{"", "a", "{", "}", "{}", "{a}b", "x{y}z{w}", "rp:{42}:meta"}
	for range 200 {
		b := make([]byte, rand.IntN(24))
		for i := range b {
			b[i] = "ab{}:0123456789"[rand.IntN(15)]
		}
		keys = append(keys, string(b))
	}
	for _, k := range keys {
		want, err := c.Do(ctx, c.B().ClusterKeyslot().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		if got := rediscluster.Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT %d", k, got, want)
		}
	}
}

func ExampleSlot() {
	fmt.Println(rediscluster.Slot("rp:{42}:meta") == rediscluster.Slot("rp:{42}:claims"))
	// Output: true
}
