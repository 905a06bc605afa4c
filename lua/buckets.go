package lua

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// A bucketed campaign as a whole, what the api, the merchant routes and the
// reconciler call: stock added back, the end, the live state, which slots
// hold it and the freeze after a shard's loss, the load and the rebuild
// from PostgreSQL, and claims put back. Given K = 1 each falls back to its
// campaign.go counterpart where it has one. The story, the loss of a shard
// included: docs/design.md, "Hot campaigns".

// AddStockBuckets adds count packets of amount to a bucketed campaign (its
// pool; the buckets draw from it as they run low), clearing every bucket's
// sold-out answer first, under the rebalancing lease (waited for until ctx
// ends). It returns the new stock generation as AddStock does; loaded is
// false, with nothing written, when the campaign is not in Redis.
func AddStockBuckets(ctx context.Context, c rueidis.Client, l *Layout, amount, count int64) (gen int64, loaded bool, err error) {
	if l.K() == 1 {
		return AddStock(ctx, c, l.Home, amount, count)
	}
	ls, err := LockWait(ctx, c, l, DefaultLease)
	if errors.Is(err, ErrNotLoaded) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = ls.Unlock(context.WithoutCancel(ctx)) }()
	gen, err = ls.AddToPool(ctx, amount, count)
	return gen, err == nil, err
}

// EndBuckets ends a campaign's window now (EndNow), no later than endMs:
// with buckets, each bucket first, at its own Redis time (or endMs, or its
// end, whichever is earliest), then the home at the latest of the
// buckets' ends, which it returns: the campaign's end. Every claim is
// taken by a bucket before its own end, so before the campaign's. (Ending
// the home first and each bucket then with the home's end let a bucket
// that ended later, or that a failed request left open until its retry,
// take claims after the campaign's end: make torture, seed 15 on the
// cluster.) A request that fails half way leaves the home open; its retry
// ends the buckets still open and the home at the latest end. loaded is
// false when no part of the campaign is in Redis (nothing written); a home
// not in Redis takes the end from PostgreSQL when it is laid out again.
func EndBuckets(ctx context.Context, c rueidis.Client, l *Layout, endMs int64) (end int64, loaded bool, err error) {
	if l.K() == 1 {
		return EndNow(ctx, c, l.Home, endMs)
	}
	execs := make([]rueidis.LuaExec, l.K())
	parts := make([]*Keys, l.K())
	for b := range l.Buckets {
		execs[b] = rueidis.LuaExec{Keys: []string{l.Buckets[b].Meta()}, Args: []string{strconv.FormatInt(endMs, 10)}}
		parts[b] = l.part(b)
	}
	res, ackErr := endScript.multiAck(ctx, c, execs, parts)
	errs := []error{ackErr}
	last := int64(-1)
	for _, r := range res {
		e, err := r.AsInt64()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		last = max(last, e) // -1: a bucket not in Redis (its load reads the end)
	}
	if err := errors.Join(errs...); err != nil {
		return 0, false, err // the home is left open: the retry ends it
	}
	homeEnd := endMs
	if last >= 0 {
		homeEnd = last
	}
	end, loaded, err = EndNow(ctx, c, l.Home, homeEnd)
	if err != nil {
		return 0, false, err
	}
	if last >= 0 {
		// The home may have ended earlier (an older end); the campaign's
		// end is still no earlier than its buckets'.
		return max(end, last), true, nil
	}
	return end, loaded, nil
}

// BucketState is one bucket's live state.
type BucketState struct {
	Loaded    bool
	Remaining map[int64]int64 // per amount; amounts sold out absent
	Left      int64
	Claims    int64
	Pending   int64 // transfers taken from it, not settled
	Final     bool  // answers SOLD_OUT when empty
	Frozen    bool
}

// LayoutState is a bucketed campaign's live state: State sums the pool and
// the buckets (Loaded: the home and every bucket are), plus the parts.
type LayoutState struct {
	State
	Pool     map[int64]int64
	PoolLeft int64
	Pending  int64 // transfers not settled, from the pool and the buckets
	Frozen   bool  // any part frozen
	Buckets  []BucketState
}

