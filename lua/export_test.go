package lua

import (
	"context"
	"strconv"
)

// For the tests of package lua_test: claim.lua called with raw arguments,
// and the Go side's halves of the call.
var (
	ClaimScript = claimScript
	ParseClaims = parseClaims
	ClaimArgs   = func(users []string, rnds []uint64) []string { return appendClaimArgs(nil, users, rnds) }
)

// end.lua's and restock.lua's texts as sent (end.lua's with the prelude),
// for the tests that call them with raw arguments.
var (
	EndSrc     = endScript.src
	RestockSrc = restockScript.src
)

// For the tests of package lua_test: the bucket scripts' halves, called
// one at a time.
var ParseBucketClaims = parseBucketClaims

// Take is the debit half of a transfer, with the caller's id.
func Take(ctx context.Context, ls *Lease, src, dst int, id string, n int64, r uint64) (int64, string, error) {
	return ls.take(ctx, src, dst, id, n, r)
}

// Credit runs bucket_credit.lua and returns its code.
func Credit(ctx context.Context, ls *Lease, dst int, id, list string) (int64, error) {
	return bucketCreditScript.Exec(ctx, ls.c, ls.l.creditKeys(dst), []string{strconv.FormatInt(ls.Fence, 10), id, list}).AsInt64()
}
