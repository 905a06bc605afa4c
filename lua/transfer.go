package lua

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Stock moving between a bucketed campaign's parts (its pool and its
// buckets): the rebalancing lease, whose fence every script that moves
// stock checks; transfers (taken and logged at the source, credited once
// at the destination, settled at the source) and the sweep that finishes
// the half-done ones; the global sold-out check; stock added to the pool.
// The story is in docs/design.md ("Hot campaigns"); why the sold-out check
// is exact, at CheckSoldOut.

// Errors of the bucket scripts' wrappers.
var (
	// ErrNotLoaded: a slot the operation needs has no meta hash.
	ErrNotLoaded = errors.New("campaign not loaded in redis")
	// ErrLeaseHeld: another process holds the campaign's rebalancing lease.
	ErrLeaseHeld = errors.New("rebalancing lease held by another process")
	// ErrFenced: a newer lease has acted on a slot (this one expired).
	ErrFenced = errors.New("rebalancing lease superseded by a newer one")
	// ErrFrozen: the campaign is frozen for a rebuild.
	ErrFrozen = errors.New("campaign frozen for a rebuild")
)

// refusal maps the scripts' negative codes to errors.
func refusal(code int64) error {
	switch code {
	case -1:
		return ErrNotLoaded
	case -2:
		return ErrFenced
	case -3:
		return ErrFrozen
	}
	return fmt.Errorf("bucket script: unexpected code %d", code)
}

// DefaultLease is how long a rebalancing lease lasts unless released.
const DefaultLease = 2 * time.Second

// Lease is a held rebalancing lease of a bucketed campaign: stock moves
// under it, fenced by its number.
type Lease struct {
	c     rueidis.Client
	l     *Layout
	Fence int64
	seq   int64
}

// Lock takes the rebalancing lease of the campaign of l for ttl (at least
// 1 ms). It fails with ErrLeaseHeld when another process holds it, and
// with ErrNotLoaded or ErrFrozen.
func Lock(ctx context.Context, c rueidis.Client, l *Layout, ttl time.Duration) (*Lease, error) {
	// The fence is acknowledged like a write that moves stock: a failover
	// that lost it could hand an older fence out again.
	r, ackErr := bucketLockScript.exec(ctx, c, l.Home.ack, l.Home.sync, []string{l.Home.Meta(), l.rebal},
		[]string{strconv.FormatInt(max(ttl.Milliseconds(), 1), 10)})
	f, err := r.AsInt64()
	switch {
	case err != nil:
		return nil, err
	case f > 0 && ackErr != nil:
		_ = bucketUnlockScript.Exec(context.WithoutCancel(ctx), c, []string{l.rebal}, []string{strconv.FormatInt(f, 10)}).Error()
		return nil, ackErr
	case f == 0:
		return nil, ErrLeaseHeld
	case f < 0:
		return nil, refusal(f)
	}
	return &Lease{c: c, l: l, Fence: f}, nil
}

// LockWait is Lock, retrying every few milliseconds while another process
// holds the lease, until ctx ends.
func LockWait(ctx context.Context, c rueidis.Client, l *Layout, ttl time.Duration) (*Lease, error) {
	for {
		ls, err := Lock(ctx, c, l, ttl)
		if !errors.Is(err, ErrLeaseHeld) {
			return ls, err
		}
		t := time.NewTimer(2 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (%w)", ErrLeaseHeld, ctx.Err())
		case <-t.C:
		}
	}
}

// Unlock releases the lease if it is still this one's.
func (ls *Lease) Unlock(ctx context.Context) error {
	return bucketUnlockScript.Exec(ctx, ls.c, []string{ls.l.rebal}, []string{strconv.FormatInt(ls.Fence, 10)}).Error()
}

// source is the keys of a transfer's source: -1 the pool, else a bucket.
func (l *Layout) source(src int) []string {
	if src < 0 {
		return []string{l.Home.Meta(), l.pool, l.out}
	}
	b := &l.Buckets[src]
	return []string{b.Meta(), b.Stock(), b.out}
}

func (l *Layout) creditKeys(dst int) []string {
	b := &l.Buckets[dst]
	return []string{b.Meta(), b.Stock(), b.in}
}

// Transfer moves up to n packets from src (-1: the pool; else a bucket)
// into bucket dst, in proportion to the source's counts (r is the random
// of the split): the source is debited and the transfer logged there, then
// the destination credited once (by the transfer's id), then the log entry
// settled. It returns the packets moved (0: the source was empty). After
// an error the transfer may be half done (debited, not credited): it stays
// in the source's log, and Sweep finishes it.
func (ls *Lease) Transfer(ctx context.Context, src, dst int, n int64, r uint64) (int64, error) {
	if dst < 0 || dst >= ls.l.K() || src >= ls.l.K() || src == dst || ls.l.K() == 1 {
		return 0, fmt.Errorf("transfer from %d to %d of %d buckets", src, dst, ls.l.K())
	}
	ls.seq++
	id := strconv.FormatInt(ls.Fence, 10) + "." + strconv.FormatInt(ls.seq, 10)
	taken, list, err := ls.take(ctx, src, dst, id, n, r)
	if err != nil || taken == 0 {
		return 0, err
	}
	if err := ls.settle(ctx, src, dst, id, list); err != nil {
		return taken, err
	}
	return taken, nil
}

