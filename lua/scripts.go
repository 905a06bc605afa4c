// Package lua holds the Redis side of the service: the embedded Lua scripts
// (claim.lua decides every open; load.lua makes a campaign visible), their
// typed Go wrappers, and the key scheme (keys.go).
package lua

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
)

var (
	//go:embed claim.lua
	claimSrc string
	//go:embed load.lua
	loadSrc string
	//go:embed readd.lua
	readdSrc string

	// One script object each for the life of the process: Exec sends
	// EVALSHA and falls back to EVAL by itself after NOSCRIPT (a restarted
	// or failed-over Redis has an empty script cache).
	claimScript = rueidis.NewLuaScript(claimSrc)
	loadScript  = rueidis.NewLuaScript(loadSrc)
	readdScript = rueidis.NewLuaScript(readdSrc)
)

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
	msgs, err := claimScript.Exec(ctx, c, k.all[:], appendClaimArgs(args, users, rnds)).ToArray()
	if err != nil {
		return err
	}
	return parseClaims(msgs, out)
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

// Load makes a campaign visible to opens with the given remaining stock per
// amount, unless it already is. It reports whether it loaded the campaign.
// Restore the campaign's claims first (RestoreClaims) when rebuilding.
func Load(ctx context.Context, c rueidis.Client, k *Keys, startMs, endMs int64, remaining map[int64]int64) (bool, error) {
	args := make([]string, 0, 2+2*len(remaining))
	args = append(args, strconv.FormatInt(startMs, 10), strconv.FormatInt(endMs, 10))
	for amount, n := range remaining {
		args = append(args, strconv.FormatInt(amount, 10), strconv.FormatInt(n, 10))
	}
	n, err := loadScript.Exec(ctx, c, k.all[:2], args).AsInt64()
	return n == 1, err
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
		for _, r := range c.DoMulti(ctx, cmds[:n]...) {
			if err := r.Error(); err != nil {
				return err
			}
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
		execs[i] = rueidis.LuaExec{Keys: k.all[:], Args: []string{cl.User,
			ClaimValue(cl.Amount, cl.ClaimedAtMs), strconv.FormatInt(cl.Amount, 10)}}
	}
	for _, r := range readdScript.ExecMulti(ctx, c, execs...) {
		n, err := r.AsInt64()
		if err != nil {
			return readded, oversold, err
		}
		if n > 0 {
			readded++
		}
		if n == 2 {
			oversold++
		}
	}
	return readded, oversold, nil
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
