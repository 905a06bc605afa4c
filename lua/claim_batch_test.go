package lua_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

func batch(t testing.TB, c rueidis.Client, k *lua.Keys, users []string, rnds []uint64) []rain.Result {
	t.Helper()
	if rnds == nil {
		rnds = make([]uint64, len(users))
		for i := range rnds {
			rnds[i] = rand.Uint64()
		}
	}
	out := make([]rain.Result, len(users))
	if err := lua.ClaimBatch(context.Background(), c, k, users, rnds, out); err != nil {
		t.Fatalf("claim batch %v: %v", users, err)
	}
	return out
}

// orderedCampaign writes a live campaign's stock with the amounts in the
// given order (the order claim.lua walks them in), so a test can predict
// every draw from the randoms.
func orderedCampaign(t testing.TB, c rueidis.Client, amounts, counts []int64) *lua.Keys {
	t.Helper()
	k := testenv.Keys().Of(nextID.Add(1))
	ctx := context.Background()
	t.Cleanup(func() { c.Do(ctx, c.B().Unlink().Key(k.Meta(), k.Stock(), k.Claims()).Build()) })
	stock := c.B().Hset().Key(k.Stock()).FieldValue()
	for i, a := range amounts {
		stock = stock.FieldValue(strconv.FormatInt(a, 10), strconv.FormatInt(counts[i], 10))
	}
	now := time.Now()
	for _, r := range c.DoMulti(ctx, stock.Build(), c.B().Hset().Key(k.Meta()).FieldValue().
		FieldValue("start", strconv.FormatInt(now.Add(-time.Hour).UnixMilli(), 10)).
		FieldValue("end", strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)).Build()) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

