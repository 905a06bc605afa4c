package lua_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/redpacket/rain/lua"
)

// Pure tests of the bucket arithmetic: no service needed.

func TestKeySlot(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for key, want := range map[string]int{
		"123456789":                 0x31C3, // the CRC16 check value
		"foo":                       12182,
		"user1000":                  3443,
		"{user1000}.following":      3443,
		"foo{}{bar}":                8363, // an empty first tag: the whole key
		"foo{{bar}}zap":             4015, // the tag is "{bar"
		"foo{bar}{zap}":             5061, // the tag is "bar"
		"bar":                       5061,
		"rp:{42}:meta":              8000,
		"rp:{42}:claims":            8000,
		"no closing {brace":         lua.KeySlot("no closing {brace"),
		"":                          0,
		"{":                         lua.KeySlot("{"),
		strings.Repeat("x", 100000): lua.KeySlot(strings.Repeat("x", 100000)),
	} {
		if got := lua.KeySlot(key); got != want || got < 0 || got >= lua.Slots {
			t.Errorf("KeySlot(%.20q) = %d, want %d", key, got, want)
		}
	}
}

// TestBucketOfIsFixed pins the user → bucket hash: changing it would move
// users of a live campaign to another bucket, where they could claim again.
func TestBucketOfIsFixed(t *testing.T) {
	for _, tc := range []struct {
		id   int64
		user string
		k    int
		want int
	}{
		{42, "user-1", 1, 0},
		{42, "user-1", 3, 2},
		{42, "user-2", 3, 1},
		{42, "user-1", 12, 9},
		{43, "user-1", 12, 1},
		{42, "user-1", 64, 49},
		{-7, "ü", 64, 56},
	} {
		if got := lua.BucketOf(tc.id, tc.user, tc.k); got != tc.want {
			t.Errorf("BucketOf(%d, %q, %d) = %d, want %d", tc.id, tc.user, tc.k, got, tc.want)
		}
	}
}

// TestBucketOfSpreads: users spread evenly over the buckets (chi-square
// far below what an uneven hash gives), for a few campaigns and sizes.
func TestBucketOfSpreads(t *testing.T) {
	const users = 64_000
	for _, k := range []int{2, 3, 12, 64} {
		for _, id := range []int64{1, 42, 1 << 40} {
			n := make([]int, k)
			for u := range users {
				b := lua.BucketOf(id, fmt.Sprint("user-", u), k)
				if b < 0 || b >= k {
					t.Fatalf("bucket %d of %d", b, k)
				}
				n[b]++
			}
			exp := float64(users) / float64(k)
			chi := 0.0
			for _, x := range n {
				chi += (float64(x) - exp) * (float64(x) - exp) / exp
			}
			// The 99.9th percentile of chi-square with k-1 degrees of
			// freedom is below 3(k-1)+20 for these k.
			if chi > 3*float64(k-1)+20 {
				t.Errorf("k=%d id=%d: counts %v, chi-square %.1f", k, id, n, chi)
			}
		}
	}
}