// ReadBuckets reads a campaign's live state in one round trip (a pipeline
// over its slots). Packets in a transfer not yet credited are counted in
// Pending, not in Remaining. With K = 1 it is ReadState with the one
// bucket.
func ReadBuckets(ctx context.Context, c rueidis.Client, l *Layout) (LayoutState, error) {
	var s LayoutState
	if l.K() == 1 {
		st, err := ReadState(ctx, c, l.Home)
		s.State = st
		s.Buckets = []BucketState{{Loaded: st.Loaded, Remaining: st.Remaining, Left: st.Left, Claims: st.Claims}}
		return s, err
	}
	cmds := make(rueidis.Commands, 0, 3+4*l.K())
	cmds = append(cmds, c.B().Hmget().Key(l.Home.Meta()).Field("start", "frozen").Build(),
		c.B().Hgetall().Key(l.pool).Build(), c.B().Hlen().Key(l.out).Build())
	for _, b := range l.Buckets {
		cmds = append(cmds, c.B().Hmget().Key(b.Meta()).Field("start", "final", "frozen").Build(),
			c.B().Hgetall().Key(b.Stock()).Build(), c.B().Hlen().Key(b.Claims()).Build(), c.B().Hlen().Key(b.out).Build())
	}
	rs := c.DoMulti(ctx, cmds...)
	flags := func(r rueidis.RedisResult) ([]bool, error) {
		vs, err := r.ToArray()
		out := make([]bool, len(vs))
		for i, v := range vs {
			out[i] = !v.IsNil()
		}
		return out, err
	}
	home, err := flags(rs[0])
	if err != nil {
		return s, err
	}
	s.Loaded, s.Frozen = home[0], home[1]
	s.Remaining = make(map[int64]int64)
	if s.Pool, s.PoolLeft, err = stockMap(rs[1]); err != nil {
		return s, err
	}
	for a, n := range s.Pool {
		s.Remaining[a] += n
	}
	s.Left = s.PoolLeft
	if s.Pending, err = rs[2].AsInt64(); err != nil {
		return s, err
	}
	s.Buckets = make([]BucketState, l.K())
	for b := range s.Buckets {
		r := rs[3+4*b:]
		bs := &s.Buckets[b]
		f, err := flags(r[0])
		if err != nil {
			return s, err
		}
		bs.Loaded, bs.Final, bs.Frozen = f[0], f[1], f[2]
		s.Loaded = s.Loaded && bs.Loaded
		s.Frozen = s.Frozen || bs.Frozen
		if bs.Remaining, bs.Left, err = stockMap(r[1]); err != nil {
			return s, err
		}
		for a, n := range bs.Remaining {
			s.Remaining[a] += n
		}
		s.Left += bs.Left
		if bs.Claims, err = r[2].AsInt64(); err != nil {
			return s, err
		}
		s.Claims += bs.Claims
		if bs.Pending, err = r[3].AsInt64(); err != nil {
			return s, err
		}
		s.Pending += bs.Pending
	}
	return s, nil
}

// stockMap reads a stock hash (amount -> count) and its sum.
func stockMap(r rueidis.RedisResult) (map[int64]int64, int64, error) {
	m, err := r.AsIntMap()
	if err != nil {
		return nil, 0, err
	}
	out := make(map[int64]int64, len(m))
	var sum int64
	for a, n := range m {
		amount, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("stock hash: bad amount %q", a)
		}
		out[amount] = n
		sum += n
	}
	return out, sum, nil
}

// Health is which of a campaign's slots hold it (their meta hash).
type Health struct {
	Home    bool
	Buckets []bool
	Frozen  bool // some part is frozen
}

// Whole reports whether the home and every bucket are there.
func (h Health) Whole() bool {
	return h.Home && !slices.Contains(h.Buckets, false)
}

// None reports whether no part is there (never loaded, or all lost).
func (h Health) None() bool {
	return !h.Home && !slices.Contains(h.Buckets, true)
}