// hashes returns the campaign's stock and claims hashes.
func hashes(t testing.TB, c rueidis.Client, k *lua.Keys) (stock, claims map[string]string) {
	t.Helper()
	ctx := context.Background()
	stock, err := c.Do(ctx, c.B().Hgetall().Key(k.Stock()).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	claims, err = c.Do(ctx, c.B().Hgetall().Key(k.Claims()).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	return stock, claims
}

func TestClaimBatchWholeBatchOutcomes(t *testing.T) {
	c := testenv.Redis(t)
	now := time.Now()
	for _, tc := range []struct {
		name string
		k    *lua.Keys
		want rain.Outcome
	}{
		{"unknown campaign", testenv.Keys().Of(nextID.Add(1)), rain.NotFound},
		{"future campaign", newCampaign(t, c, now.Add(time.Hour), now.Add(2*time.Hour), map[int64]int64{5: 9}), rain.NotStarted},
		{"past campaign", newCampaign(t, c, now.Add(-2*time.Hour), now.Add(-time.Hour), map[int64]int64{5: 9}), rain.Ended},
	} {
		got := batch(t, c, tc.k, []string{"a", "b", "a"}, nil)
		for i, r := range got {
			if r != (rain.Result{Outcome: tc.want}) {
				t.Errorf("%s, user %d: %+v, want %v alone", tc.name, i, r, tc.want)
			}
		}
		if stock, claims := hashes(t, c, tc.k); len(claims) != 0 || (tc.want != rain.NotFound && stock["5"] != "9") {
			t.Errorf("%s: stock %v, claims %v after the batch; want untouched", tc.name, stock, claims)
		}
	}
}

// TestClaimBatchMixture: one batch holds a user who opened before, new
// users, a user twice, and more users than packets.
func TestClaimBatchMixture(t *testing.T) {
	c := testenv.Redis(t)
	k := orderedCampaign(t, c, []int64{5}, []int64{2})
	// A claim made long ago (as a restore writes it).
	first := rain.Result{Amount: 20, ClaimedAt: 1_000_000}
	if err := lua.RestoreClaims(context.Background(), c, k, map[string]string{"old": lua.ClaimValue(20, first.ClaimedAt)}); err != nil {
		t.Fatal(err)
	}
	got := batch(t, c, k, []string{"old", "new1", "new1", "new2", "new3", "new4", "old"}, nil)
	end, now := got[1].EndMs, got[1].ClaimedAt
	want := []rain.Result{
		{Outcome: rain.AlreadyOpened, Amount: 20, ClaimedAt: first.ClaimedAt, EndMs: end},
		{Outcome: rain.OK, Amount: 5, ClaimedAt: now, EndMs: end},
		{Outcome: rain.AlreadyOpened, Amount: 5, ClaimedAt: now, EndMs: end}, // the same user again: one claim
		{Outcome: rain.OK, Amount: 5, ClaimedAt: now, EndMs: end},
		{Outcome: rain.SoldOut, EndMs: end, Claims: 3},
		{Outcome: rain.SoldOut, EndMs: end, Claims: 3},
		{Outcome: rain.AlreadyOpened, Amount: 20, ClaimedAt: first.ClaimedAt, EndMs: end}, // before stock
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("batch:\n got %+v\nwant %+v", got, want)
	}
	if now < time.Now().Add(-time.Minute).UnixMilli() || now > time.Now().UnixMilli()+1000 || end < time.Now().Add(59*time.Minute).UnixMilli() {
		t.Errorf("claimed at %d, end %d: want about now, and the end in about an hour", now, end)
	}
	stock, claims := hashes(t, c, k)
	wantClaims := map[string]string{"old": lua.ClaimValue(20, first.ClaimedAt), "new1": lua.ClaimValue(5, now), "new2": lua.ClaimValue(5, now)}
	if len(stock) != 0 || !reflect.DeepEqual(claims, wantClaims) {
		t.Errorf("after the batch: stock %v (want empty: sold-out amounts removed), claims %v (want %v)", stock, claims, wantClaims)
	}
	if r := batch(t, c, k, []string{"new5"}, nil); r[0] != (rain.Result{Outcome: rain.SoldOut, EndMs: end, Claims: 3}) {
		t.Errorf("a batch of one after the sell-out: %+v", r[0])
	}
}

// drawModel is claim.lua's draw in Go: amounts in the stock hash's order,
// counts kept in step; it returns the amount each random picks (0: sold out).
func drawModel(amounts, counts []int64, rnds []uint64) []int64 {
	picks := make([]int64, len(rnds))
	for i, rnd := range rnds {
		var left int64
		for _, n := range counts {
			left += n
		}
		if left == 0 {
			continue
		}
		r := int64(rnd&(1<<53-1)) % left
		for j, n := range counts {
			if r < n {
				picks[i], counts[j] = amounts[j], n-1
				break
			}
			r -= n
		}
	}
	return picks
}

// TestClaimBatchFollowsTheModel: every pick, batched or not, is the one
// the randoms and the stock's order decide (so the same randoms give the
// same picks on a second campaign of the same stock), and the stock hash
// afterwards holds exactly the packets left, sold-out amounts removed.
func TestClaimBatchFollowsTheModel(t *testing.T) {
	c := testenv.Redis(t)
	amounts, counts := []int64{1, 2, 3, 50}, []int64{5, 3, 1, 40}
	k1, k2 := orderedCampaign(t, c, amounts, counts), orderedCampaign(t, c, amounts, counts)
	model := slices.Clone(counts)
	user := 0
	for _, n := range []int{1, 4, 16, 7, 1, 33, 5} { // 67 users for 49 packets
		users, rnds := make([]string, n), make([]uint64, n)
		for i := range users {
			users[i], rnds[i] = fmt.Sprint("u", user), rand.Uint64()
			user++
		}
		picks := drawModel(amounts, model, rnds)
		got1, got2 := batch(t, c, k1, users, rnds), batch(t, c, k2, users, rnds)
		for i, r := range got1 {
			want := rain.OK
			if picks[i] == 0 {
				want = rain.SoldOut
			}
			if r.Outcome != want || r.Amount != picks[i] || (want == rain.SoldOut && r.Claims != 49) {
				t.Errorf("batch of %d, user %d: %+v, want %v %d", n, i, r, want, picks[i])
			}
			if got2[i].Outcome != r.Outcome || got2[i].Amount != r.Amount {
				t.Errorf("batch of %d, user %d: the same random picked %d and %d", n, i, r.Amount, got2[i].Amount)
			}
		}
		stock, _ := hashes(t, c, k1)
		wantStock := map[string]string{}
		for j, a := range amounts {
			if model[j] > 0 {
				wantStock[strconv.FormatInt(a, 10)] = strconv.FormatInt(model[j], 10)
			}
		}
		if !reflect.DeepEqual(stock, wantStock) {
			t.Errorf("after the batch of %d: stock %v, want %v", n, stock, wantStock)
		}
	}
}

// TestClaimBatchTakesEachPacketOnce: a batch as large as the bag empties
// it exactly, whatever the randoms; the next user in it is SOLD_OUT.
func TestClaimBatchTakesEachPacketOnce(t *testing.T) {
	c := testenv.Redis(t)
	for range 20 {
		k := live(t, c, map[int64]int64{1: 3, 2: 3, 3: 3})
		users := make([]string, 10)
		for i := range users {
			users[i] = fmt.Sprint("u", i)
		}
		got := map[int64]int{}
		for i, r := range batch(t, c, k, users, nil) {
			switch {
			case i < 9 && r.Outcome == rain.OK:
				got[r.Amount]++
			case i == 9 && r.Outcome == rain.SoldOut && r.Claims == 9:
			default:
				t.Fatalf("user %d: %+v", i, r)
			}
		}
		if !reflect.DeepEqual(got, map[int64]int{1: 3, 2: 3, 3: 3}) {
			t.Fatalf("a batch of 9 from {1:3, 2:3, 3:3} drew %v", got)
		}
	}
}

// TestClaimBatchOfMaxBatch: the largest batch, more users than packets.
func TestClaimBatchOfMaxBatch(t *testing.T) {
	c := testenv.Redis(t)
	k := live(t, c, map[int64]int64{1: 900, 2: 100})
	users := make([]string, lua.MaxBatch)
	for i := range users {
		users[i] = fmt.Sprint("u", i)
	}
	got := map[int64]int{}
	for i, r := range batch(t, c, k, users, nil) {
		switch {
		case i < 1000 && r.Outcome == rain.OK:
			got[r.Amount]++
		case i >= 1000 && r.Outcome == rain.SoldOut && r.Claims == 1000:
		default:
			t.Fatalf("user %d: %+v", i, r)
		}
	}
	if _, claims := hashes(t, c, k); !reflect.DeepEqual(got, map[int64]int{1: 900, 2: 100}) || len(claims) != 1000 {
		t.Errorf("drew %v, %d claims recorded; want all 1,000 packets", got, len(claims))
	}
}

// TestClaimBatchDrawIsWeighted: as TestDrawIsWeightedByRemaining, in
// batches of 16.
func TestClaimBatchDrawIsWeighted(t *testing.T) {
	c := testenv.Redis(t)
	k := live(t, c, map[int64]int64{1: 90_000, 1000: 10_000})
	const draws = 4000
	users := make([]string, 16)
	big := 0
	for i := 0; i < draws; i += len(users) {
		for j := range users {
			users[j] = fmt.Sprint("u", i+j)
		}
		for _, r := range batch(t, c, k, users, nil) {
			if r.Amount == 1000 {
				big++
			}
		}
	}
	if share := float64(big) / draws; share < 0.06 || share > 0.14 {
		t.Errorf("share of 1000s: %.3f, want 0.06-0.14", share)
	}
}

// TestClaimBatchRefusesBadArguments: claim.lua checks every argument before
// its first write; a bad one anywhere in the batch fails the whole call and
// leaves both hashes as they were.
func TestClaimBatchRefusesBadArguments(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	k := live(t, c, map[int64]int64{5: 3})
	claim(t, c, k, "alice")
	stock, claims := hashes(t, c, k)
	keys := []string{k.Meta(), k.Stock(), k.Claims()}
	many := make([]string, 2*1025)
	for i := range 1025 {
		many[i], many[1025+i] = fmt.Sprint("u", i), "1"
	}
	for _, args := range [][]string{
		{},
		{"bob"},
		{"bob", "carol", "1"},
		many,
		{"bob", "", "1", "2"},
		{"bob", "carol", "1", ""},
		{"bob", "carol", "1", "-1"},
		{"bob", "carol", "1", "9007199254740992"},
		{"bob", "carol", "1", "1e400"},
		{"bob", "carol", "1", "1.5"},
		{"bob", "carol", "1", "abc"},
		{"bob", "carol", "1", "nan"},
		{"bob", "carol", "1", "inf"},
	} {
		err := lua.ClaimScript.Exec(ctx, c, keys, args).Error()
		if err == nil || !strings.Contains(err.Error(), "RPARGS") {
			t.Errorf("ARGV %.60q: %v, want an RPARGS error", args, err)
		}
		if s, cl := hashes(t, c, k); !reflect.DeepEqual(s, stock) || !reflect.DeepEqual(cl, claims) {
			t.Errorf("ARGV %.60q wrote: stock %v, claims %v; was %v, %v", args, s, cl, stock, claims)
		}
	}
	// The same through the Go wrapper: an empty user id fails the batch.
	out := make([]rain.Result, 2)
	if err := lua.ClaimBatch(ctx, c, k, []string{"bob", ""}, []uint64{1, 2}, out); err == nil {
		t.Error("a batch with an empty user id: no error")
	}
	// Arguments are checked even where the campaign is unknown.
	unknown := testenv.Keys().Of(nextID.Add(1))
	if err := lua.ClaimScript.Exec(ctx, c, []string{unknown.Meta(), unknown.Stock(), unknown.Claims()}, []string{"bob", "x"}).Error(); err == nil {
		t.Error("bad random for an unknown campaign: no error")
	}
	if s, cl := hashes(t, c, k); !reflect.DeepEqual(s, stock) || !reflect.DeepEqual(cl, claims) {
		t.Errorf("refused batches wrote: stock %v, claims %v; was %v, %v", s, cl, stock, claims)
	}
	// The bounds themselves are fine.
	r, err := lua.ClaimScript.Exec(ctx, c, keys, []string{"bob", "carol", "9007199254740991", "0"}).ToArray()
	if err != nil || len(r) != 6 {
		t.Errorf("randoms 2^53-1 and 0: %v %v, want two claims", r, err)
	}
}

func TestClaimBatchLengths(t *testing.T) {
	k := testenv.Keys().Of(1)
	for _, tc := range []struct {
		users []string
		rnds  []uint64
		out   int
	}{
		{nil, nil, 0},
		{[]string{"a"}, nil, 1},
		{[]string{"a"}, []uint64{1}, 0},
		{[]string{"a", "b"}, []uint64{1}, 2},
		{make([]string, lua.MaxBatch+1), make([]uint64, lua.MaxBatch+1), lua.MaxBatch + 1},
	} {
		// Refused before Redis is asked: the nil client is never used.
		if err := lua.ClaimBatch(context.Background(), nil, k, tc.users, tc.rnds, make([]rain.Result, tc.out)); err == nil {
			t.Errorf("%d users, %d randoms, %d results: no error", len(tc.users), len(tc.rnds), tc.out)
		}
	}
}

func TestClaimArgs(t *testing.T) {
	got := lua.ClaimArgs([]string{"a", "b", "c", "d"}, []uint64{0, 42, 1<<53 - 1, math.MaxUint64})
	want := []string{"a", "b", "c", "d", "0000000000000000", "0000000000000042", "9007199254740991", "9007199254740991"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("args %q, want %q", got, want)
	}
}

// verbatim returns a function giving the reply Redis makes to a script
// that returns the Lua value src as it is (for the reply parsers' tests).
func verbatim(t *testing.T, c rueidis.Client) func(src string) []rueidis.RedisMessage {
	return func(src string) []rueidis.RedisMessage {
		t.Helper()
		msgs, err := c.Do(context.Background(), c.B().Eval().Script("return "+src).Numkeys(0).Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		return msgs
	}
}

// TestParseClaims feeds the reply parser replies Redis makes from a script
// that returns them verbatim.
func TestParseClaims(t *testing.T) {
	reply := verbatim(t, testenv.Redis(t))
	out := make([]rain.Result, 3)
	if err := lua.ParseClaims(reply("{100, 50, 5, 20, 3, 5, 40, 4, 2}"), out); err != nil {
		t.Fatal(err)
	}
	want := []rain.Result{
		{Outcome: rain.OK, Amount: 20, ClaimedAt: 50, EndMs: 100},
		{Outcome: rain.AlreadyOpened, Amount: 5, ClaimedAt: 40, EndMs: 100},
		{Outcome: rain.SoldOut, EndMs: 100, Claims: 2},
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("parsed %+v, want %+v", out, want)
	}
	if err := lua.ParseClaims(reply("{1}"), out); err != nil || out[0] != (rain.Result{Outcome: rain.NotStarted}) || out[2] != out[0] {
		t.Errorf("{1}: %+v %v, want NOT_STARTED for all", out, err)
	}
	for _, bad := range []struct {
		reply string
		users int
	}{
		{"{7}", 1},                      // no such code
		{"{3}", 1},                      // not a whole-batch code
		{"{}", 1},                       // empty
		{"{100, 50, 5}", 1},             // OK without its amount
		{"{100, 50, 9, 1}", 1},          // no such code
		{"{100, 50, 5, 'twenty'}", 1},   // not an integer
		{"{100, 50, 4, 3}", 2},          // a user missing
		{"{100, 50, 5, 20, 5, 20}", 1},  // a user too many
		{"{100, 50, 3, 20}", 1},         // ALREADY_OPENED without its time
		{"{100, 50, 261, 20, 40}", 1},   // a code that is 5 in int8
		{"{'x', 50, 5, 20}", 1},         // end not an integer
		{"{100, 50, 5, 20, 4}", 2},      // SOLD_OUT without its count
		{"{100, 50, 3, 20, 40, 7}", 1},  // left over
		{"{100, 50, 5, 20, 0, 0}", 2},   // a per-user NOT_FOUND
		{"{100, 50, -5, 20, 5, 20}", 2}, // negative code
		{"{100, 50, 5, 20, 'OK'}", 2},   // a string code
		{"{100, 50, 4, {1}}", 1},        // a nested array
	} {
		if err := lua.ParseClaims(reply(bad.reply), make([]rain.Result, bad.users)); err == nil {
			t.Errorf("%s for %d users: parsed", bad.reply, bad.users)
		}
	}
}

// TestClaimBatchConcurrent: 40 goroutines send batches of 1 to 32 users
// for 1,000 packets; each batch also carries a user drawn from everyone
// (a repeat or a race with another batch). Every packet goes exactly once,
// nobody gets two, and every repeat is told its own amount.
func TestClaimBatchConcurrent(t *testing.T) {
	c := testenv.Redis(t)
	stock := map[int64]int64{1: 700, 10: 250, 100: 50}
	k := live(t, c, stock)
	const users, workers = 5000, 40
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won      = map[string]int64{}
		repeats  []rain.Result
		repeated []string
		soldOut  int
	)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []string
			for i := g; i < users; i += workers {
				mine = append(mine, fmt.Sprint("user-", i))
			}
			for len(mine) > 0 {
				n := min(1+rand.IntN(32), len(mine))
				b := append(mine[:n:n], fmt.Sprint("user-", rand.IntN(users)))
				mine = mine[n:]
				rnds := make([]uint64, len(b))
				for i := range rnds {
					rnds[i] = rand.Uint64()
				}
				out := make([]rain.Result, len(b))
				if err := lua.ClaimBatch(context.Background(), c, k, b, rnds, out); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i, r := range out {
					switch r.Outcome {
					case rain.OK:
						if _, twice := won[b[i]]; twice {
							t.Errorf("%s won twice", b[i])
						}
						won[b[i]] = r.Amount
					case rain.AlreadyOpened:
						repeats, repeated = append(repeats, r), append(repeated, b[i])
					case rain.SoldOut:
						if r.Claims != 1000 {
							t.Errorf("SOLD_OUT with %d claims, want 1000", r.Claims)
						}
						soldOut++
					default:
						t.Errorf("%s: %v", b[i], r.Outcome)
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got := map[int64]int64{}
	for _, a := range won {
		got[a]++
	}
	if len(won) != 1000 || !reflect.DeepEqual(got, stock) {
		t.Errorf("%d winners drew %v, want 1000 drawing %v", len(won), got, stock)
	}
	for i, r := range repeats {
		if a, ok := won[repeated[i]]; !ok || a != r.Amount {
			t.Errorf("%s: ALREADY_OPENED with %d, but won %d (%v)", repeated[i], r.Amount, a, ok)
		}
	}
	if soldOut < users-1000 {
		t.Errorf("%d SOLD_OUT, want at least %d", soldOut, users-1000)
	}
	_, claims := hashes(t, c, k)
	for u, v := range claims {
		if a, _, err := lua.ParseClaimValue(v); err != nil || won[u] != a {
			t.Errorf("claims hash: %s = %q, but won %d", u, v, won[u])
		}
	}
	if len(claims) != 1000 {
		t.Errorf("claims hash holds %d users, want 1000", len(claims))
	}
	if st, err := lua.ReadState(context.Background(), c, k); err != nil || st.Left != 0 || len(st.Remaining) != 0 {
		t.Errorf("state: %+v %v, want nothing left", st, err)
	}
}