// take is the debit half of a transfer.
func (ls *Lease) take(ctx context.Context, src, dst int, id string, n int64, r uint64) (int64, string, error) {
	from := ls.l.part(src)
	res, ackErr := bucketTakeScript.exec(ctx, ls.c, from.ack, from.sync, ls.l.source(src), []string{strconv.FormatInt(ls.Fence, 10), id,
		strconv.Itoa(dst), strconv.FormatInt(n, 10), strconv.FormatUint(r&(1<<53-1), 10)})
	msgs, err := res.ToArray()
	if err != nil {
		return 0, "", err
	}
	taken, err := msgs[0].AsInt64()
	if err != nil {
		return 0, "", err
	}
	if taken < 0 {
		return 0, "", refusal(taken)
	}
	if ackErr != nil {
		// Debited on the master, not yet on a replica: no credit until it
		// is (a later Sweep credits it once it is acknowledged).
		return 0, "", fmt.Errorf("transfer %s: debit: %w", id, ackErr)
	}
	if len(msgs) != 2 {
		return 0, "", fmt.Errorf("bucket_take.lua: bad reply of %d values", len(msgs))
	}
	list, err := msgs[1].ToString()
	return taken, list, err
}

// settle credits a debited transfer at dst and removes it from the
// source's log: the rest of a transfer, and what Sweep replays.
func (ls *Lease) settle(ctx context.Context, src, dst int, id, list string) error {
	// The debit must be on a replica before the credit: a failover that
	// lost the debit while the credit stood would make packets twice. A
	// barrier on the source acknowledges every write made there before it
	// (the debit, whichever process made it).
	from, to := ls.l.part(src), ls.l.part(dst)
	if err := from.ack.barrier(ctx, ls.c, from.sync, ls.l.source(src)); err != nil {
		return fmt.Errorf("transfer %s: debit: %w", id, err)
	}
	r, ackErr := bucketCreditScript.exec(ctx, ls.c, to.ack, to.sync, ls.l.creditKeys(dst), []string{strconv.FormatInt(ls.Fence, 10), id, list})
	code, err := r.AsInt64()
	if err != nil {
		return err
	}
	if code < 0 {
		return fmt.Errorf("transfer %s to bucket %d: %w", id, dst, refusal(code))
	}
	if ackErr != nil {
		// Credited on the master, not yet on a replica: the log entry
		// stays, so a Sweep credits it again (once, by its id) if a
		// failover lost this credit.
		return fmt.Errorf("transfer %s: credit: %w", id, ackErr)
	}
	return ls.c.Do(ctx, ls.c.B().Hdel().Key(ls.l.source(src)[2]).Field(id).Build()).Error()
}

// Sweep finishes the transfers left half done (debited, maybe not
// credited: a process died or lost a reply between the two): each logged
// transfer is credited at its destination, once whatever happened before,
// and settled. It returns how many it finished.
func (ls *Lease) Sweep(ctx context.Context) (int, error) {
	srcs := make([]int, 0, ls.l.K()+1)
	cmds := make(rueidis.Commands, 0, ls.l.K()+1)
	for src := -1; src < ls.l.K(); src++ {
		srcs = append(srcs, src)
		cmds = append(cmds, ls.c.B().Hgetall().Key(ls.l.source(src)[2]).Build())
	}
	done := 0
	var errs []error
	for i, r := range ls.c.DoMulti(ctx, cmds...) {
		log, err := r.AsStrMap()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for id, v := range log {
			d, list, ok := strings.Cut(v, "|")
			dst, err := strconv.Atoi(d)
			if !ok || err != nil || dst < 0 || dst >= ls.l.K() {
				errs = append(errs, fmt.Errorf("transfer log entry %s=%q", id, v))
				continue
			}
			if err := ls.settle(ctx, srcs[i], dst, id, list); err != nil {
				errs = append(errs, err)
				continue
			}
			done++
		}
	}
	return done, errors.Join(errs...)
}

// SlotState is one slot's part of the global check (bucket_state.lua).
type SlotState struct {
	Left    int64 // packets in its stock (the pool's, or the bucket's)
	Pending int64 // transfers taken from it and not settled
	Final   bool
	Frozen  bool
}

