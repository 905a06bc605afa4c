package lua

import "strconv"

// Key scheme, the one place it is spelled. Every key of campaign 42 carries
// the hash tag {42}, so a script touching them hits one slot and runs
// unchanged on Redis Cluster; the prefix (REDIS_KEY_PREFIX, default rp)
// gives tests, benchmarks and the fault suite namespaces of their own in a
// shared Redis:
//
//	rp:{42}:meta     hash    start, end (unix ms), row (the PostgreSQL row's created_at, µs); its existence makes the campaign visible
//	rp:{42}:stock    hash    amount -> remaining count (amounts at 0 removed)
//	rp:{42}:claims   hash    user id -> "amount:claimed_at_ms" (who got what; the truth)
//	rp:{42}:loading  string  held by the api process rebuilding the campaign from PostgreSQL
//	rp:{42}:sync     string  written before each WAIT of replica mode (ack.go); expires after a minute
//	rp:{42}:answers  hash    api replica -> "ok,already_opened,sold_out,busy,closed": each api's answers to the
//	                         campaign's opens, written every second for the console's live view; expires an hour after the last write
//
// A campaign with K > 1 buckets (Layout) keeps its window and its undealt
// stock under the home tag {42} and each bucket's stock and claims under a
// tag of its own, "42.b.x", chosen so that bucket b's slot lies in the b-th
// of K equal segments of the slot space (layout.go). K = 1 is the layout
// above, unchanged.
//
//	rp:{42}:meta          hash    start, end, gen, buckets (K), fence (of the last rebalancing lease)
//	rp:{42}:pool          hash    amount -> count not dealt to any bucket
//	rp:{42}:out           hash    transfer id -> "bucket|amount:n,..." taken from the pool, not yet settled
//	rp:{42}:rebal         string  the rebalancing lease: its fence number
//	rp:{42}:loading       string  as above
//	rp:{42.3.17}:meta     hash    start, end, fence (highest seen), final (sold out everywhere), frozen
//	rp:{42.3.17}:stock    hash    amount -> remaining count in the bucket
//	rp:{42.3.17}:claims   hash    the claims of the bucket's users, as above
//	rp:{42.3.17}:in       set     ids of the transfers credited to the bucket
//	rp:{42.3.17}:out      hash    transfers taken from the bucket, not yet settled (as the pool's)
//	rp:{42.3.17}:sync     string  as the home's

// DefaultPrefix is the key prefix of a deployment that sets none.
const DefaultPrefix = "rp"

// Keyspace names the keys of every campaign under one prefix, and says
// what a write to them waits for (Ack; the zero value: the master alone).
type Keyspace struct {
	prefix string
	ack    Ack
}

// NewKeyspace returns the keyspace of prefix (DefaultPrefix when empty).
func NewKeyspace(prefix string) Keyspace {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keyspace{prefix: prefix}
}

// Prefix is the keyspace's prefix.
func (ks Keyspace) Prefix() string { return ks.prefix }

// WithAck returns the keyspace whose writes wait for a (ack.go).
func (ks Keyspace) WithAck(a Ack) Keyspace {
	ks.ack = a
	return ks
}

// Ack is what the keyspace's writes wait for.
func (ks Keyspace) Ack() Ack { return ks.ack }

// Of returns the keys of campaign id.
func (ks Keyspace) Of(id int64) *Keys {
	tag := ks.prefix + ":{" + strconv.FormatInt(id, 10) + "}:"
	return &Keys{ID: id, all: [3]string{tag + "meta", tag + "stock", tag + "claims"}, loading: tag + "loading",
		sync: tag + "sync", answers: tag + "answers", ack: ks.ack}
}

// Pattern matches every key of campaign id (for SCAN in tools).
func (ks Keyspace) Pattern(id int64) string {
	return ks.prefix + ":{" + strconv.FormatInt(id, 10) + "}:*"
}

// Match matches every key of every campaign in the keyspace, for a tool
// that owns its namespace (the benchmark, the fault suite) and clears it.
func (ks Keyspace) Match() string { return ks.prefix + ":{*}:*" }

// KeysOf returns the keys of campaign id under DefaultPrefix.
//
// Deprecated: use a Keyspace; kept while the tools move to their own.
func KeysOf(id int64) *Keys { return NewKeyspace("").Of(id) }

// Keys are the Redis keys of one campaign, in the order the scripts take them.
type Keys struct {
	ID      int64
	all     [3]string // meta, stock, claims: the keys of the scripts
	loading string
	sync    string // the slot's sync key (ack.go)
	answers string // each api's answer counts (the live view); the home's only
	ack     Ack    // what a write to these keys waits for
}

