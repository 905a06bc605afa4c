package lua

import "strconv"

// Key scheme, the one place it is spelled. Every key of campaign 42 carries
// the hash tag {42}, so a script touching them hits one slot and runs
// unchanged on Redis Cluster; the prefix (REDIS_KEY_PREFIX, default rp)
// gives tests, benchmarks and the fault suite namespaces of their own in a
// shared Redis:
//
//	rp:{42}:meta     hash    start, end (unix ms); its existence makes the campaign visible
//	rp:{42}:stock    hash    amount -> remaining count (amounts at 0 removed)
//	rp:{42}:claims   hash    user id -> "amount:claimed_at_ms" (who got what; the truth)
//	rp:{42}:loading  string  held by the api process rebuilding the campaign from PostgreSQL

// DefaultPrefix is the key prefix of a deployment that sets none.
const DefaultPrefix = "rp"

// Keyspace names the keys of every campaign under one prefix.
type Keyspace struct{ prefix string }

// NewKeyspace returns the keyspace of prefix (DefaultPrefix when empty).
func NewKeyspace(prefix string) Keyspace {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keyspace{prefix: prefix}
}

// Prefix is the keyspace's prefix.
func (ks Keyspace) Prefix() string { return ks.prefix }

// Of returns the keys of campaign id.
func (ks Keyspace) Of(id int64) *Keys {
	tag := ks.prefix + ":{" + strconv.FormatInt(id, 10) + "}:"
	return &Keys{ID: id, all: [3]string{tag + "meta", tag + "stock", tag + "claims"}, loading: tag + "loading"}
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
}

// Meta is the campaign's window; its existence makes the campaign visible.
func (k *Keys) Meta() string { return k.all[0] }

// Stock is the remaining count per amount.
func (k *Keys) Stock() string { return k.all[1] }

// Claims is who got what: user id -> "amount:claimed_at_ms".
func (k *Keys) Claims() string { return k.all[2] }

// Loading is the lock of a rebuild from PostgreSQL.
func (k *Keys) Loading() string { return k.loading }
