package lua

import "strconv"

// Key scheme. Every key of campaign 42 carries the hash tag {42}, so a script
// touching them hits one slot and runs unchanged on Redis Cluster:
//
//	rp:{42}:meta    hash  start, end (unix ms); its existence makes the campaign visible
//	rp:{42}:stock   hash  amount -> remaining count (amounts at 0 removed)
//	rp:{42}:claims  hash  user id -> "amount:claimed_at_ms" (who got what; the truth)
const keyPrefix = "rp:{"

// Keys are the Redis keys of one campaign, in the order the scripts take them.
type Keys struct {
	ID  int64
	all [3]string // meta, stock, claims
}

// KeysOf returns the keys of campaign id.
func KeysOf(id int64) *Keys {
	tag := keyPrefix + strconv.FormatInt(id, 10) + "}:"
	return &Keys{ID: id, all: [3]string{tag + "meta", tag + "stock", tag + "claims"}}
}

// Meta, Stock and Claims name the campaign's keys.
func (k *Keys) Meta() string   { return k.all[0] }
func (k *Keys) Stock() string  { return k.all[1] }
func (k *Keys) Claims() string { return k.all[2] }