// Meta is the campaign's window; its existence makes the campaign visible.
func (k *Keys) Meta() string { return k.all[0] }

// Stock is the remaining count per amount.
func (k *Keys) Stock() string { return k.all[1] }

// Claims is who got what: user id -> "amount:claimed_at_ms".
func (k *Keys) Claims() string { return k.all[2] }

// Loading is the lock of a rebuild from PostgreSQL.
func (k *Keys) Loading() string { return k.loading }

// Sync is the slot's sync key, written before a WAIT (ack.go).
func (k *Keys) Sync() string { return k.sync }

// Answers is the hash of each api replica's answer counts to the
// campaign's opens (the console's live view): replica -> "ok,already_opened,sold_out,busy,closed".
func (k *Keys) Answers() string { return k.answers }

// Layout is where the keys of a campaign with k buckets live. With k = 1
// it is Of(id) alone: the home is the one bucket, today's layout and path.
type Layout struct {
	ID      int64
	Home    *Keys    // the tag {id}: the window (and with k = 1 everything)
	Buckets []Bucket // k of them; with k = 1 the home's keys

	pool, out, rebal string
}

// Bucket is the keys of one bucket: meta, stock and claims as in Keys, in
// the same order for the scripts, plus the transfer logs.
type Bucket struct {
	*Keys
	Index   int
	Tag     string // the hash tag, without braces
	in, out string
}

// In is the set of transfer ids credited to the bucket.
func (b *Bucket) In() string { return b.in }

// Out is the hash of transfers taken from the bucket and not yet settled.
func (b *Bucket) Out() string { return b.out }

// Layout returns the keys of campaign id with k buckets (1 to MaxBuckets).
func (ks Keyspace) Layout(id int64, k int) (*Layout, error) {
	if err := checkBuckets(k); err != nil {
		return nil, err
	}
	home := ks.Of(id)
	tag := ks.prefix + ":{" + strconv.FormatInt(id, 10) + "}:"
	l := &Layout{ID: id, Home: home, Buckets: make([]Bucket, k),
		pool: tag + "pool", out: tag + "out", rebal: tag + "rebal"}
	if k == 1 {
		l.Buckets[0] = Bucket{Keys: home, Tag: strconv.FormatInt(id, 10)}
		return l, nil
	}
	for b := range l.Buckets {
		t := bucketTag(id, b, k)
		p := ks.prefix + ":{" + t + "}:"
		l.Buckets[b] = Bucket{Keys: &Keys{ID: id, all: [3]string{p + "meta", p + "stock", p + "claims"}, sync: p + "sync", ack: ks.ack},
			Index: b, Tag: t, in: p + "in", out: p + "out"}
	}
	return l, nil
}

// K is the number of buckets.
func (l *Layout) K() int { return len(l.Buckets) }

// BucketOf is the bucket of user.
func (l *Layout) BucketOf(user string) *Bucket {
	return &l.Buckets[BucketOf(l.ID, user, len(l.Buckets))]
}

// Pool is the home's hash of stock not dealt to any bucket.
func (l *Layout) Pool() string { return l.pool }

// Out is the home's hash of transfers taken from the pool, not yet settled.
func (l *Layout) Out() string { return l.out }

// Rebal is the home's rebalancing lease.
func (l *Layout) Rebal() string { return l.rebal }

// AllKeys lists every key of the campaign (for a rebuild that deletes it).
func (l *Layout) AllKeys() []string {
	ks := []string{l.Home.Meta(), l.Home.Stock(), l.Home.Claims(), l.pool, l.out, l.rebal, l.Home.sync}
	if l.K() > 1 {
		for _, b := range l.Buckets {
			ks = append(ks, b.Meta(), b.Stock(), b.Claims(), b.in, b.out, b.sync)
		}
	}
	return ks
}

// ExpiringKeys lists every key of the campaign that has a value past its end (the
// window, the stock, the claims and the transfer logs), for an expiry.
func (l *Layout) ExpiringKeys() []string {
	ks := []string{l.Home.Meta(), l.Home.Stock(), l.Home.Claims()}
	if l.K() > 1 {
		ks = append(ks, l.pool, l.out)
		for _, b := range l.Buckets {
			ks = append(ks, b.Meta(), b.Stock(), b.Claims(), b.in, b.out)
		}
	}
	return ks
}