// CheckLayout reads which slots of the campaign hold it, in one round
// trip. Neither whole nor none means a shard lost its data: Freeze the
// campaign, persist the claims the survivors hold, then Rebuild.
func CheckLayout(ctx context.Context, c rueidis.Client, l *Layout) (Health, error) {
	h := Health{Buckets: make([]bool, l.K())}
	cmds := make(rueidis.Commands, 0, l.K()+1)
	cmds = append(cmds, c.B().Hmget().Key(l.Home.Meta()).Field("start", "frozen").Build())
	if l.K() > 1 {
		for _, b := range l.Buckets {
			cmds = append(cmds, c.B().Hmget().Key(b.Meta()).Field("start", "frozen").Build())
		}
	}
	for i, r := range c.DoMulti(ctx, cmds...) {
		vs, err := r.ToArray()
		if err != nil {
			return h, err
		}
		there := len(vs) == 2 && !vs[0].IsNil()
		h.Frozen = h.Frozen || len(vs) == 2 && !vs[1].IsNil()
		if i == 0 {
			h.Home = there
			if l.K() == 1 {
				h.Buckets[0] = there
			}
		} else {
			h.Buckets[i-1] = there
		}
	}
	return h, nil
}

// Freeze marks every part of the campaign still in Redis frozen: its
// buckets answer BUSY (nothing claimed) and no stock moves until Rebuild.
// It returns how many parts it froze.
func Freeze(ctx context.Context, c rueidis.Client, l *Layout) (int, error) {
	execs := []rueidis.LuaExec{{Keys: []string{l.Home.Meta()}}}
	parts := []*Keys{l.Home}
	if l.K() > 1 {
		for b := range l.Buckets {
			execs = append(execs, rueidis.LuaExec{Keys: []string{l.Buckets[b].Meta()}})
			parts = append(parts, l.part(b))
		}
	}
	n := 0
	res, ackErr := bucketFreezeScript.multiAck(ctx, c, execs, parts)
	errs := []error{ackErr}
	for _, r := range res {
		v, err := r.AsInt64()
		if err != nil {
			errs = append(errs, err)
		}
		n += int(v)
	}
	return n, errors.Join(errs...)
}

// ErrPartial: some of the campaign's slots have their data and some do
// not (a shard lost its data): freeze it and rebuild it from PostgreSQL.
var ErrPartial = errors.New("campaign partly missing from redis")

// LoadBuckets makes a bucketed campaign visible to opens unless it already
// is, as Load with RestoreClaims does for K = 1: claims (user id ->
// ClaimValue, from claim_log) are restored into their users' buckets
// first; each amount's remaining stock is its total less the claims the
// buckets then hold; half of it is dealt into the buckets (Deal) and the
// rest kept in the pool; each bucket's meta is written after its stock and
// the home's meta last. It reports whether it loaded the campaign; a
// campaign partly there (a shard lost its data) fails with ErrPartial,
// writing nothing: Freeze, persist the survivors' claims, Rebuild. With
// K = 1 it is RestoreClaims, then Load of the totals less the claims.
func LoadBuckets(ctx context.Context, c rueidis.Client, l *Layout, startMs, endMs int64, totals map[int64]int64, claims map[string]string) (bool, error) {
	return LoadBucketsFrom(ctx, c, l, startMs, endMs, totals, func(add func(user, value string) error) error {
		for user, v := range claims {
			if err := add(user, v); err != nil {
				return err
			}
		}
		return nil
	})
}

