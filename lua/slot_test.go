package lua

import (
	"math/rand/v2"
	"testing"

	"github.com/redpacket/rain/internal/rediscluster"
)

// scriptKeys are the keys each script of a campaign is called with, as its
// wrapper passes them (ClaimBatch, Load, Readd, EndNow, Restock), and the
// other keys of the campaign (the loading lock).
func scriptKeys(k *Keys) map[string][]string {
	return map[string][]string{
		"claim.lua":   k.all[:],
		"load.lua":    k.all[:2],
		"readd.lua":   k.all[:],
		"end.lua":     k.all[:1],
		"restock.lua": k.all[:2],
		"campaign":    append(k.all[:3:3], k.loading),
	}
}

func sampleIDs() []int64 {
	ids := []int64{0, 1, 42, 1 << 31, 1<<63 - 1}
	for range 200 {
		ids = append(ids, rand.Int64N(1<<40))
	}
	return ids
}

// TestScriptKeysShareASlot: every script's keys hash to one Redis Cluster
// slot (a script whose keys did not would be refused, CROSSSLOT), for any
// campaign id and prefix; the keys of a bucketed campaign share one slot
// per bucket, and its home keys another. (testenv's client also refuses
// any cross-slot script call a test makes.)
func TestScriptKeysShareASlot(t *testing.T) {
	for _, prefix := range []string{"", "rptest", "rp:eu-1", "x"} {
		ks := NewKeyspace(prefix)
		for _, id := range sampleIDs() {
			k := ks.Of(id)
			want := rediscluster.Slot(k.Meta())
			for script, keys := range scriptKeys(k) {
				for _, key := range keys {
					if s := rediscluster.Slot(key); s != want {
						t.Fatalf("%s of campaign %d: key %s in slot %d, %s in slot %d", script, id, k.Meta(), want, key, s)
					}
				}
			}
			for _, n := range []int{2, 5, MaxBuckets} {
				l, err := ks.Layout(id, n)
				if err != nil {
					t.Fatal(err)
				}
				if s := rediscluster.Slot(l.Home.Meta()); s != want {
					t.Fatalf("campaign %d with %d buckets: home in slot %d, want %d", id, n, s, want)
				}
				for _, b := range l.Buckets {
					bs := rediscluster.Slot(b.Meta())
					for _, key := range append(b.all[:3:3], b.In(), b.Out()) {
						if s := rediscluster.Slot(key); s != bs {
							t.Fatalf("campaign %d bucket %d: %s in slot %d, %s in slot %d", id, b.Index, b.Meta(), bs, key, s)
						}
					}
				}
			}
		}
	}
}

// TestCampaignsSpreadOverSlots: campaigns of consecutive ids land on
// different slots (the id is the whole hash tag).
func TestCampaignsSpreadOverSlots(t *testing.T) {
	ks := NewKeyspace("")
	slots := map[uint16]bool{}
	for id := int64(1); id <= 300; id++ {
		slots[rediscluster.Slot(ks.Of(id).Meta())] = true
	}
	if len(slots) < 295 {
		t.Errorf("300 campaigns on %d slots", len(slots))
	}
}
