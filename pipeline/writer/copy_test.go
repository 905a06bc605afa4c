package writer_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/writer"
)

// claimsOf are n events of campaign id for users prefix0..prefix(n-1), with
// their rows for AssertState added to want.
func claimsOf(id int64, prefix string, n int, at int64, want map[string]testenv.Row) []pipeline.Event {
	evs := make([]pipeline.Event, n)
	for i := range evs {
		amount := []int64{5, 5, 20}[i%3]
		evs[i] = pipeline.Event{CampaignID: id, UserID: fmt.Sprintf("%s%03d", prefix, i), Amount: amount, ClaimedAt: at + int64(i)}
		if want != nil {
			want[evs[i].UserID] = testenv.Row{Amount: amount, ClaimedAt: at + int64(i)}
		}
	}
	return evs
}

// A batch that COPY cannot take (a claim already in claim_log) is written
// by the conflict path; the batches after it, with and without duplicates,
// come out exactly once whichever path each one takes.
func TestWriterCopyFallsBack(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 1000, 20: 1000})
	at := time.Now().Add(-time.Minute).UnixMilli()
	want := map[string]testenv.Row{}

	first := claimsOf(id, "a", 20, at, want)
	if res, err := writer.New(&postgres.Store{DB: db}).Write(ctx, first); err != nil || res.Inserted != 20 {
		t.Fatalf("first batch: %+v, %v; want 20 inserted", res, err)
	}
	testenv.AssertState(t, db, id, want)

	w := writer.New(&postgres.Store{DB: db}) // a new writer starts with COPY
	next := map[string]testenv.Row{}         // the rows of the step, added to want after it
	steps := []struct {
		name     string
		evs      func() []pipeline.Event
		inserted int
		dups     int
	}{
		// One claim already written, one repeated inside the batch (with
		// another amount: the first event wins).
		{"duplicate of a written claim", func() []pipeline.Event {
			return append(claimsOf(id, "b", 10, at, next), first[7], pipeline.Event{CampaignID: id, UserID: "b003", Amount: 20, ClaimedAt: at})
		}, 10, 2},
		{"clean batch after duplicates", func() []pipeline.Event { return claimsOf(id, "c", 10, at, next) }, 10, 0},
		{"clean batch", func() []pipeline.Event { return claimsOf(id, "d", 10, at, next) }, 10, 0},
		{"only duplicates", func() []pipeline.Event { return claimsOf(id, "d", 10, at, nil) }, 0, 10},
		{"repeat inside a clean batch", func() []pipeline.Event {
			return append(claimsOf(id, "e", 10, at, next), claimsOf(id, "e", 10, at+1, nil)...)
		}, 10, 10},
	}
	for _, s := range steps {
		res, err := w.Write(ctx, s.evs())
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.Inserted != s.inserted || res.Duplicates != s.dups || len(res.Rejected) != 0 {
			t.Fatalf("%s: %+v, want %d inserted, %d duplicates", s.name, res, s.inserted, s.dups)
		}
		maps.Copy(want, next)
		testenv.AssertState(t, db, id, want)
	}
}

// Rows PostgreSQL refuses (a value it cannot store: class 22; past the
// inventory: class 23) are rejected one by one, on either path.
func TestWriterCopyRejectsRows(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 2})
	at := time.Now().UnixMilli()
	w := writer.New(&postgres.Store{DB: db})

	for round, dup := range []bool{false, true} {
		user := func(s string) string { return fmt.Sprintf("%s-%d", s, round) }
		evs := []pipeline.Event{
			{CampaignID: id, UserID: user("ok"), Amount: 5, ClaimedAt: at},
			{CampaignID: id, UserID: user("bad\xff"), Amount: 5, ClaimedAt: at}, // not UTF-8
		}
		if dup {
			// A batch of duplicates first, so this one takes the conflict
			// path; in it a claim of round 0 and one past the inventory.
			if res, err := w.Write(ctx, []pipeline.Event{{CampaignID: id, UserID: "ok-0", Amount: 5, ClaimedAt: at}}); err != nil || res.Duplicates != 1 {
				t.Fatalf("duplicate: %+v, %v", res, err)
			}
			evs = append(evs, pipeline.Event{CampaignID: id, UserID: "ok-0", Amount: 5, ClaimedAt: at},
				pipeline.Event{CampaignID: id, UserID: user("over"), Amount: 5, ClaimedAt: at})
		}
		res, err := w.Write(ctx, evs)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		var rejected []int
		for _, r := range res.Rejected {
			if r.Reason != pipeline.ReasonRejected {
				t.Fatalf("round %d: rejected %d for %s, want %s", round, r.Index, r.Reason, pipeline.ReasonRejected)
			}
			rejected = append(rejected, r.Index)
		}
		want := "[1]"
		if dup {
			want = "[1 3]"
		}
		if fmt.Sprint(rejected) != want || res.Inserted != 1 {
			t.Fatalf("round %d: %+v, want 1 inserted, %s rejected", round, res, want)
		}
	}
	testenv.AssertState(t, db, id, map[string]testenv.Row{"ok-0": {Amount: 5, ClaimedAt: at}, "ok-1": {Amount: 5, ClaimedAt: at}})
}

// Two writers (a consumer and a reconciler, or two consumers across a
// rebalance) writing the same claims at once: each claim is inserted once
// and counted once in opened_count.
func TestWriterConcurrentSameClaims(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 100_000, 20: 100_000})
	at := time.Now().UnixMilli()
	want := map[string]testenv.Row{}
	writers := []*writer.Writer{writer.New(&postgres.Store{DB: db}), writer.New(&postgres.Store{DB: db})}

	for round := range 10 {
		all := claimsOf(id, fmt.Sprintf("r%d-", round), 300, at, want)
		// The same batch to both; every other round, batches that overlap
		// by a third.
		batches := [][]pipeline.Event{all, all}
		if round%2 == 1 {
			batches = [][]pipeline.Event{all[:200], all[100:]}
		}
		var wg sync.WaitGroup
		results := make([]writer.Result, 2)
		errs := make([]error, 2)
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				results[i], errs[i] = writers[i].Write(ctx, batches[i])
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, writer %d: %v", round, i, err)
			}
		}
		ins := results[0].Inserted + results[1].Inserted
		dups := results[0].Duplicates + results[1].Duplicates
		if ins != 300 || dups != len(batches[0])+len(batches[1])-300 {
			t.Fatalf("round %d: %+v and %+v, want 300 inserted in all", round, results[0], results[1])
		}
		testenv.AssertState(t, db, id, want)
	}
}
