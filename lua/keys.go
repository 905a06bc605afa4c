package lua

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// Key scheme. Every key of campaign 42 carries the hash tag {42}, so a script
// touching them hits one slot and runs unchanged on Redis Cluster:
//
//	rp:{42}:meta    hash  start, end (unix ms), left (packets remaining)
//	rp:{42}:stock   hash  amount -> remaining count
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

// KeyCache hands out the Keys of a campaign without building strings on
// every open: reads are lock-free loads of an immutable map, misses copy the
// map (campaigns are few and long-lived). It forgets everything once it
// holds Max entries, so a flood of unknown ids cannot grow it without bound.
type KeyCache struct {
	mu sync.Mutex
	m  atomic.Pointer[map[int64]*Keys]
}

// keyCacheMax bounds the cache; refilling it costs one allocation per id.
const keyCacheMax = 4096

// Get returns the keys of campaign id.
func (c *KeyCache) Get(id int64) *Keys {
	if m := c.m.Load(); m != nil {
		if k, ok := (*m)[id]; ok {
			return k
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if k, ok := (*old)[id]; ok {
			return k
		}
	}
	next := make(map[int64]*Keys, 8)
	if old != nil && len(*old) < keyCacheMax {
		for id, k := range *old {
			next[id] = k
		}
	}
	k := KeysOf(id)
	next[id] = k
	c.m.Store(&next)
	return k
}
