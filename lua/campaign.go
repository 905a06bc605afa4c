package lua

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// One campaign's keys (meta, stock, claims), as a campaign of one bucket
// lays them out: making it visible (Load), its claims restored, re-added
// and read, its live state, and the merchant's end and added stock. A
// bucket's keys have the same shape, so the bucketed operations
// (buckets.go) call some of these on each bucket.

// Load makes a campaign visible to opens with the given remaining stock per
// amount, unless it already is. It reports whether it loaded the campaign.
// Restore the campaign's claims first (RestoreClaims) when rebuilding.
func Load(ctx context.Context, c rueidis.Client, k *Keys, startMs, endMs int64, remaining map[int64]int64) (bool, error) {
	args := make([]string, 0, 2+2*len(remaining))
	args = append(args, strconv.FormatInt(startMs, 10), strconv.FormatInt(endMs, 10))
	for amount, n := range remaining {
		args = append(args, strconv.FormatInt(amount, 10), strconv.FormatInt(n, 10))
	}
	r, ackErr := loadScript.exec(ctx, c, k.ack, k.sync, k.all[:2], args)
	n, err := r.AsInt64()
	return n == 1, errors.Join(err, ackErr)
}

// Exists reports whether the campaign is loaded (its meta hash exists).
func Exists(ctx context.Context, c rueidis.Client, k *Keys) (bool, error) {
	n, err := c.Do(ctx, c.B().Exists().Key(k.Meta()).Build()).AsInt64()
	return n == 1, err
}

// ClaimValue is the claims-hash value for a claim: "amount:claimed_at_ms".
func ClaimValue(amount, claimedAtMs int64) string {
	return strconv.FormatInt(amount, 10) + ":" + strconv.FormatInt(claimedAtMs, 10)
}

// ParseClaimValue splits a claims-hash value into amount and unix ms.
func ParseClaimValue(v string) (amount, claimedAtMs int64, err error) {
	a, t, ok := strings.Cut(v, ":")
	if ok {
		if amount, err = strconv.ParseInt(a, 10, 64); err == nil {
			claimedAtMs, err = strconv.ParseInt(t, 10, 64)
		}
	}
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("bad claim value %q", v)
	}
	return amount, claimedAtMs, nil
}

// RestoreClaims writes claims (user id -> ClaimValue) into the campaign's
// claims hash without overwriting any present, in chunks.
func RestoreClaims(ctx context.Context, c rueidis.Client, k *Keys, claims map[string]string) error {
	const chunk = 500
	cmds := make(rueidis.Commands, 0, len(claims))
	for user, v := range claims {
		cmds = append(cmds, c.B().Hsetnx().Key(k.Claims()).Field(user).Value(v).Build())
	}
	for len(cmds) > 0 {
		n := min(chunk, len(cmds))
		res, ackErr := k.ack.do(ctx, c, k.sync, []string{k.Claims()}, cmds[:n]...)
		for _, r := range res {
			if err := r.Error(); err != nil {
				return err
			}
		}
		if ackErr != nil {
			return ackErr
		}
		cmds = cmds[n:]
	}
	return nil
}

// Record is one claim as the claims hash records it.
type Record struct {
	User        string
	Amount      int64
	ClaimedAtMs int64
}

// Readd puts back into a loaded campaign the claims Redis lacks (readd.lua),
// taking each from the stock. It returns how many were put back and how
// many of those found their amount already sold out (oversold).
func Readd(ctx context.Context, c rueidis.Client, k *Keys, claims []Record) (readded, oversold int, err error) {
	execs := make([]rueidis.LuaExec, len(claims))
	for i, cl := range claims {
		execs[i] = readdExec(k, cl)
	}
	res := readdScript.ExecMulti(ctx, c, execs...)
	// One barrier after them all: a sync write and WAIT on the slot cover
	// every write made there before it.
	if err := k.ack.barrier(ctx, c, k.sync, k.all[:]); err != nil {
		return readded, oversold, err
	}
	readded, short, err := tallyReadd(res, claims)
	return readded, len(short), err
}

// readdExec is readd.lua's call for claim cl on the keys k.
func readdExec(k *Keys, cl Record) rueidis.LuaExec {
	return rueidis.LuaExec{Keys: k.all[:], Args: []string{cl.User,
		ClaimValue(cl.Amount, cl.ClaimedAtMs), strconv.FormatInt(cl.Amount, 10)}}
}

// tallyReadd reads readd.lua's replies to claims: how many were put back,
// and the amounts of those put back without a packet left to take (2).
func tallyReadd(res []rueidis.RedisResult, claims []Record) (readded int, short []int64, err error) {
	for i, r := range res {
		n, err := r.AsInt64()
		if err != nil {
			return readded, short, err
		}
		if n > 0 {
			readded++
		}
		if n == 2 {
			short = append(short, claims[i].Amount)
		}
	}
	return readded, short, nil
}

// State is a campaign's live state in Redis.
type State struct {
	Loaded    bool
	Remaining map[int64]int64 // per amount; amounts sold out are absent
	Left      int64           // packets remaining in all
	Claims    int64           // users who claimed
}

