package lua

import (
	"context"
	"fmt"
	"math/big"
	"math/bits"
	"strconv"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/rediscluster"
)

// The layout of a bucketed campaign ("Hot campaigns" in docs/design.md):
// which bucket a user belongs to, the hash tag of each bucket, and how
// stock is split when it is dealt or moved, all pure Go; then reading how
// many buckets a loaded campaign has (BucketCount, LayoutOf).

// MaxBuckets is the most buckets a campaign may have.
const MaxBuckets = 64

// Slots is the number of Redis Cluster hash slots.
const Slots = rediscluster.Slots

// BucketOf returns the bucket, 0 to k−1, of user in campaign id: FNV-1a
// (64 bits) over the id's 8 bytes (little-endian) and the user id, mixed
// by murmur3's 64-bit finaliser and scaled to k (h·k / 2^64). The same in
// every process, so a user's claim record and stock decision always meet
// in one bucket; k is fixed for the campaign's life.
func BucketOf(id int64, user string, k int) int {
	if k <= 1 {
		return 0
	}
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := range 8 {
		h ^= uint64(byte(uint64(id) >> (8 * i)))
		h *= prime
	}
	for i := 0; i < len(user); i++ {
		h ^= uint64(user[i])
		h *= prime
	}
	// FNV's last multiply leaves the high bits hardly touched by the last
	// bytes (user-1, user-2, … would crowd into a few buckets): murmur3's
	// finaliser mixes every bit into every other first.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	hi, _ := bits.Mul64(h, uint64(k))
	return int(hi)
}

// KeySlot is the Redis Cluster slot of key (its hash tag's CRC16, as
// Redis computes it).
func KeySlot(key string) int { return int(rediscluster.Slot(key)) }

// bucketTag is the hash tag of bucket b of a campaign with k buckets:
// "id.b.x" for the least x ≥ 0 whose slot lies in the middle three
// quarters of the b-th of k equal segments of the slot space, [b·16384/k,
// (b+1)·16384/k). A cluster whose masters own equal contiguous ranges
// (what `redis-cli --cluster create` makes, give or take a slot at the
// edges, hence the margins) then holds k/M buckets on each of its M
// masters, without asking the cluster; the middle of a segment is at least
// 192 slots, so about 4k/3 tries find it.
func bucketTag(id int64, b, k int) string {
	lo, hi := b*Slots/k, (b+1)*Slots/k
	w := hi - lo
	lo, hi = lo+w/8, hi-w/8
	prefix := strconv.FormatInt(id, 10) + "." + strconv.Itoa(b) + "."
	for x := 0; ; x++ {
		tag := prefix + strconv.Itoa(x)
		if s := KeySlot(tag); s >= lo && s < hi { // tag has no braces: its own slot
			return tag
		}
	}
}

// checkBuckets validates a bucket count.
func checkBuckets(k int) error {
	if k < 1 || k > MaxBuckets {
		return fmt.Errorf("buckets: %d, want 1 to %d", k, MaxBuckets)
	}
	return nil
}

// Split takes n packets out of a stock with counts[i] packets of the i-th
// amount, in proportion (systematic sampling): with S_i = n·(counts[0] +
// … + counts[i]) / total, it takes ⌊S_i + u⌋ − ⌊S_{i−1} + u⌋ of amount i,
// for u = r / 2^53 drawn uniformly by the caller. So each amount's share
// of the n taken is its share of the stock in expectation, exactly; the
// counts taken sum to min(n, total); none exceeds its count. Exact integer
// arithmetic (the products pass 2^64 at the largest inventories).
func Split(counts []int64, n int64, r uint64) []int64 {
	take := make([]int64, len(counts))
	var total int64
	for _, c := range counts {
		total += max(c, 0)
	}
	if n <= 0 || total <= 0 {
		return take
	}
	if n >= total {
		for i, c := range counts {
			take[i] = max(c, 0)
		}
		return take
	}
	// ⌊(n·cum·2^53 + r·total) / (total·2^53)⌋
	den := new(big.Int).Lsh(big.NewInt(total), 53)
	off := new(big.Int).Mul(new(big.Int).SetUint64(r&(1<<53-1)), big.NewInt(total))
	var cum int64
	prev := int64(0) // ⌊u⌋ = 0
	num, q := new(big.Int), new(big.Int)
	for i, c := range counts {
		cum += max(c, 0)
		num.Mul(big.NewInt(n), big.NewInt(cum))
		num.Lsh(num, 53)
		num.Add(num, off)
		q.Quo(num, den)
		cur := q.Int64()
		take[i] = cur - prev
		prev = cur
	}
	return take
}

// Deal lays out the stock of a bucketed campaign: remaining[i] packets of
// amount i are dealt, half of them (rounded down) into k buckets as evenly
// as the count allows, each bucket's share taken from what is left by
// Split with its own random (so each bucket is, in expectation, the whole
// stock in miniature), and the rest kept in the pool. rnd is called once
// per bucket. It returns buckets[b][i] and pool[i].
func Deal(remaining []int64, k int, rnd func() uint64) (buckets [][]int64, pool []int64) {
	pool = make([]int64, len(remaining))
	var total int64
	for i, c := range remaining {
		pool[i] = max(c, 0)
		total += pool[i]
	}
	half := total / 2
	buckets = make([][]int64, k)
	for b := range buckets {
		n := half / int64(k)
		if int64(b) < half%int64(k) {
			n++
		}
		buckets[b] = Split(pool, n, rnd())
		for i, x := range buckets[b] {
			pool[i] -= x
		}
	}
	return buckets, pool
}

// What the api and the reconciler read to find a campaign's layout.

// BucketCount reads how many buckets campaign id has from its home meta
// hash (the "buckets" field LoadBuckets writes; absent on a campaign of
// one bucket). loaded is false when the home is not in Redis; k is then 0.
func BucketCount(ctx context.Context, c rueidis.Client, k *Keys) (n int, loaded bool, err error) {
	vs, err := c.Do(ctx, c.B().Hmget().Key(k.Meta()).Field("start", "buckets").Build()).ToArray()
	if err != nil {
		return 0, false, err
	}
	if len(vs) != 2 || vs[0].IsNil() {
		return 0, false, nil
	}
	if vs[1].IsNil() {
		return 1, true, nil
	}
	s, err := vs[1].ToString()
	if err != nil {
		return 0, true, err
	}
	n, err = strconv.Atoi(s)
	if err == nil {
		err = checkBuckets(n)
	}
	if err != nil {
		return 0, true, err
	}
	return n, true, nil
}

// LayoutOf is the layout of campaign id as Redis holds it (BucketCount):
// loaded false, with a nil layout, when its home is not in Redis.
func (ks Keyspace) LayoutOf(ctx context.Context, c rueidis.Client, id int64) (*Layout, bool, error) {
	n, loaded, err := BucketCount(ctx, c, ks.Of(id))
	if err != nil || !loaded {
		return nil, loaded, err
	}
	l, err := ks.Layout(id, n)
	return l, err == nil, err
}
