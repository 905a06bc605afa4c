package main

import (
	"fmt"
	"testing"

	"github.com/redpacket/rain/loadtest/harness"
	"github.com/redpacket/rain/lua"
)

// bucketFixture is the fixture with the small campaign split over 4
// buckets: its claims found in their own buckets, sold out, nothing left.
func bucketFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture()
	small := f.states[1]
	small.K = 4
	small.Total = map[int64]int64{8: 2}
	small.Opened = map[int64]int64{8: 2}
	small.Log = map[string]int64{"s1": 8, "s3": 8}
	small.Redis = map[string]int64{"s1": 8, "s3": 8}
	small.LogRows = 2
	small.BucketLeft = []int64{0, 0, 0, 0}
	small.ClaimBuckets = map[string][]int{}
	for _, u := range []string{"s1", "s3"} {
		b := lua.BucketOf(small.ID, u, small.K)
		small.ClaimBuckets[u] = []int{b}
		small.BucketClaims = append(small.BucketClaims, harness.BucketClaim{User: u, Bucket: b, Amount: 8})
	}
	f.recs = append(f.recs, harness.Record{Campaign: 2, User: "s3", Kind: harness.KindFirst, Attempt: 1, Status: 200, Code: "OK", Amount: 8})
	return f
}

func bucketVerdicts(f *fixture) map[string]harness.Verdict {
	out := map[string]harness.Verdict{}
	for _, v := range Check(f.recs, f.states, CheckOptions{}) {
		out[v.Name] = v
	}
	return out
}

func TestCheckBucketsClean(t *testing.T) {
	got := bucketVerdicts(bucketFixture(t))
	v, ok := got[InvBuckets]
	if !ok {
		t.Fatal("no buckets verdict for a bucketed campaign")
	}
	expect(t, got, nil, nil)
	if v.Short != "2" {
		t.Errorf("bucket claims checked: %q, want 2", v.Short)
	}
	if _, ok := bucketVerdicts(newFixture())[InvBuckets]; ok {
		t.Error("a buckets verdict without a bucketed campaign")
	}
}

func TestCheckBucketsViolations(t *testing.T) {
	other := func(st *harness.CampaignState, u string) int { return (lua.BucketOf(st.ID, u, st.K) + 1) % st.K }
	tests := []struct {
		name   string
		edit   func(st *harness.CampaignState)
		failed []string
	}{
		{"a user in two buckets", func(st *harness.CampaignState) {
			b := other(st, "s1")
			st.ClaimBuckets["s1"] = append(st.ClaimBuckets["s1"], b)
			st.BucketClaims = append(st.BucketClaims, harness.BucketClaim{User: "s1", Bucket: b, Amount: 8})
		}, []string{InvBuckets}},
		{"a claim in another user's bucket", func(st *harness.CampaignState) {
			st.BucketClaims[0].Bucket = other(st, st.BucketClaims[0].User)
			st.ClaimBuckets[st.BucketClaims[0].User] = []int{st.BucketClaims[0].Bucket}
		}, []string{InvBuckets}},
		{"claims over an amount's total", func(st *harness.CampaignState) {
			st.Total = map[int64]int64{8: 1, 88: 1}
			st.Opened = map[int64]int64{8: 2, 88: 0}
		}, []string{InvBuckets, InvStock}},
		{"claims over the total", func(st *harness.CampaignState) {
			for i := range 3 {
				u := fmt.Sprintf("x%d", i)
				st.BucketClaims = append(st.BucketClaims, harness.BucketClaim{User: u, Bucket: lua.BucketOf(st.ID, u, st.K), Amount: 8})
			}
		}, []string{InvBuckets}},
		{"SOLD_OUT with a bucket holding stock", func(st *harness.CampaignState) {
			st.BucketLeft[2] = 1
		}, []string{InvBuckets}},
		{"SOLD_OUT with stock in the pool", func(st *harness.CampaignState) {
			st.PoolLeft = 1
		}, []string{InvBuckets}},
		{"SOLD_OUT with a transfer in transit", func(st *harness.CampaignState) {
			st.Pending = 1
		}, []string{InvBuckets}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := bucketFixture(t)
			tt.edit(f.states[1])
			got := bucketVerdicts(f)
			expect(t, got, tt.failed, nil)
			if !got[InvBuckets].Failed() {
				t.Errorf("buckets: want failed, got %+v", got[InvBuckets])
			}
		})
	}
}

// TestCheckBucketsStockInTransit: while a transfer is in flight its packets
// are in no part, so remaining + claimed may fall short of the total (never
// exceed it) without a SOLD_OUT.
func TestCheckBucketsStockInTransit(t *testing.T) {
	f := bucketFixture(t)
	st := f.states[1]
	st.Total = map[int64]int64{8: 5}
	st.Remaining = map[int64]int64{8: 1}
	st.Pending = 1
	f.recs = f.recs[:len(f.recs)-2] // no SOLD_OUT
	f.recs = append(f.recs, harness.Record{Campaign: 2, User: "s3", Kind: harness.KindFirst, Attempt: 1, Status: 200, Code: "OK", Amount: 8})
	expect(t, bucketVerdicts(f), nil, nil)
	st.Pending = 0
	expect(t, bucketVerdicts(f), []string{InvStock}, nil)
	st.Pending, st.Remaining[8] = 1, 4
	expect(t, bucketVerdicts(f), []string{InvStock}, nil)
}