// TestLayoutTags: each bucket's tag hashes into the middle of its own
// segment of the slot space, so k buckets spread over masters owning equal
// ranges; K = 1 is exactly Of(id).
func TestLayoutTags(t *testing.T) {
	ks := lua.NewKeyspace("rp")
	for _, k := range []int{2, 3, 12, 64} {
		for id := int64(1); id <= 200; id++ {
			l, err := ks.Layout(id, k)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{l.Home.Meta(): true}
			for b, bk := range l.Buckets {
				s := lua.KeySlot(bk.Meta())
				lo, hi := b*lua.Slots/k, (b+1)*lua.Slots/k
				if w := hi - lo; s < lo+w/8 || s >= hi-w/8 {
					t.Fatalf("campaign %d bucket %d of %d: slot %d outside its segment", id, b, k, s)
				}
				for _, key := range []string{bk.Stock(), bk.Claims(), bk.In(), bk.Out()} {
					if lua.KeySlot(key) != s {
						t.Fatalf("%s not in the slot of %s", key, bk.Meta())
					}
				}
				if seen[bk.Meta()] {
					t.Fatalf("campaign %d: %s twice", id, bk.Meta())
				}
				seen[bk.Meta()] = true
				if !strings.HasPrefix(bk.Tag, fmt.Sprintf("%d.%d.", id, b)) || bk.Meta() != "rp:{"+bk.Tag+"}:meta" {
					t.Fatalf("bucket %d tag %q, meta %q", b, bk.Tag, bk.Meta())
				}
			}
			for _, key := range []string{l.Pool(), l.Out(), l.Rebal()} {
				if lua.KeySlot(key) != lua.KeySlot(l.Home.Meta()) {
					t.Fatalf("%s not in the home slot", key)
				}
			}
		}
	}
	l, err := ks.Layout(42, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := ks.Of(42)
	b := l.Buckets[0]
	if l.K() != 1 || b.Meta() != want.Meta() || b.Stock() != want.Stock() || b.Claims() != want.Claims() || b.Loading() != want.Loading() ||
		l.Home.Meta() != "rp:{42}:meta" || l.BucketOf("anyone").Keys != l.Home {
		t.Errorf("K=1 layout %+v, want the keys of Of(42)", b)
	}
	for _, bad := range []int{0, -1, lua.MaxBuckets + 1} {
		if _, err := ks.Layout(42, bad); err == nil {
			t.Errorf("Layout with %d buckets: no error", bad)
		}
	}
}

func sum(xs []int64) (s int64) {
	for _, x := range xs {
		s += x
	}
	return s
}

// TestSplitBounds: a split takes min(n, total) packets, never more of an
// amount than there is, for random stocks and at the extremes.
func TestSplitBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(counts []int64, n int64, rnd uint64) {
		t.Helper()
		take := lua.Split(counts, n, rnd)
		if got, want := sum(take), min(max(n, 0), sum(counts)); got != want {
			t.Fatalf("Split(%v, %d): %v sums to %d, want %d", counts, n, take, got, want)
		}
		for i, x := range take {
			if x < 0 || x > counts[i] {
				t.Fatalf("Split(%v, %d): %v takes %d of %d", counts, n, take, x, counts[i])
			}
		}
	}
	for range 20000 {
		counts := make([]int64, 1+r.IntN(64))
		for i := range counts {
			counts[i] = r.Int64N(1000)
		}
		check(counts, r.Int64N(sum(counts)+2), r.Uint64())
	}
	big := make([]int64, 64)
	for i := range big {
		big[i] = 100_000_000
	}
	for _, n := range []int64{1, 6_399_999_999, 6_400_000_000, 7e9, 3_200_000_001} {
		check(big, n, 1<<53-1)
		check(big, n, 0)
	}
	check([]int64{0, 0}, 5, 0)
	check([]int64{5}, 0, 0)
	check([]int64{1, 1_000_000_000}, 999_999_999, 1<<53-1)
}

// TestSplitIsProportionalInExpectation: over the random, each amount's
// count taken averages n × its share exactly (to the Monte Carlo error),
// including shares that round to 0 or 1 packet.
func TestSplitIsProportionalInExpectation(t *testing.T) {
	counts := []int64{7, 300, 1, 92}
	const n, trials = 10, 200_000
	r := rand.New(rand.NewPCG(3, 4))
	got := make([]float64, len(counts))
	for range trials {
		for i, x := range lua.Split(counts, n, r.Uint64()) {
			got[i] += float64(x)
		}
	}
	total := float64(sum(counts))
	for i, c := range counts {
		want := n * float64(c) / total
		mean := got[i] / trials
		// A count that is ⌊want⌋ or ⌈want⌉: its standard deviation is at most 0.5.
		if math.Abs(mean-want) > 4*0.5/math.Sqrt(trials) {
			t.Errorf("amount %d: mean %.4f taken, want %.4f", i, mean, want)
		}
	}
}

// TestDeal: half the stock goes into the buckets as evenly as it divides,
// the rest stays in the pool, nothing is made or lost, and each bucket is
// the stock in miniature.
func TestDeal(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	remaining := []int64{600, 300, 99, 1}
	for _, k := range []int{2, 3, 12, 64} {
		buckets, pool := lua.Deal(remaining, k, r.Uint64)
		if len(buckets) != k {
			t.Fatalf("%d buckets, want %d", len(buckets), k)
		}
		total := sum(remaining)
		held := append([]int64(nil), pool...)
		var dealt int64
		for b, bk := range buckets {
			n := sum(bk)
			if want := total / 2 / int64(k); n != want && n != want+1 {
				t.Errorf("k=%d bucket %d: %d packets, want %d or %d", k, b, n, want, want+1)
			}
			dealt += n
			for i, x := range bk {
				held[i] += x
			}
		}
		if dealt != total/2 {
			t.Errorf("k=%d: %d dealt, want %d", k, dealt, total/2)
		}
		for i := range remaining {
			if held[i] != remaining[i] || pool[i] < 0 {
				t.Errorf("k=%d amount %d: %d held (pool %d), want %d", k, i, held[i], pool[i], remaining[i])
			}
		}
	}
	// In expectation each bucket holds each amount in its share of the stock.
	const k, trials = 4, 20000
	first := make([]float64, len(remaining))
	for range trials {
		buckets, _ := lua.Deal(remaining, k, r.Uint64)
		for i, x := range buckets[k-1] {
			first[i] += float64(x)
		}
	}
	per := float64(sum(remaining)/2) / k
	for i, c := range remaining {
		want := per * float64(c) / float64(sum(remaining))
		if mean := first[i] / trials; math.Abs(mean-want) > 0.05+0.02*want {
			t.Errorf("amount %d in the last bucket: mean %.3f, want %.3f", i, mean, want)
		}
	}
}
