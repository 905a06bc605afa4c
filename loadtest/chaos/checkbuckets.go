package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/redpacket/rain/loadtest/harness"
	"github.com/redpacket/rain/lua"
)

// InvBuckets is the verdict on bucketed campaigns (K > 1), whose stock is
// split over buckets on several slots and a pool: every user's claim is in
// one bucket, their own; the claims over the buckets never exceed the
// total, per amount; once a user was told SOLD_OUT nothing is left in any
// bucket or the pool and nothing is in transit. (Every 200 in claim_log
// once, and claim_log = the union of the buckets' claims, are InvAcked and
// InvRedisLog, which read the union.)
const InvBuckets = "buckets"

// buckets checks the bucketed campaigns (InvBuckets).
func (c *checker) buckets(states []*harness.CampaignState) {
	for _, st := range states {
		if st.K > 1 {
			c.bucketed1(st)
		}
	}
}

func (c *checker) bucketed1(st *harness.CampaignState) {
	c.nBucketed++
	touched := map[int]bool{}
	claimed := map[int64]int64{}
	for _, bc := range st.BucketClaims {
		c.nBucketClaims++
		touched[bc.Bucket] = true
		claimed[bc.Amount]++
		if want := lua.BucketOf(st.ID, bc.User, st.K); bc.Bucket != want {
			c.bucketed.Fail("campaign %d: %s holds a claim in bucket %d, their bucket is %d", st.ID, bc.User, bc.Bucket, want)
		}
	}
	c.nBucketsTouched += len(touched)
	for _, u := range slices.Sorted(maps.Keys(st.ClaimBuckets)) {
		if bs := st.ClaimBuckets[u]; len(bs) > 1 {
			c.bucketed.Fail("campaign %d: %s holds claims in %d buckets %v", st.ID, u, len(bs), bs)
		}
	}
	var sum, total int64
	for _, a := range slices.Sorted(maps.Keys(claimed)) {
		sum += claimed[a]
		if claimed[a] > st.Total[a] {
			c.bucketed.Fail("campaign %d amount %d: %d claims over the buckets, total %d", st.ID, a, claimed[a], st.Total[a])
		}
	}
	for _, n := range st.Total {
		total += n
	}
	if sum > total {
		c.bucketed.Fail("campaign %d: %d claims over the buckets, total %d", st.ID, sum, total)
	}
	if c.restocked[st.ID] { // a restock serves a sold-out campaign again: InvRestock
		return
	}
	for _, r := range c.recs {
		if r.Campaign != st.ID || r.Status != 410 {
			continue
		}
		var left int64
		for _, n := range st.BucketLeft {
			left += n
		}
		if left > 0 || st.PoolLeft > 0 || st.Pending > 0 {
			c.bucketed.Fail("campaign %d: answered 410 SOLD_OUT (%s at %dms) but the buckets hold %d %v, the pool %d, %d transfers in transit",
				st.ID, r.User, r.AtMs, left, st.BucketLeft, st.PoolLeft, st.Pending)
		}
		break
	}
}

func (c *checker) bucketVerdict() harness.Verdict {
	return c.bucketed.Verdict(InvBuckets, c.nBucketClaims, fmt.Sprintf("%d bucketed campaigns, %d claims in %d buckets; %d violations (a user in two buckets or not their own, claims over the total, stock left after a SOLD_OUT)",
		c.nBucketed, c.nBucketClaims, c.nBucketsTouched, c.bucketed.Bad))
}
