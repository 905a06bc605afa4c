package lua

import (
	"context"
	"fmt"
	"strings"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
)

// Deciding opens: one call of claim.lua decides a batch of users of one
// campaign (ClaimBatch), or of one bucket of a bucketed campaign
// (ClaimBucket, with the script's bucket copy). The arguments and the
// reply are spelled out in claim.lua's header; the story is in
// docs/design.md ("Redis model").

// Claim runs claim.lua for one user in the campaign of k: ClaimBatch of one.
func Claim(ctx context.Context, c rueidis.Client, k *Keys, user string, rnd uint64) (rain.Result, error) {
	var out [1]rain.Result
	err := ClaimBatch(ctx, c, k, []string{user}, []uint64{rnd}, out[:])
	return out[0], err
}

// MaxBatch is the most users one ClaimBatch call takes (claim.lua refuses
// more: a call holds Redis for a few µs per user).
const MaxBatch = 1024

// ClaimBatch decides the opens of users in the campaign of k in one call of
// claim.lua, filling out[i] with the answer to users[i]: the answer a call
// of its own would give, in order (a user twice gets one claim, then
// AlreadyOpened). rnds[i] is users[i]'s random number, uniform in [0, 2^53)
// (higher bits are dropped); the caller draws it (math/rand/v2 is fine).
// users, rnds and out have the same length, 1 to MaxBatch; user ids are not
// empty (else Redis refuses the call and nothing is written).
//
// An error means the outcome is unknown for every user: the script may or
// may not have run (a timeout after sending, say). The claims, if made, are
// in Redis, where a retried open finds them (AlreadyOpened) and the
// reconciler persists them.
func ClaimBatch(ctx context.Context, c rueidis.Client, k *Keys, users []string, rnds []uint64, out []rain.Result) error {
	n := len(users)
	if n == 0 || n > MaxBatch || len(rnds) != n || len(out) != n {
		return fmt.Errorf("claim: %d users, %d randoms, %d results (want 1 to %d of each)", n, len(rnds), len(out), MaxBatch)
	}
	var stack [2 * 64]string // a batch of up to 64 lays out its arguments here, not on the heap
	args := stack[:0]
	if 2*n > len(stack) {
		args = make([]string, 0, 2*n)
	}
	r, ackErr := claimScript.exec(ctx, c, k.ack, k.sync, k.all[:], appendClaimArgs(args, users, rnds))
	msgs, err := r.ToArray()
	if err != nil {
		return err
	}
	if err := parseClaims(msgs, out); err != nil {
		return err
	}
	return ackErr
}

// ClaimBucket decides the opens of users, every one of bucket b (see
// Layout.BucketOf), in one call of claim.lua's bucket copy, filling out[i] with
// the answer to users[i] as ClaimBatch does. Besides claim.lua's outcomes
// a bucket answers Empty (no stock here, maybe elsewhere: Rebalance, then
// ask again) and Busy (frozen). left is the bucket's stock after the call,
// -1 when not read. With K = 1 it is ClaimBatch on the home (left -1): the
// unchanged path. A user of another bucket is refused before any call, so
// no user can ever claim in two buckets.
func ClaimBucket(ctx context.Context, c rueidis.Client, l *Layout, b int, users []string, rnds []uint64, out []rain.Result) (left int64, err error) {
	if l.K() == 1 {
		return -1, ClaimBatch(ctx, c, l.Home, users, rnds, out)
	}
	n := len(users)
	if n == 0 || n > MaxBatch || len(rnds) != n || len(out) != n {
		return -1, fmt.Errorf("claim: %d users, %d randoms, %d results (want 1 to %d of each)", n, len(rnds), len(out), MaxBatch)
	}
	if b < 0 || b >= l.K() {
		return -1, fmt.Errorf("claim: bucket %d of %d", b, l.K())
	}
	for _, u := range users {
		if got := BucketOf(l.ID, u, l.K()); got != b {
			return -1, fmt.Errorf("claim: user %q is in bucket %d, not %d", u, got, b)
		}
	}
	var stack [2 * 64]string
	args := stack[:0]
	if 2*n > len(stack) {
		args = make([]string, 0, 2*n)
	}
	bk := l.Buckets[b].Keys
	r, ackErr := bucketClaimScript.exec(ctx, c, bk.ack, bk.sync, bk.all[:], appendClaimArgs(args, users, rnds))
	msgs, err := r.ToArray()
	if err != nil {
		return -1, err
	}
	left, err = parseBucketClaims(msgs, out)
	if err != nil {
		return -1, err
	}
	return left, ackErr
}

