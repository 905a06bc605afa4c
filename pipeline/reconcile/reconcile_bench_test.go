package reconcile_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline/reconcile"
)

// BenchmarkReconcilePass is the cost of one periodic pass over a live
// campaign of 200,000 claims whose events are in flight (Redis holds more
// claims than claim_log): "scan" reads the whole hash (what every pass did
// before the counts decided), "deferred" is a pass the counts let skip it.
//
//	go test -run '^$' -bench ReconcilePass ./pipeline/reconcile/
func BenchmarkReconcilePass(b *testing.B) {
	const claims = 200_000
	db, rdb := testenv.Postgres(b), testenv.Redis(b)
	ctx := context.Background()
	inventory := map[int64]int64{5: 1_000_000}
	id := testenv.LiveCampaign(b, db, inventory)
	k := loadRedis(b, rdb, id, inventory)
	rec := newReconciler(b, db, rdb, nil)
	// A first pass sees the campaign empty: every claim after it is newer
	// than the hour of grace the passes below leave alone.
	if _, err := rec.Reconcile(ctx, reconcile.Options{Grace: time.Hour}, id); err != nil {
		b.Fatal(err)
	}
	at := time.Now().UnixMilli()
	for i := 0; i < claims; i += 1000 {
		cmd := rdb.B().Hset().Key(k.Claims()).FieldValue()
		for j := i; j < i+1000; j++ {
			cmd = cmd.FieldValue(fmt.Sprintf("user-%07d", j), lua.ClaimValue(5, at))
		}
		if err := rdb.Do(ctx, cmd.Build()).Error(); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		opts reconcile.Options
		want func(reconcile.Report) bool
	}{
		{"scan", reconcile.Options{Grace: time.Hour, Full: true}, func(r reconcile.Report) bool { return r.Scanned == claims }},
		{"deferred", reconcile.Options{Grace: time.Hour}, func(r reconcile.Report) bool { return r.Deferred == 1 && r.Scanned == 0 }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				rep, err := rec.Reconcile(ctx, c.opts, id)
				if err != nil || !c.want(rep) {
					b.Fatalf("%+v %v", rep, err)
				}
			}
		})
	}
}
