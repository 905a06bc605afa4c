package lua_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
)

// campaignIDs hands each test campaign ids no other test run uses.
var nextID atomic.Int64

func init() { nextID.Store(time.Now().UnixNano()/1000%1e12*1000 + 1e15) }

// newCampaign loads a campaign with the window [start, end) and stock into
// Redis, removing its keys when the test ends.
func newCampaign(t testing.TB, c rueidis.Client, start, end time.Time, stock map[int64]int64) *lua.Keys {
	t.Helper()
	k := testenv.Keys().Of(nextID.Add(1))
	ctx := context.Background()
	t.Cleanup(func() { c.Do(ctx, c.B().Unlink().Key(k.Meta(), k.Stock(), k.Claims()).Build()) })
	loaded, err := lua.Load(ctx, c, k, start.UnixMilli(), end.UnixMilli(), stock)
	if err != nil || !loaded {
		t.Fatalf("load: %v %v", loaded, err)
	}
	return k
}

func live(t testing.TB, c rueidis.Client, stock map[int64]int64) *lua.Keys {
	return newCampaign(t, c, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), stock)
}

func claim(t *testing.T, c rueidis.Client, k *lua.Keys, user string) rain.Result {
	t.Helper()
	r, err := lua.Claim(context.Background(), c, k, user, rand.Uint64())
	if err != nil {
		t.Fatalf("claim %s: %v", user, err)
	}
	return r
}

func TestClaimBranches(t *testing.T) {
	c := testenv.Redis(t)
	now := time.Now()

	if r := claim(t, c, testenv.Keys().Of(nextID.Add(1)), "u"); r.Outcome != rain.NotFound {
		t.Errorf("unknown campaign: %v, want NOT_FOUND", r.Outcome)
	}
	future := newCampaign(t, c, now.Add(time.Hour), now.Add(2*time.Hour), map[int64]int64{5: 1})
	if r := claim(t, c, future, "u"); r.Outcome != rain.NotStarted {
		t.Errorf("future campaign: %v, want NOT_STARTED", r.Outcome)
	}
	past := newCampaign(t, c, now.Add(-2*time.Hour), now.Add(-time.Hour), map[int64]int64{5: 1})
	if r := claim(t, c, past, "u"); r.Outcome != rain.Ended {
		t.Errorf("past campaign: %v, want ENDED", r.Outcome)
	}

	k := live(t, c, map[int64]int64{20: 1})
	before := time.Now().UnixMilli()
	r := claim(t, c, k, "alice")
	if r.Outcome != rain.OK || r.Amount != 20 || r.ClaimedAt < before-1000 || r.ClaimedAt > time.Now().UnixMilli()+1000 {
		t.Fatalf("first open: %+v, want OK 20 at about now", r)
	}
	if r.EndMs < time.Now().Add(59*time.Minute).UnixMilli() || r.EndMs > time.Now().Add(time.Hour).UnixMilli() {
		t.Errorf("OK reply carries end %d, want the campaign's end in about an hour", r.EndMs)
	}
	if again := claim(t, c, k, "alice"); again.Outcome != rain.AlreadyOpened || again.Amount != 20 || again.ClaimedAt != r.ClaimedAt || again.EndMs != r.EndMs {
		t.Errorf("second open by alice: %+v, want ALREADY_OPENED with the same amount and time", again)
	}
	if so := claim(t, c, k, "bob"); so.Outcome != rain.SoldOut || so.EndMs != r.EndMs || so.Claims != 1 {
		t.Errorf("open after sell-out: %+v, want SOLD_OUT with the end time and 1 claim", so)
	}
	// Already opened is checked before stock: alice still gets her amount.
	if r := claim(t, c, k, "alice"); r.Outcome != rain.AlreadyOpened {
		t.Errorf("alice after sell-out: %v, want ALREADY_OPENED", r.Outcome)
	}
	st, err := lua.ReadState(context.Background(), c, k)
	if err != nil || !st.Loaded || st.Left != 0 || st.Claims != 1 || len(st.Remaining) != 0 {
		t.Errorf("state after sell-out: %+v %v", st, err)
	}
	// The claims hash records amount and time: the reconciler's source.
	var seen int
	err = lua.ScanClaims(context.Background(), c, k, func(user string, amount, at int64) error {
		seen++
		if user != "alice" || amount != 20 || at != r.ClaimedAt {
			t.Errorf("claims hash: %s %d %d", user, amount, at)
		}
		return nil
	})
	if err != nil || seen != 1 {
		t.Errorf("scan claims: %d %v", seen, err)
	}
}

func TestWindowChecksComeBeforeAlreadyOpened(t *testing.T) {
	c := testenv.Redis(t)
	now := time.Now()
	k := newCampaign(t, c, now.Add(-2*time.Hour), now.Add(-time.Hour), map[int64]int64{5: 1})
	// A claim recorded earlier (as a restore would write it).
	if err := lua.RestoreClaims(context.Background(), c, k, map[string]string{"alice": lua.ClaimValue(5, 1)}); err != nil {
		t.Fatal(err)
	}
	if r := claim(t, c, k, "alice"); r.Outcome != rain.Ended {
		t.Errorf("ended campaign, earlier claimant: %v, want ENDED (window before already-opened)", r.Outcome)
	}
}