// randDigits is the width of a random number in claim.lua's arguments:
// 2^53-1 has 16 decimal digits.
const randDigits = 16

// appendClaimArgs appends claim.lua's ARGV to args: the user ids, then
// their randoms, written zero-padded to a fixed width into one string (one
// allocation for all of them).
func appendClaimArgs(args, users []string, rnds []uint64) []string {
	var b strings.Builder
	b.Grow(randDigits * len(rnds))
	var d [randDigits]byte
	for _, r := range rnds {
		r &= 1<<53 - 1
		for i := randDigits - 1; i >= 0; i-- {
			d[i] = byte('0' + r%10)
			r /= 10
		}
		b.Write(d[:])
	}
	digits := b.String()
	args = append(args, users...)
	for i := range rnds {
		args = append(args, digits[randDigits*i:randDigits*(i+1)])
	}
	return args
}

// parseClaims reads claim.lua's reply (see the script) into out.
func parseClaims(msgs []rueidis.RedisMessage, out []rain.Result) error {
	_, err := claimReply{script: "claim.lua"}.parse(msgs, out)
	return err
}

// parseBucketClaims reads the reply of claim.lua's bucket copy into out.
func parseBucketClaims(msgs []rueidis.RedisMessage, out []rain.Result) (left int64, err error) {
	return claimReply{script: "claim.lua (bucket)", left: true, bucket: true}.parse(msgs, out)
}

// claimReply is the shape of a claim script's reply: {code} for the whole
// batch, or {end_ms, now_ms[, left], per user: code and its values}.
type claimReply struct {
	script string
	left   bool // a value after now_ms: the stock left (claim.lua's bucket copy)
	bucket bool // BUSY may answer the whole batch and EMPTY a user (claim.lua's bucket copy)
}

// parse reads the reply into out and returns the stock left (-1 when the
// script reports none or the whole batch got one code).
func (f claimReply) parse(msgs []rueidis.RedisMessage, out []rain.Result) (left int64, err error) {
	if len(msgs) == 2 && !f.bucket { // BUCKETED: the same answer for every user
		code, err := msgs[0].AsInt64()
		k, kerr := msgs[1].AsInt64()
		if err != nil || kerr != nil || code != int64(rain.Bucketed) || k < 2 || k > MaxBuckets {
			return -1, fmt.Errorf("%s: bad reply %v", f.script, msgs)
		}
		for i := range out {
			out[i] = rain.Result{Outcome: rain.Bucketed, Buckets: k}
		}
		return -1, nil
	}
	if len(msgs) == 1 { // the same answer for every user
		code, err := msgs[0].AsInt64()
		if err != nil || (code < int64(rain.NotFound) || code > int64(rain.Ended)) && !(f.bucket && code == int64(rain.Busy)) {
			return -1, fmt.Errorf("%s: bad reply %v", f.script, msgs[0])
		}
		for i := range out {
			out[i] = rain.Result{Outcome: rain.Outcome(code)}
		}
		return -1, nil
	}
	p := replyReader{msgs: msgs}
	end, now := p.next(), p.next()
	left = -1
	if f.left {
		left = p.next()
	}
	for i := range out {
		r := rain.Result{EndMs: end}
		switch code := p.next(); {
		case code == int64(rain.OK):
			r.Outcome, r.Amount, r.ClaimedAt = rain.OK, p.next(), now
		case code == int64(rain.AlreadyOpened):
			r.Outcome, r.Amount, r.ClaimedAt = rain.AlreadyOpened, p.next(), p.next()
		case code == int64(rain.SoldOut):
			r.Outcome, r.Claims = rain.SoldOut, p.next()
		case code == int64(rain.Empty) && f.bucket:
			r.Outcome = rain.Empty
		default:
			p.bad = true
		}
		if p.bad {
			return -1, fmt.Errorf("%s: malformed reply at user %d of %d", f.script, i+1, len(out))
		}
		out[i] = r
	}
	if len(p.msgs) != 0 {
		return -1, fmt.Errorf("%s: %d values past the last user in the reply", f.script, len(p.msgs))
	}
	return left, nil
}

// replyReader takes integers off the front of a reply; bad records a
// missing or non-integer value.
type replyReader struct {
	msgs []rueidis.RedisMessage
	bad  bool
}

func (p *replyReader) next() int64 {
	if len(p.msgs) == 0 {
		p.bad = true
		return 0
	}
	v, err := p.msgs[0].AsInt64()
	if err != nil {
		p.bad = true
	}
	p.msgs = p.msgs[1:]
	return v
}
