package lua

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/enum"
)

// The moves the api's rebalancer and the reconciler ask for, each under
// the campaign's rebalancing lease (transfer.go): Rebalance gives a bucket
// running low stock, SweepBuckets finishes half-done transfers.

// MoveKind is what a Rebalance did.
type MoveKind int8

// Kinds of Rebalance.
const (
	MoveNone    MoveKind = iota // the bucket had enough stock already, or nothing could move
	MoveRefill                  // stock moved from the pool
	MoveSteal                   // stock moved from the fullest other bucket (the pool was empty)
	MoveSoldOut                 // nothing left anywhere: every bucket now answers SOLD_OUT
)

var moveNames = [...]string{"none", "refill", "steal", "sold_out"}

func (k MoveKind) String() string { return enum.Name(moveNames[:], k, "unknown") }

// Move is what a Rebalance did.
type Move struct {
	Kind  MoveKind
	From  int   // refill: -1; steal: the bucket stolen from
	Moved int64 // packets moved into the bucket
	Swept int   // half-done transfers finished first
}

// Rebalance gives bucket b stock when it runs low or empty, under the
// campaign's rebalancing lease: first the half-done transfers are
// finished (Sweep); then, unless b already holds want packets, up to want
// move into b from the pool (at most its K-th part, so the pool's last
// packets spread over the buckets); with the pool empty and b empty (the
// tail), half of the fullest other bucket's packets (at most want) are
// stolen; with nothing anywhere, the global check (CheckSoldOut) makes
// every bucket answer SOLD_OUT. ErrLeaseHeld means another process is
// rebalancing this campaign: retry within a bound, or ask the bucket
// again. opt may be nil (the defaults).
func Rebalance(ctx context.Context, c rueidis.Client, l *Layout, b int, want int64, opt *RebalanceOptions) (Move, error) {
	var mv Move
	if l.K() == 1 || b < 0 || b >= l.K() || want < 1 {
		return mv, fmt.Errorf("rebalance bucket %d of %d, want %d", b, l.K(), want)
	}
	ls, err := opt.lock(ctx, c, l)
	if err != nil {
		return mv, err
	}
	defer func() { _ = ls.Unlock(context.WithoutCancel(ctx)) }()
	rnd := opt.rand()
	if mv.Swept, err = ls.Sweep(ctx); err != nil {
		return mv, err
	}
	slots := make([]int, l.K()+1)
	for i := range slots {
		slots[i] = i - 1
	}
	st, err := ls.states(ctx, slots)
	if err != nil {
		return mv, err
	}
	pool, buckets := st[0], st[1:]
	if buckets[b].Left >= want {
		return mv, nil
	}
	if pool.Left > 0 {
		n := min(want, (pool.Left+int64(l.K())-1)/int64(l.K()))
		mv.Kind, mv.From = MoveRefill, -1
		mv.Moved, err = ls.Transfer(ctx, -1, b, n, rnd())
		return mv, err
	}
	if buckets[b].Left > 0 {
		return mv, nil // steals are for an empty bucket only: the tail
	}
	src := -1
	for i, s := range buckets {
		if i != b && s.Left > 0 && (src < 0 || s.Left > buckets[src].Left) {
			src = i
		}
	}
	if src >= 0 {
		n := min(want, (buckets[src].Left+1)/2)
		mv.Kind, mv.From = MoveSteal, src
		mv.Moved, err = ls.Transfer(ctx, src, b, n, rnd())
		return mv, err
	}
	sold, err := ls.CheckSoldOut(ctx)
	if sold {
		mv.Kind = MoveSoldOut
	}
	return mv, err
}

// RebalanceOptions tune Rebalance and SweepBuckets; the zero value (or
// nil) is the defaults.
type RebalanceOptions struct {
	Rand  func() uint64 // the splits' randoms; default math/rand/v2
	Lease time.Duration // default DefaultLease
}

func (o *RebalanceOptions) rand() func() uint64 {
	if o == nil || o.Rand == nil {
		return rand.Uint64
	}
	return o.Rand
}

func (o *RebalanceOptions) lock(ctx context.Context, c rueidis.Client, l *Layout) (*Lease, error) {
	ttl := DefaultLease
	if o != nil && o.Lease > 0 {
		ttl = o.Lease
	}
	return Lock(ctx, c, l, ttl)
}

// SweepBuckets finishes the campaign's half-done transfers (Lease.Sweep)
// under its lease, for the reconciler's passes; ErrLeaseHeld means a
// rebalance is running elsewhere (and sweeps first itself).
func SweepBuckets(ctx context.Context, c rueidis.Client, l *Layout, opt *RebalanceOptions) (int, error) {
	if l.K() == 1 {
		return 0, nil
	}
	ls, err := opt.lock(ctx, c, l)
	if err != nil {
		return 0, err
	}
	defer func() { _ = ls.Unlock(context.WithoutCancel(ctx)) }()
	return ls.Sweep(ctx)
}
