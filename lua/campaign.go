package lua

import (
	"context"
	_ "embed"
	"strconv"

	"github.com/redis/rueidis"
)

// The merchant's side in Redis: ending a campaign now (end.lua), adding
// stock (restock.lua), and what every api replica re-reads to keep its
// answers from memory exact (Window). Both scripts change the meta hash,
// which besides start and end holds 'gen', the campaign's stock
// generation: restock.lua bumps it with every stock it adds.

var (
	//go:embed end.lua
	endSrc string
	//go:embed restock.lua
	restockSrc string

	endScript     = rueidis.NewLuaScript(endSrc)
	restockScript = rueidis.NewLuaScript(restockSrc)
)

// EndNow ends the campaign of k at the earliest of its end, endMs and
// Redis's clock, and returns that end. loaded is false when Redis does not
// hold the campaign; then nothing was written.
func EndNow(ctx context.Context, c rueidis.Client, k *Keys, endMs int64) (end int64, loaded bool, err error) {
	end, err = endScript.Exec(ctx, c, k.all[:1], []string{strconv.FormatInt(endMs, 10)}).AsInt64()
	if err != nil {
		return 0, false, err
	}
	return end, end >= 0, nil
}

// AddStock adds count packets of amount to the campaign of k and bumps its
// stock generation, which it returns. loaded is false when Redis does not
// hold the campaign; then nothing was written.
func AddStock(ctx context.Context, c rueidis.Client, k *Keys, amount, count int64) (gen int64, loaded bool, err error) {
	gen, err = restockScript.Exec(ctx, c, k.all[:2],
		[]string{strconv.FormatInt(amount, 10), strconv.FormatInt(count, 10)}).AsInt64()
	if err != nil {
		return 0, false, err
	}
	return gen, gen >= 0, nil
}

// Window is what an api replica re-reads of a campaign it answers from
// memory.
type Window struct {
	Loaded bool
	EndMs  int64 // the campaign's end, unix ms
	Gen    int64 // its stock generation: 0 until stock is first added
}

// ReadWindows reads the window and stock generation of each campaign, in
// one round trip (pipelined); out[i] is keys[i]'s.
func ReadWindows(ctx context.Context, c rueidis.Client, keys []*Keys, out []Window) error {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.B().Hmget().Key(k.Meta()).Field("end", "gen").Build()
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		vs, err := r.ToArray()
		if err != nil {
			return err
		}
		w := Window{}
		if len(vs) == 2 {
			if s, err := vs[0].ToString(); err == nil {
				w.Loaded = true
				if w.EndMs, err = strconv.ParseInt(s, 10, 64); err != nil {
					return err
				}
			}
			if s, err := vs[1].ToString(); err == nil {
				if w.Gen, err = strconv.ParseInt(s, 10, 64); err != nil {
					return err
				}
			}
		}
		out[i] = w
	}
	return nil
}

// StockCount returns the packets of amount left in the campaign of k.
func StockCount(ctx context.Context, c rueidis.Client, k *Keys, amount int64) (int64, error) {
	n, err := c.Do(ctx, c.B().Hget().Key(k.Stock()).Field(strconv.FormatInt(amount, 10)).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	return n, err
}

// ClaimsByAmount counts the campaign's claims per amount (HSCAN: Redis is
// never blocked, and claims made during the count may or may not be in it).
func ClaimsByAmount(ctx context.Context, c rueidis.Client, k *Keys) (map[int64]int64, error) {
	n := make(map[int64]int64)
	err := ScanClaims(ctx, c, k, func(_ string, amount, _ int64) error {
		n[amount]++
		return nil
	})
	return n, err
}

// ClaimOf returns user's claim in the campaign of k; ok is false when
// Redis has none.
func ClaimOf(ctx context.Context, c rueidis.Client, k *Keys, user string) (amount, claimedAtMs int64, ok bool, err error) {
	v, err := c.Do(ctx, c.B().Hget().Key(k.Claims()).Field(user).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	amount, claimedAtMs, err = ParseClaimValue(v)
	return amount, claimedAtMs, err == nil, err
}