// LoadBucketsFrom is LoadBuckets with the claims streamed: each calls add
// with every persisted claim (user id, ClaimValue), and they go to their
// buckets RestoreChunk at a time, so a campaign of millions of claims is
// never held in memory. An error of each or of add ends it (nothing is
// made visible: the home's meta is written last).
func LoadBucketsFrom(ctx context.Context, c rueidis.Client, l *Layout, startMs, endMs int64, totals map[int64]int64,
	each func(add func(user, value string) error) error) (bool, error) {
	h, err := CheckLayout(ctx, c, l)
	if err != nil {
		return false, err
	}
	if h.Whole() && !h.Frozen {
		return false, nil
	}
	if !h.None() { // a part lost, or frozen by a rebuild that did not finish
		return false, ErrPartial
	}
	chunk := make(map[string]string, RestoreChunk)
	flush := func() error {
		err := RestoreClaimsBuckets(ctx, c, l, chunk)
		clear(chunk)
		return err
	}
	err = each(func(user, value string) error {
		chunk[user] = value
		if len(chunk) == RestoreChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return false, err
	}
	return true, loadBuckets(ctx, c, l, startMs, endMs, totals, nil, time.Now().UnixMilli()*1000)
}

// RestoreChunk is how many claims a load writes to Redis at a time.
const RestoreChunk = 1000

// RestoreClaimsBuckets writes claims (user id -> ClaimValue) into their
// users' buckets, without overwriting any present.
func RestoreClaimsBuckets(ctx context.Context, c rueidis.Client, l *Layout, claims map[string]string) error {
	per := make([]map[string]string, l.K())
	for user, v := range claims {
		b := BucketOf(l.ID, user, l.K())
		if per[b] == nil {
			per[b] = make(map[string]string)
		}
		per[b][user] = v
	}
	for b, m := range per {
		if len(m) > 0 {
			if err := RestoreClaims(ctx, c, l.Buckets[b].Keys, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// remainingAfter restores claims into their buckets and returns each
// amount's total less the claims the buckets then hold.
func remainingAfter(ctx context.Context, c rueidis.Client, l *Layout, totals map[int64]int64, claims map[string]string) (map[int64]int64, error) {
	if err := RestoreClaimsBuckets(ctx, c, l, claims); err != nil {
		return nil, err
	}
	remaining := make(map[int64]int64, len(totals))
	for a, n := range totals {
		remaining[a] = n
	}
	for _, b := range l.Buckets {
		err := ScanClaims(ctx, c, b.Keys, func(_ string, amount, _ int64) error {
			remaining[amount] = max(0, remaining[amount]-1)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return remaining, nil
}

func loadBuckets(ctx context.Context, c rueidis.Client, l *Layout, startMs, endMs int64, totals map[int64]int64, claims map[string]string, fence int64) error {
	remaining, err := remainingAfter(ctx, c, l, totals, claims)
	if err != nil {
		return err
	}
	if l.K() == 1 {
		_, err := Load(ctx, c, l.Home, startMs, endMs, remaining)
		return err
	}
	amounts := make([]int64, 0, len(remaining))
	for a := range remaining {
		amounts = append(amounts, a)
	}
	slices.Sort(amounts)
	counts := make([]int64, len(amounts))
	for i, a := range amounts {
		counts[i] = remaining[a]
	}
	dealt, pool := Deal(counts, l.K(), rand.Uint64)
	args := func(meta []string, stock []int64) []string {
		a := []string{strconv.FormatInt(startMs, 10), strconv.FormatInt(endMs, 10), strconv.Itoa(len(meta) / 2)}
		a = append(a, meta...)
		for i, n := range stock {
			if n > 0 {
				a = append(a, strconv.FormatInt(amounts[i], 10), strconv.FormatInt(n, 10))
			}
		}
		return a
	}
	f := strconv.FormatInt(fence, 10)
	execs := make([]rueidis.LuaExec, l.K())
	parts := make([]*Keys, l.K())
	for b := range l.Buckets {
		execs[b] = rueidis.LuaExec{Keys: []string{l.Buckets[b].Meta(), l.Buckets[b].Stock()},
			Args: args([]string{"fence", f}, dealt[b])}
		parts[b] = l.part(b)
	}
	res, err := bucketLoadScript.multiAck(ctx, c, execs, parts)
	for b, r := range res {
		if err := r.Error(); err != nil {
			return fmt.Errorf("load bucket %d: %w", b, err)
		}
	}
	if err != nil {
		return err
	}
	r, err := bucketLoadScript.exec(ctx, c, l.Home.ack, l.Home.sync, []string{l.Home.Meta(), l.pool},
		args([]string{"fence", f, "buckets", strconv.Itoa(l.K())}, pool))
	return errors.Join(r.Error(), err)
}

// ErrNotFrozen: Rebuild refuses a campaign that some part still serves.
var ErrNotFrozen = errors.New("campaign not frozen: rebuild only after Freeze and persisting its claims")

// Rebuild replaces a bucketed campaign whose shard lost its data with one
// laid out afresh from PostgreSQL: totals per amount and every persisted
// claim (after Freeze, once the claims the surviving parts hold are in
// claim_log, so none is dropped). Every key of the campaign is deleted and
// LoadBuckets' layout written, with a fence above any the old parts had
// seen, so a lease of before the loss can move nothing. Each bucket's
// claims are restored before its meta makes it serve again: a user who
// had a packet gets ALREADY_OPENED, never a second one. It refuses
// (ErrNotFrozen) while a part that is there is not frozen.
func Rebuild(ctx context.Context, c rueidis.Client, l *Layout, startMs, endMs int64, totals map[int64]int64, claims map[string]string) error {
	if l.K() == 1 {
		return errors.New("rebuild: a campaign of one bucket is rebuilt by Load")
	}
	metas := []string{l.Home.Meta()}
	for _, b := range l.Buckets {
		metas = append(metas, b.Meta())
	}
	cmds := make(rueidis.Commands, len(metas))
	for i, m := range metas {
		cmds[i] = c.B().Hmget().Key(m).Field("start", "frozen", "fence").Build()
	}
	fence := time.Now().UnixMilli() * 1000
	for _, r := range c.DoMulti(ctx, cmds...) {
		vs, err := r.ToArray()
		if err != nil {
			return err
		}
		if len(vs) != 3 {
			return fmt.Errorf("rebuild: bad HMGET reply %v", vs)
		}
		if !vs[0].IsNil() && vs[1].IsNil() {
			return ErrNotFrozen
		}
		if f, err := vs[2].AsInt64(); err == nil {
			fence = max(fence, f+1)
		}
	}
	if _, err := unlink(ctx, c, l.AllKeys()); err != nil {
		return err
	}
	return loadBuckets(ctx, c, l, startMs, endMs, totals, claims, fence)
}

// ReaddBuckets puts back into a loaded bucketed campaign the claims Redis
// lacks (readd.lua on each claim's bucket). A claim put back whose amount
// its bucket no longer holds takes a packet of that amount from the pool
// or another bucket instead (bucket_burn.lua); it is oversold only when no
// part holds one. It returns how many were put back and how many of those
// were oversold. With K = 1 it is Readd.
func ReaddBuckets(ctx context.Context, c rueidis.Client, l *Layout, claims []Record) (readded, oversold int, err error) {
	if l.K() == 1 {
		return Readd(ctx, c, l.Home, claims)
	}
	execs := make([]rueidis.LuaExec, len(claims))
	parts := make([]*Keys, len(claims))
	for i, cl := range claims {
		parts[i] = l.BucketOf(cl.User).Keys
		execs[i] = readdExec(parts[i], cl)
	}
	res, ackErr := readdScript.multiAck(ctx, c, execs, parts)
	if ackErr != nil {
		return readded, oversold, ackErr
	}
	// Amounts put back without a packet in their bucket take one elsewhere.
	readded, short, err := tallyReadd(res, claims)
	if err != nil {
		return readded, oversold, err
	}
	for _, amount := range short {
		ok, err := burn(ctx, c, l, amount)
		if err != nil {
			return readded, oversold, err
		}
		if !ok {
			oversold++
		}
	}
	return readded, oversold, nil
}

// burn takes one packet of amount from the pool, else from the bucket
// holding the most of it.
func burn(ctx context.Context, c rueidis.Client, l *Layout, amount int64) (bool, error) {
	a := strconv.FormatInt(amount, 10)
	cmds := make(rueidis.Commands, 0, l.K())
	for _, b := range l.Buckets {
		cmds = append(cmds, c.B().Hget().Key(b.Stock()).Field(a).Build())
	}
	stocks := []string{l.pool}
	owners := []*Keys{l.Home} // the keys of each stock's slot
	var counts []int64
	for i, r := range c.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		stocks = append(stocks, l.Buckets[i].Stock())
		owners = append(owners, l.part(i))
		counts = append(counts, n)
	}
	// The pool first, then the buckets, most first.
	order := make([]int, len(counts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(counts[y], counts[x]) })
	try := []int{0}
	for _, i := range order {
		try = append(try, i+1)
	}
	for _, i := range try {
		r, ackErr := bucketBurnScript.exec(ctx, c, owners[i].ack, owners[i].sync, []string{stocks[i]}, []string{a})
		n, err := r.AsInt64()
		if err = errors.Join(err, ackErr); err != nil {
			return false, err
		}
		if n == 1 {
			return true, nil
		}
	}
	return false, nil
}

// ErrInTransit: a settle found stock in a transfer it could not finish.
var ErrInTransit = errors.New("stock in transit between a campaign's parts")

// SettleStock makes Redis hold the stock PostgreSQL's totals say, for the
// amounts of want (the packets pending additions add per amount), from one
// snapshot: per amount, the shortfall is the total less the packets Redis
// holds (in stock and claimed), and up to want of it is added. Each slot
// is counted in one atomic step (stock_count.lua), so an open during the
// count is counted once; with K > 1 the count runs under the rebalancing
// lease after a sweep, so no packet is between slots, and the stock goes
// to the pool under the same lease. It returns what it added; loaded is
// false when Redis does not hold the campaign (nothing written).
func SettleStock(ctx context.Context, c rueidis.Client, l *Layout, totals, want map[int64]int64) (added map[int64]int64, loaded bool, err error) {
	var ls *Lease
	if l.K() > 1 {
		if ls, err = LockWait(ctx, c, l, DefaultLease); errors.Is(err, ErrNotLoaded) {
			return nil, false, nil
		} else if err != nil {
			return nil, false, err
		}
		defer func() { _ = ls.Unlock(context.WithoutCancel(ctx)) }()
		if _, err := ls.Sweep(ctx); err != nil {
			return nil, true, err
		}
	}
	held, loaded, err := countStock(ctx, c, l)
	if err != nil || !loaded {
		return nil, loaded, err
	}
	added = make(map[int64]int64)
	for amount, n := range want {
		add := min(totals[amount]-held[amount], n)
		if add <= 0 {
			continue
		}
		if ls != nil {
			_, err = ls.AddToPool(ctx, amount, add)
		} else {
			_, _, err = AddStock(ctx, c, l.Home, amount, add)
		}
		if err != nil {
			return added, true, err
		}
		added[amount] = add
	}
	return added, true, nil
}

// countStock is the packets per amount the campaign's slots hold, in
// stock or claimed, each slot counted atomically; loaded is false when a
// slot is not in Redis.
func countStock(ctx context.Context, c rueidis.Client, l *Layout) (map[int64]int64, bool, error) {
	parts := []int{-1}
	if l.K() > 1 {
		for b := range l.Buckets {
			parts = append(parts, b)
		}
	}
	execs := make([]rueidis.LuaExec, len(parts))
	keys := make([]*Keys, len(parts))
	for i, p := range parts {
		k := l.part(p)
		keys[i] = k
		stock, out := k.Stock(), l.out
		if p < 0 && l.K() > 1 {
			stock = l.pool
		} else if p >= 0 {
			out = l.Buckets[p].out
		}
		execs[i] = rueidis.LuaExec{Keys: []string{k.Meta(), stock, k.Claims(), out}}
	}
	// In replica mode each count is followed by a WAIT on its slot: what
	// was counted must be on a replica before a settle relies on it (a
	// restock on the master alone, lost with it, would be marked applied).
	res, ackErr := stockCountScript.multiAck(ctx, c, execs, keys)
	if ackErr != nil {
		return nil, false, fmt.Errorf("stock count: %w", ackErr)
	}
	held := make(map[int64]int64)
	for i, r := range res {
		v, err := r.AsIntSlice()
		if err != nil {
			return nil, false, fmt.Errorf("stock_count.lua, part %d: %w", parts[i], err)
		}
		switch {
		case len(v) == 1 && v[0] == -1:
			return nil, false, nil
		case len(v)%3 != 1:
			return nil, false, fmt.Errorf("stock_count.lua: bad reply %v", v)
		case v[0] > 0:
			return nil, true, ErrInTransit
		}
		for j := 1; j < len(v); j += 3 {
			held[v[j]] += v[j+1] + v[j+2]
		}
	}
	return held, true, nil
}
