package lua

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"
)

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