// ReadState reads a campaign's live state in one round trip.
func ReadState(ctx context.Context, c rueidis.Client, k *Keys) (State, error) {
	rs := c.DoMulti(ctx,
		c.B().Exists().Key(k.Meta()).Build(),
		c.B().Hgetall().Key(k.Stock()).Build(),
		c.B().Hlen().Key(k.Claims()).Build())
	var s State
	loaded, err := rs[0].AsInt64()
	if err != nil {
		return s, err
	}
	s.Loaded = loaded == 1
	stock, err := rs[1].AsIntMap()
	if err != nil {
		return s, err
	}
	s.Remaining = make(map[int64]int64, len(stock))
	for a, n := range stock {
		amount, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return s, fmt.Errorf("stock hash: bad amount %q", a)
		}
		s.Remaining[amount] = n
		s.Left += n
	}
	if s.Claims, err = rs[2].AsInt64(); err != nil {
		return s, err
	}
	return s, nil
}

// ScanClaims calls fn for every claim of the campaign (HSCAN, so Redis is
// never blocked by a large campaign).
func ScanClaims(ctx context.Context, c rueidis.Client, k *Keys, fn func(user string, amount, claimedAtMs int64) error) error {
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Hscan().Key(k.Claims()).Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(e.Elements); i += 2 {
			amount, at, err := ParseClaimValue(e.Elements[i+1])
			if err != nil {
				return fmt.Errorf("campaign %d user %q: %w", k.ID, e.Elements[i], err)
			}
			if err := fn(e.Elements[i], amount, at); err != nil {
				return err
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
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

// StockCount returns the packets of amount left in the campaign of k.
func StockCount(ctx context.Context, c rueidis.Client, k *Keys, amount int64) (int64, error) {
	n, err := c.Do(ctx, c.B().Hget().Key(k.Stock()).Field(strconv.FormatInt(amount, 10)).Build()).AsInt64()
	if rueidis.IsRedisNil(err) {
		return 0, nil
	}
	return n, err
}

// The merchant's side: end.lua and restock.lua both change the meta hash,
// which besides start and end holds 'gen', the campaign's stock
// generation, bumped by every stock restock.lua adds. Every api replica
// re-reads both (ReadWindows) to keep its answers from memory exact.

// EndNow ends the campaign of k at the earliest of its end, endMs and
// Redis's clock, and returns that end. loaded is false when Redis does not
// hold the campaign; then nothing was written.
func EndNow(ctx context.Context, c rueidis.Client, k *Keys, endMs int64) (end int64, loaded bool, err error) {
	r, ackErr := endScript.exec(ctx, c, k.ack, k.sync, k.all[:1], []string{strconv.FormatInt(endMs, 10)})
	end, err = r.AsInt64()
	if err = errors.Join(err, ackErr); err != nil {
		return 0, false, err
	}
	return end, end >= 0, nil
}

// AddStock adds count packets of amount to the campaign of k and bumps its
// stock generation, which it returns. loaded is false when Redis does not
// hold the campaign; then nothing was written.
func AddStock(ctx context.Context, c rueidis.Client, k *Keys, amount, count int64) (gen int64, loaded bool, err error) {
	r, ackErr := restockScript.exec(ctx, c, k.ack, k.sync, k.all[:2],
		[]string{strconv.FormatInt(amount, 10), strconv.FormatInt(count, 10)})
	gen, err = r.AsInt64()
	if err = errors.Join(err, ackErr); err != nil {
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

// Identity is what a campaign's home meta hash says of the PostgreSQL row
// its keys were loaded from: Row (written after a load, SetRow), the start
// and the bucket count (1 when the field is absent). A restored database
// hands out ids again, so keys of an id may be another row's; the loader
// and the catalog compare (docs/durability.md, "A restored database").
type Identity struct {
	Loaded  bool
	Row     string
	StartMs int64
	Buckets int
}

// ReadIdentities reads the identity of each campaign in one round trip;
// out[i] is keys[i]'s.
func ReadIdentities(ctx context.Context, c rueidis.Client, keys []*Keys, out []Identity) error {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.B().Hmget().Key(k.Meta()).Field("start", "row", "buckets").Build()
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		vs, err := r.ToArray()
		if err != nil {
			return err
		}
		id := Identity{Buckets: 1}
		if len(vs) == 3 {
			if s, err := vs[0].ToString(); err == nil {
				id.Loaded = true
				if id.StartMs, err = strconv.ParseInt(s, 10, 64); err != nil {
					return fmt.Errorf("%s start: %w", keys[i].Meta(), err)
				}
			}
			id.Row, _ = vs[1].ToString()
			if s, err := vs[2].ToString(); err == nil {
				if id.Buckets, err = strconv.Atoi(s); err != nil || checkBuckets(id.Buckets) != nil {
					return fmt.Errorf("%s buckets %q", keys[i].Meta(), s)
				}
			}
		}
		out[i] = id
	}
	return nil
}

// SetRow records in a loaded campaign's meta hash the row its keys belong
// to (nothing when the campaign is not loaded).
func SetRow(ctx context.Context, c rueidis.Client, k *Keys, row string) error {
	r, ackErr := setRowScript.exec(ctx, c, k.ack, k.sync, k.all[:1], []string{row})
	return errors.Join(r.Error(), ackErr)
}

// ClearCampaign deletes every key of campaign id laid out over k buckets
// (the keys of another row found under its id), the loading lock aside.
func ClearCampaign(ctx context.Context, c rueidis.Client, ks Keyspace, id int64, k int) error {
	l, err := ks.Layout(id, k)
	if err != nil {
		return err
	}
	_, err = unlink(ctx, c, l.AllKeys())
	return err
}
