package lua_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

func TestEndNow(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	now := time.Now()

	if _, loaded, err := lua.EndNow(ctx, c, testenv.Keys().Of(nextID.Add(1)), now.UnixMilli()); err != nil || loaded {
		t.Fatalf("unknown campaign: loaded %v, %v", loaded, err)
	}
	k := live(t, c, map[int64]int64{5: 10})
	if r := claim(t, c, k, "before"); r.Outcome != rain.OK {
		t.Fatalf("open before the end: %v", r.Outcome)
	}
	// An end asked for in the future is capped at Redis's clock: it ends now.
	end, loaded, err := lua.EndNow(ctx, c, k, now.Add(time.Minute).UnixMilli())
	if err != nil || !loaded || end > time.Now().UnixMilli() || end < now.UnixMilli()-1000 {
		t.Fatalf("end: %d %v %v (now %d)", end, loaded, err, now.UnixMilli())
	}
	if r := claim(t, c, k, "after"); r.Outcome != rain.Ended {
		t.Fatalf("open after the end: %v, want ENDED", r.Outcome)
	}
	if r := claim(t, c, k, "before"); r.Outcome != rain.Ended {
		t.Fatalf("repeat after the end: %v, want ENDED", r.Outcome)
	}
	// Never later: a second end, even asked for later, keeps the first.
	again, _, err := lua.EndNow(ctx, c, k, time.Now().Add(time.Hour).UnixMilli())
	if err != nil || again != end {
		t.Fatalf("second end: %d %v, want %d", again, err, end)
	}
	// An earlier end asked for moves it back.
	earlier, _, err := lua.EndNow(ctx, c, k, end-5000)
	if err != nil || earlier != end-5000 {
		t.Fatalf("earlier end: %d %v, want %d", earlier, err, end-5000)
	}

	// A campaign that has not started gets an empty window: never opens.
	up := newCampaign(t, c, now.Add(time.Hour), now.Add(2*time.Hour), map[int64]int64{5: 1})
	end, _, err = lua.EndNow(ctx, c, up, now.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Do(ctx, c.B().Hgetall().Key(up.Meta()).Build()).AsStrMap()
	if err != nil || m["start"] != strconv.FormatInt(end, 10) || m["end"] != m["start"] {
		t.Fatalf("upcoming campaign ended: meta %v %v, want start = end = %d", m, err, end)
	}
	if r := claim(t, c, up, "u"); r.Outcome != rain.Ended {
		t.Fatalf("open of an upcoming campaign ended: %v, want ENDED", r.Outcome)
	}

	if err := c.Do(ctx, c.B().Eval().Script(lua.EndSrc).Numkeys(1).Key(k.Meta()).Arg("x").Build()).Error(); err == nil {
		t.Error("end.lua accepted a non-integer end")
	}
}

func TestAddStock(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()

	if _, loaded, err := lua.AddStock(ctx, c, testenv.Keys().Of(nextID.Add(1)), 5, 1); err != nil || loaded {
		t.Fatalf("unknown campaign: loaded %v, %v", loaded, err)
	}
	k := live(t, c, map[int64]int64{5: 1, 20: 1})
	claim(t, c, k, "a")
	claim(t, c, k, "b")
	if r := claim(t, c, k, "c"); r.Outcome != rain.SoldOut {
		t.Fatalf("third open: %v, want SOLD_OUT", r.Outcome)
	}
	ws := make([]lua.Window, 2)
	missing := testenv.Keys().Of(nextID.Add(1))
	if err := lua.ReadWindows(ctx, c, []*lua.Keys{k, missing}, ws); err != nil {
		t.Fatal(err)
	}
	if !ws[0].Loaded || ws[0].Gen != 0 || ws[0].EndMs < time.Now().UnixMilli() || ws[1].Loaded {
		t.Fatalf("windows before the stock: %+v", ws)
	}

	gen, loaded, err := lua.AddStock(ctx, c, k, 20, 2)
	if err != nil || !loaded || gen != 1 {
		t.Fatalf("add stock: gen %d loaded %v %v", gen, loaded, err)
	}
	if n, err := lua.StockCount(ctx, c, k, 20); err != nil || n != 2 {
		t.Fatalf("stock of 20: %d %v, want 2", n, err)
	}
	if n, err := lua.StockCount(ctx, c, k, 5); err != nil || n != 0 {
		t.Fatalf("stock of 5: %d %v, want 0", n, err)
	}
	if gen, _, _ := lua.AddStock(ctx, c, k, 5, 1); gen != 2 {
		t.Fatalf("second add: gen %d, want 2", gen)
	}
	if err := lua.ReadWindows(ctx, c, []*lua.Keys{k}, ws[:1]); err != nil || ws[0].Gen != 2 {
		t.Fatalf("window after two adds: %+v %v", ws[0], err)
	}
	// The campaign is served again: exactly the three added packets.
	for _, u := range []string{"c", "d", "e"} {
		if r := claim(t, c, k, u); r.Outcome != rain.OK {
			t.Fatalf("open by %s after the stock: %v", u, r.Outcome)
		}
	}
	if r := claim(t, c, k, "f"); r.Outcome != rain.SoldOut {
		t.Fatalf("open past the added stock: %v, want SOLD_OUT", r.Outcome)
	}
	byAmount, err := lua.ClaimsByAmount(ctx, c, k)
	if err != nil || byAmount[5] != 2 || byAmount[20] != 3 {
		t.Fatalf("claims by amount %v %v, want 5:2 20:3", byAmount, err)
	}
	if amount, at, ok, err := lua.ClaimOf(ctx, c, k, "c"); err != nil || !ok || amount < 5 || at == 0 {
		t.Fatalf("claim of c: %d %d %v %v", amount, at, ok, err)
	}
	if _, _, ok, err := lua.ClaimOf(ctx, c, k, "nobody"); err != nil || ok {
		t.Fatalf("claim of nobody: %v %v", ok, err)
	}

	for _, args := range [][]string{{"5", "0"}, {"5", "-1"}, {"5", "1.5"}, {"x", "1"}} {
		err := c.Do(ctx, c.B().Eval().Script(lua.RestockSrc).Numkeys(2).Key(k.Meta(), k.Stock()).Arg(args...).Build()).Error()
		if err == nil {
			t.Errorf("restock.lua accepted %v", args)
		}
	}
	if n, _ := lua.StockCount(ctx, c, k, 5); n != 0 {
		t.Errorf("a refused call changed the stock: %d", n)
	}
}
