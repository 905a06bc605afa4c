package lua_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

func TestClearKeyspaceRefusesTheDefault(t *testing.T) {
	for _, prefix := range []string{"", lua.DefaultPrefix} {
		if _, err := lua.ClearKeyspace(context.Background(), nil, lua.NewKeyspace(prefix)); err == nil {
			t.Errorf("prefix %q: want a refusal", prefix)
		}
	}
}

func TestClearKeyspace(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	mine, other := lua.NewKeyspace("rpclear"+run), lua.NewKeyspace("rpclear"+run+"x")
	for id := int64(1); id <= 3; id++ {
		for _, ks := range []lua.Keyspace{mine, other} {
			k := ks.Of(id)
			if err := c.Do(ctx, c.B().Mset().KeyValue().KeyValue(k.Meta(), "1").KeyValue(k.Claims(), "1").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() { _, _ = lua.ClearKeyspace(ctx, c, other) })
	if n, err := lua.ClearKeyspace(ctx, c, mine); err != nil || n != 6 {
		t.Fatalf("ClearKeyspace = %d, %v; want 6 keys", n, err)
	}
	for id := int64(1); id <= 3; id++ {
		if n, _ := c.Do(ctx, c.B().Exists().Key(mine.Of(id).Meta(), other.Of(id).Meta()).Build()).AsInt64(); n != 1 {
			t.Errorf("campaign %d: %d of its key and the other keyspace's left, want only the other's", id, n)
		}
	}
}