func TestLoadIsOnce(t *testing.T) {
	c := testenv.Redis(t)
	k := live(t, c, map[int64]int64{5: 2})
	claim(t, c, k, "u1")
	loaded, err := lua.Load(context.Background(), c, k, 0, time.Now().Add(time.Hour).UnixMilli(), map[int64]int64{5: 2})
	if err != nil || loaded {
		t.Fatalf("second load: %v %v, want not loaded", loaded, err)
	}
	if st, _ := lua.ReadState(context.Background(), c, k); st.Left != 1 {
		t.Errorf("a second load must not reset the stock: left %d, want 1", st.Left)
	}
}

// TestConcurrentOpens: 5,000 users race for 1,000 packets of three amounts.
func TestConcurrentOpens(t *testing.T) {
	c := testenv.Redis(t)
	stock := map[int64]int64{1: 700, 10: 250, 100: 50}
	k := live(t, c, stock)
	const users = 5000
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		got     = map[int64]int64{}
		winners = map[string]bool{}
		soldOut atomic.Int64
	)
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < users; i += 50 {
				u := fmt.Sprintf("user-%d", i)
				r, err := lua.Claim(context.Background(), c, k, u, rand.Uint64())
				if err != nil {
					t.Error(err)
					return
				}
				switch r.Outcome {
				case rain.OK:
					mu.Lock()
					got[r.Amount]++
					if winners[u] {
						t.Errorf("%s won twice", u)
					}
					winners[u] = true
					mu.Unlock()
				case rain.SoldOut:
					soldOut.Add(1)
				default:
					t.Errorf("%s: %v", u, r.Outcome)
				}
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1000 || soldOut.Load() != users-1000 {
		t.Errorf("%d OK and %d SOLD_OUT, want 1000 and %d", len(winners), soldOut.Load(), users-1000)
	}
	for a, n := range stock {
		if got[a] != n {
			t.Errorf("amount %d: %d claimed, want %d", a, got[a], n)
		}
	}
	st, err := lua.ReadState(context.Background(), c, k)
	if err != nil || st.Left != 0 || st.Claims != 1000 {
		t.Errorf("state: %+v %v", st, err)
	}
}

// TestDrawIsWeightedByRemaining: 90% of the packets are 1s and 10% 1000s,
// in a bag large enough that 2,000 draws barely change the odds; the share
// of 1000s must land in 6-14% (about 4.5 standard deviations each side).
func TestDrawIsWeightedByRemaining(t *testing.T) {
	c := testenv.Redis(t)
	k := live(t, c, map[int64]int64{1: 90_000, 1000: 10_000})
	const draws = 2000
	big := 0
	for i := 0; i < draws; i++ {
		if r := claim(t, c, k, fmt.Sprintf("u%d", i)); r.Amount == 1000 {
			big++
		}
	}
	if share := float64(big) / draws; share < 0.06 || share > 0.14 {
		t.Errorf("share of 1000s: %.3f, want 0.06-0.14", share)
	}
}

// TestDrawIsNotRepeated: the first 20 draws of a 50/50 campaign are not all
// the same (they would be with a fixed or per-second seed inside Redis).
func TestDrawIsNotRepeated(t *testing.T) {
	c := testenv.Redis(t)
	k := live(t, c, map[int64]int64{1: 1000, 2: 1000})
	seen := map[int64]bool{}
	for i := 0; i < 20; i++ {
		seen[claim(t, c, k, fmt.Sprintf("u%d", i)).Amount] = true
	}
	if len(seen) != 2 {
		t.Errorf("20 draws gave only %v", seen)
	}
}

// TestDrawUsesCallerRandomness: the pick is decided by the caller's number:
// the last packet of the bag and then the first are of different amounts.
func TestDrawUsesCallerRandomness(t *testing.T) {
	c := testenv.Redis(t)
	for i := 0; i < 5; i++ {
		k := live(t, c, map[int64]int64{1: 1000, 2: 1000})
		last, err := lua.Claim(context.Background(), c, k, "a", 1999) // 1999 % 2000: the last packet
		if err != nil {
			t.Fatal(err)
		}
		first, err := lua.Claim(context.Background(), c, k, "b", 0) // the first packet
		if err != nil {
			t.Fatal(err)
		}
		if last.Amount == first.Amount {
			t.Errorf("first and last packets of a {1:1000, 2:1000} bag are both %d", first.Amount)
		}
	}
}

func TestClaimValue(t *testing.T) {
	a, at, err := lua.ParseClaimValue(lua.ClaimValue(20, 1735689601234))
	if err != nil || a != 20 || at != 1735689601234 {
		t.Errorf("round trip: %d %d %v", a, at, err)
	}
	for _, bad := range []string{"", "20", "x:1", "20:y"} {
		if _, _, err := lua.ParseClaimValue(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