// states reads, under the lease and stamped with its fence, the state of
// the given slots (-1: the home and its pool), in one round trip.
func (ls *Lease) states(ctx context.Context, slots []int) ([]SlotState, error) {
	execs := make([]rueidis.LuaExec, len(slots))
	for i, s := range slots {
		execs[i] = rueidis.LuaExec{Keys: ls.l.source(s), Args: []string{strconv.FormatInt(ls.Fence, 10)}}
	}
	out := make([]SlotState, len(slots))
	var errs []error
	for i, r := range bucketStateScript.multi(ctx, ls.c, execs) {
		v, err := r.AsIntSlice()
		if err == nil && len(v) == 1 && v[0] < 0 {
			err = refusal(v[0])
		} else if err == nil && len(v) != 5 {
			err = fmt.Errorf("bucket_state.lua: bad reply %v", v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", slots[i], err))
			continue
		}
		out[i] = SlotState{Left: v[1], Pending: v[2], Final: v[3] == 1, Frozen: v[4] == 1}
	}
	return out, errors.Join(errs...)
}

// setFinal sets (or clears) 'final' on the given buckets; done[i] reports
// bucket i's.
func (ls *Lease) setFinal(ctx context.Context, buckets []int, on bool) (done []bool, err error) {
	arg := "0"
	if on {
		arg = "1"
	}
	execs := make([]rueidis.LuaExec, len(buckets))
	parts := make([]*Keys, len(buckets))
	for i, b := range buckets {
		execs[i] = rueidis.LuaExec{Keys: ls.l.source(b), Args: []string{strconv.FormatInt(ls.Fence, 10), arg}}
		parts[i] = ls.l.part(b)
	}
	done = make([]bool, len(buckets))
	res, ackErr := bucketFinalScript.multiAck(ctx, ls.c, execs, parts)
	errs := []error{ackErr}
	for i, r := range res {
		code, err := r.AsInt64()
		if err == nil && code < 0 {
			err = refusal(code)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bucket %d: %w", buckets[i], err))
			continue
		}
		done[i] = code == 1
	}
	return done, errors.Join(errs...)
}

// CheckSoldOut is the global empty check: under this lease it reads every
// bucket, then the home (pool and pool transfers), each stamped with the
// fence; if all are empty with nothing in transit it sets 'final' on every
// bucket and reports true, after which the buckets answer SOLD_OUT.
//
// Why that is exact without a cross-slot script: stock only rises by
// fenced scripts (a credit, stock added to the pool), and claims only
// lower it. A bucket read empty under fence f can be credited afterwards
// only by a lease newer than f, whose stamp then refuses this lease's
// 'final' there. So when every 'final' is accepted, each bucket was empty
// from its read to its 'final', the home read (between them) found the
// pool empty and nothing in transit: at that moment no packet existed
// anywhere but in claims. Stock added back later clears every 'final'
// first, under a newer lease. If a 'final' is refused the ones set are
// cleared again and it reports false.
func (ls *Lease) CheckSoldOut(ctx context.Context) (bool, error) {
	k := ls.l.K()
	all := make([]int, k)
	for b := range all {
		all[b] = b
	}
	st, err := ls.states(ctx, all)
	if err != nil {
		return false, err
	}
	for _, s := range st {
		if s.Left > 0 || s.Pending > 0 {
			return false, nil
		}
	}
	home, err := ls.states(ctx, []int{-1})
	if err != nil {
		return false, err
	}
	if home[0].Left > 0 || home[0].Pending > 0 {
		return false, nil
	}
	done, err := ls.setFinal(ctx, all, true)
	ok := err == nil
	var set []int
	for b, d := range done {
		ok = ok && d
		if d {
			set = append(set, b)
		}
	}
	if ok {
		return true, nil
	}
	if len(set) > 0 {
		if _, cerr := ls.setFinal(ctx, set, false); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	return false, err
}

// AddToPool adds count packets of amount to the campaign's pool under this
// lease, after clearing every bucket's 'final' (so no bucket answers
// SOLD_OUT while the pool holds stock), and returns the new stock
// generation.
func (ls *Lease) AddToPool(ctx context.Context, amount, count int64) (gen int64, err error) {
	all := make([]int, ls.l.K())
	for b := range all {
		all[b] = b
	}
	if _, err := ls.setFinal(ctx, all, false); err != nil {
		return 0, err
	}
	r, ackErr := bucketPoolAddScript.exec(ctx, ls.c, ls.l.Home.ack, ls.l.Home.sync, []string{ls.l.Home.Meta(), ls.l.pool}, []string{
		strconv.FormatInt(ls.Fence, 10), strconv.FormatInt(amount, 10), strconv.FormatInt(count, 10)})
	gen, err = r.AsInt64()
	if err == nil && gen < 0 {
		err = refusal(gen)
	}
	return gen, errors.Join(err, ackErr)
}
