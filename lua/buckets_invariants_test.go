package lua_test

import (
	"context"
	"errors"
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

// The invariants of bucketed campaigns, against real Redis, with claimers,
// refills, steals, the sweeper, half-done transfers and expired leases all
// running at once.

// allClaims reads every bucket's claims hash: user -> (bucket, value), and
// fails the test on a user found in two buckets or in a bucket not theirs.
func allClaims(t testing.TB, c rueidis.Client, l *lua.Layout) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for b, bk := range l.Buckets {
		err := lua.ScanClaims(context.Background(), c, bk.Keys, func(user string, amount, at int64) error {
			if _, dup := out[user]; dup {
				t.Errorf("user %s holds claims in two buckets", user)
			}
			if got := lua.BucketOf(l.ID, user, l.K()); got != b {
				t.Errorf("user %s of bucket %d has a claim in bucket %d", user, got, b)
			}
			out[user] = lua.ClaimValue(amount, at)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// open claims for one user until the answer is final (OK, ALREADY_OPENED
// or SOLD_OUT): EMPTY asks for a rebalance and tries again; a rebalance
// already running elsewhere is waited for.
func open(ctx context.Context, c rueidis.Client, l *lua.Layout, user string, want int64, rnd func() uint64) (rain.Result, error) {
	b := lua.BucketOf(l.ID, user, l.K())
	out := make([]rain.Result, 1)
	for {
		if _, err := lua.ClaimBucket(ctx, c, l, b, []string{user}, []uint64{rnd()}, out); err != nil {
			return out[0], err
		}
		if out[0].Outcome != rain.Empty {
			return out[0], nil
		}
		_, err := lua.Rebalance(ctx, c, l, b, want, &lua.RebalanceOptions{Rand: rnd})
		switch {
		case errors.Is(err, lua.ErrLeaseHeld):
			time.Sleep(200 * time.Microsecond)
		case err != nil:
			return out[0], err
		}
	}
}

// TestBucketsInvariantsUnderConcurrency: 12 claimers open for 3,000 users
// (and re-open users already answered) a campaign of 2,000 packets in 4
// buckets, refilling and stealing as buckets run dry, while a sweeper
// runs, another process leaves transfers half done (debit, no credit),
// and another acts on leases it let expire. Throughout, the claims never
// exceed the total; whenever a user is told SOLD_OUT there is no stock
// anywhere (read right after the answer); at the end every packet is
// claimed exactly once, by amount, no user holds two claims, and every
// answer a user got is the claim Redis holds for them.
func TestBucketsInvariantsUnderConcurrency(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	stock := map[int64]int64{1: 1200, 5: 600, 50: 200}
	const total, users, claimers = 2000, 3000, 12
	l := liveBuckets(t, c, 4, stock)

	var (
		next     atomic.Int64
		done     atomic.Bool
		soldOuts atomic.Int64
		mu       sync.Mutex
		answers  = make(map[string]rain.Result) // the first OK or ALREADY_OPENED
		wg, bg   sync.WaitGroup
	)
	fail := func(format string, args ...any) { t.Errorf(format, args...) }
	oks := make(map[string]int)
	// record checks a user's answers against each other (in the order the
	// claimers record them, which two claimers of one user may swap).
	record := func(user string, r rain.Result) {
		mu.Lock()
		defer mu.Unlock()
		if r.Outcome == rain.OK {
			if oks[user]++; oks[user] > 1 {
				fail("user %s got OK twice", user)
			}
		}
		prev, ok := answers[user]
		switch {
		case !ok && (r.Outcome == rain.OK || r.Outcome == rain.AlreadyOpened):
			answers[user] = r
		case ok && (r.Amount != prev.Amount || r.ClaimedAt != prev.ClaimedAt || r.Outcome == rain.SoldOut):
			fail("user %s: %+v after %+v", user, r, prev)
		}
	}
	for w := range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				i := next.Add(1) - 1
				if i >= users {
					return
				}
				user := fmt.Sprint("user-", i)
				if i > 10 && rng.IntN(4) == 0 { // a retry of someone earlier
					user = fmt.Sprint("user-", rng.Int64N(i))
				}
				r, err := open(ctx, c, l, user, 16, rng.Uint64)
				if err != nil {
					fail("open %s: %v", user, err)
					return
				}
				if r.Outcome == rain.SoldOut {
					soldOuts.Add(1)
					if s, err := lua.ReadBuckets(ctx, c, l); err != nil || s.Left != 0 || s.Pending != 0 {
						fail("user %s told SOLD_OUT while %d packets and %d transfers remain (%v): %+v", user, s.Left, s.Pending, err, s)
					}
				}
				record(user, r)
			}
		}()
	}
	// The sweeper.
	bg.Add(1)
	go func() {
		defer bg.Done()
		for !done.Load() {
			if ls, err := lua.Lock(ctx, c, l, 50*time.Millisecond); err == nil {
				// A sweep that outlives its 50 ms lease (a busy machine) is
				// fenced off by the next holder: that is the fence working.
				if _, err := ls.Sweep(ctx); err != nil && !errors.Is(err, lua.ErrFenced) {
					fail("sweep: %v", err)
				}
				_ = ls.Unlock(ctx)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	// A process that dies between debit and credit, 40 times.
	var halfDone atomic.Int64
	bg.Add(1)
	go func() {
		defer bg.Done()
		rng := rand.New(rand.NewPCG(99, 7))
		for i := 0; i < 40 && !done.Load(); {
			ls, err := lua.Lock(ctx, c, l, time.Second)
			if err != nil {
				time.Sleep(time.Millisecond)
				continue
			}
			src, dst := rng.IntN(5)-1, rng.IntN(4)
			if src != dst {
				if n, _, err := lua.Take(ctx, ls, src, dst, fmt.Sprint("dead.", ls.Fence), 1+rng.Int64N(8), rng.Uint64()); err == nil && n > 0 {
					halfDone.Add(1)
				}
				i++
			}
			_ = ls.Unlock(ctx) // (a dead process's lease would expire instead)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// A process whose leases expire while it works: whatever it still
	// manages to move is fenced per slot.
	bg.Add(1)
	go func() {
		defer bg.Done()
		rng := rand.New(rand.NewPCG(5, 7))
		for !done.Load() {
			ls, err := lua.Lock(ctx, c, l, 2*time.Millisecond)
			if err != nil {
				time.Sleep(time.Millisecond)
				continue
			}
			time.Sleep(3 * time.Millisecond)
			src, dst := rng.IntN(5)-1, rng.IntN(4)
			if src != dst {
				_, err := ls.Transfer(ctx, src, dst, 1+rng.Int64N(8), rng.Uint64())
				if err != nil && !errors.Is(err, lua.ErrFenced) {
					fail("expired lease transfer: %v", err)
				}
			}
		}
	}()
	// The claims never exceed the total (the hashes only grow, so a sum
	// read bucket by bucket is at most the true count at its end).
	bg.Add(1)
	go func() {
		defer bg.Done()
		for !done.Load() {
			if s, err := lua.ReadBuckets(ctx, c, l); err != nil || s.Claims > total {
				fail("%d claims for %d packets (%v)", s.Claims, total, err)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	wg.Wait()
	done.Store(true)
	bg.Wait()

	ls, err := lua.LockWait(ctx, c, l, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	_ = ls.Unlock(ctx)
	s := readBuckets(t, c, l)
	claims := allClaims(t, c, l)
	if s.Claims != total || len(claims) != total || s.Left != 0 || s.Pending != 0 {
		t.Errorf("end: %d claims (%d scanned), %d left, %d pending; want %d, 0, 0", s.Claims, len(claims), s.Left, s.Pending, total)
	}
	byAmount := map[int64]int64{}
	for user, v := range claims {
		amount, _, _ := lua.ParseClaimValue(v)
		byAmount[amount]++
		if r, ok := answers[user]; ok && r.Amount != amount {
			t.Errorf("user %s was answered %+v, holds %s", user, r, v)
		}
	}
	for a, n := range stock {
		if byAmount[a] != n {
			t.Errorf("amount %d: %d claimed, want %d", a, byAmount[a], n)
		}
	}
	for user := range answers {
		if _, ok := claims[user]; !ok {
			t.Errorf("user %s was answered %+v and holds nothing", user, answers[user])
		}
	}
	if soldOuts.Load() == 0 || halfDone.Load() == 0 {
		t.Errorf("%d SOLD_OUT answers, %d half-done transfers: the test did not reach the tail", soldOuts.Load(), halfDone.Load())
	}
	t.Logf("%d SOLD_OUT answers, %d half-done transfers finished by sweeps", soldOuts.Load(), halfDone.Load())
}

// TestBucketUserClaimsOnceAcrossLostReplies: a user whose claim reply is
// lost (the script ran; the client heard nothing) and who retries, after
// stock moved between buckets meanwhile, is answered ALREADY_OPENED with
// the packet they got, and holds one claim, in their own bucket.
func TestBucketUserClaimsOnceAcrossLostReplies(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	proxy := testenv.NewProxy(t, testenv.RedisAddr())
	lossy := testenv.RedisAt(t, proxy.Addr())
	l := liveBuckets(t, c, 3, map[int64]int64{1: 30, 7: 30})
	for i := range 30 {
		user := fmt.Sprint("lost-", i)
		b := lua.BucketOf(l.ID, user, 3)
		proxy.LoseReplies()
		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := lua.ClaimBucket(qctx, lossy, l, b, []string{user}, []uint64{rand.Uint64()}, make([]rain.Result, 1))
		cancel()
		proxy.Restore()
		if err == nil {
			t.Fatalf("%s: a lost reply came back", user)
		}
		// Stock moves while the client waits to retry.
		if _, err := lua.Rebalance(ctx, c, l, (b+1)%3, 4, nil); err != nil {
			t.Fatal(err)
		}
		r, err := open(ctx, c, l, user, 4, rand.Uint64)
		if err != nil {
			t.Fatal(err)
		}
		held := allClaims(t, c, l)[user]
		amount, _, _ := lua.ParseClaimValue(held)
		switch {
		case held == "" && r.Outcome == rain.OK:
			t.Fatalf("%s: the lost claim was not made, and the retry's is not in Redis", user)
		case held == "":
			// The request never reached Redis (the proxy cut first): the
			// retry claimed, or the campaign sold out.
		case r.Outcome != rain.AlreadyOpened && r.Outcome != rain.OK || r.Amount != amount:
			t.Fatalf("%s retried: %+v, holds %q", user, r, held)
		}
	}
	if s := readBuckets(t, c, l); s.Claims+s.Left != 60 || s.Pending != 0 {
		t.Errorf("%d claims + %d left, %d pending; want 60 and 0", s.Claims, s.Left, s.Pending)
	}
}

// chiSquare is Pearson's Σ (observed − expected)² / expected for counts by
// amount, divided by fpc: claims drawn without replacement, m of a bag of
// N, vary less than independent draws, by the finite population
// correction (N − m) / (N − 1). Under "one bag" it follows chi-square with
// (amounts − 1) degrees of freedom.
func chiSquare(got map[int64]int64, shares map[int64]float64, n int64, fpc float64) float64 {
	x := 0.0
	for a, p := range shares {
		e := p * float64(n)
		d := float64(got[a]) - e
		x += d * d / e
	}
	return x / fpc
}

// drawTrials claims 800 of 1,000 packets (60 % 1s, 30 % 5s, 10 % 50s) of
// a 4-bucket campaign per trial, so most claims after the first half come
// through refills and steals, and tallies the amounts claimed. transfer
// draws the transfers' randoms.
func drawTrials(t *testing.T, c rueidis.Client, trials int, transfer func() uint64) (map[int64]int64, int64) {
	stock := map[int64]int64{1: 600, 5: 300, 50: 100}
	got := map[int64]int64{}
	var n int64
	for trial := range trials {
		l := liveBuckets(t, c, 4, stock)
		rng := rand.New(rand.NewPCG(uint64(trial), 11))
		b := make([]rain.Result, 1)
		for i, claimed := 0, 0; claimed < 800; i++ {
			user := fmt.Sprint("d-", i)
			k := lua.BucketOf(l.ID, user, 4)
			for {
				if _, err := lua.ClaimBucket(context.Background(), c, l, k, []string{user}, []uint64{rng.Uint64()}, b); err != nil {
					t.Fatal(err)
				}
				if b[0].Outcome != rain.Empty {
					break
				}
				if _, err := lua.Rebalance(context.Background(), c, l, k, 8, &lua.RebalanceOptions{Rand: transfer}); err != nil {
					t.Fatal(err)
				}
			}
			if b[0].Outcome != rain.OK {
				t.Fatalf("claim %d: %+v", i, b[0])
			}
			got[b[0].Amount]++
			n++
			claimed++
		}
		unlinkLayout(c, l)
	}
	return got, n
}

// TestBucketsDrawIsWeighted: over the campaign, each amount's share of the
// claims is its share of the stock, as with one bag: refills and steals
// move stock in proportion, and each bucket draws by its own counts. The
// bound is chi-square's 1e-6 tail (2 degrees of freedom). The same
// statistic on transfers that round every split down (a fixed random of
// 0: refills then carry too few 1s) is far past it, so the test can fail.
func TestBucketsDrawIsWeighted(t *testing.T) {
	c := testenv.Redis(t)
	shares := map[int64]float64{1: 0.6, 5: 0.3, 50: 0.1}
	const bound = 27.6
	const fpc = (1000.0 - 800) / (1000 - 1)
	got, n := drawTrials(t, c, 12, rand.Uint64)
	if x := chiSquare(got, shares, n, fpc); x > bound {
		t.Errorf("claims by amount %v of %d: chi-square %.1f > %.1f", got, n, x, bound)
	} else {
		t.Logf("claims by amount %v of %d: chi-square %.1f", got, n, x)
	}
	biased, n := drawTrials(t, c, 12, func() uint64 { return 0 })
	if x := chiSquare(biased, shares, n, fpc); x < bound {
		t.Errorf("biased transfers: claims by amount %v, chi-square %.1f: the statistic cannot tell", biased, x)
	} else {
		t.Logf("biased transfers: claims by amount %v of %d: chi-square %.1f", biased, n, x)
	}
}

// TestStockAddedBackRacesTheSoldOutCheck: stock added back one packet at
// a time while another process runs the global check from every bucket in
// turn and users claim, more slowly than stock comes. When it settles no
// bucket answers SOLD_OUT while a packet is left anywhere, and every
// packet added back is claimed in the end.
func TestStockAddedBackRacesTheSoldOutCheck(t *testing.T) {
	c := testenv.Redis(t)
	ctx := context.Background()
	l := liveBuckets(t, c, 3, map[int64]int64{5: 3})
	const adds = 40
	var wg sync.WaitGroup
	var claimed atomic.Int64
	var stop atomic.Bool
	wg.Add(3)
	go func() { // the merchant
		defer wg.Done()
		defer stop.Store(true)
		for range adds {
			if _, loaded, err := lua.AddStockBuckets(ctx, c, l, 7, 1); err != nil || !loaded {
				t.Errorf("add stock: %v %v", loaded, err)
				return
			}
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		}
	}()
	go func() { // the global check, from every bucket in turn
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if _, err := lua.Rebalance(ctx, c, l, i%3, 1, nil); err != nil && !errors.Is(err, lua.ErrLeaseHeld) {
				t.Errorf("rebalance: %v", err)
				return
			}
		}
	}()
	go func() { // users, a few at a time
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			r, err := open(ctx, c, l, fmt.Sprint("r-", i), 1, rand.Uint64)
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			if r.Outcome == rain.OK {
				claimed.Add(1)
			}
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) // slower than the merchant
		}
	}()
	wg.Wait()
	s := readBuckets(t, c, l)
	for b, bs := range s.Buckets {
		if bs.Final && (s.Left > 0 || s.Pending > 0) {
			t.Errorf("bucket %d answers SOLD_OUT with %d packets left, %d transfers pending: %+v", b, s.Left, s.Pending, s)
		}
	}
	for i := 0; ; i++ {
		r, err := open(ctx, c, l, fmt.Sprint("late-", i), 1, rand.Uint64)
		if err != nil {
			t.Fatal(err)
		}
		if r.Outcome == rain.SoldOut {
			break
		}
		claimed.Add(1)
	}
	if n := claimed.Load(); n != 3+adds {
		t.Errorf("%d claimed, want %d", n, 3+adds)
	}
}
