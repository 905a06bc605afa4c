package writer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/writer"
)

func TestWriterExactlyOnce(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 100, 20: 10})
	w := writer.New(&postgres.Store{DB: db})
	at := time.Now().Add(-time.Minute).UnixMilli()

	var batch []pipeline.Event
	want := map[string]testenv.Row{}
	for i := range 30 {
		amount := int64(5)
		if i%5 == 0 {
			amount = 20
		}
		user := fmt.Sprintf("u%02d", i)
		batch = append(batch, pipeline.Event{CampaignID: id, UserID: user, Amount: amount, ClaimedAt: at + int64(i)})
		want[user] = testenv.Row{Amount: amount, ClaimedAt: at + int64(i)}
	}
	res, err := w.Write(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 30 || res.Duplicates != 0 || len(res.Rejected) != 0 {
		t.Fatalf("first write: %+v, want 30 inserted", res)
	}
	testenv.AssertState(t, db, id, want)

	// The same batch again: a redelivery changes nothing.
	res, err = w.Write(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 0 || res.Duplicates != 30 {
		t.Fatalf("second write: %+v, want 30 duplicates", res)
	}
	testenv.AssertState(t, db, id, want)

	// Repeats inside one batch, mixed with new claims and old ones: the
	// first event of a (campaign, user) wins.
	mixed := []pipeline.Event{
		{CampaignID: id, UserID: "new-a", Amount: 5, ClaimedAt: at},
		{CampaignID: id, UserID: "new-a", Amount: 20, ClaimedAt: at + 1}, // a repeat in the batch
		{CampaignID: id, UserID: "u01", Amount: 5, ClaimedAt: at + 1},    // already written
		{CampaignID: id, UserID: "new-b", Amount: 20, ClaimedAt: at + 2},
		{CampaignID: id, UserID: "new-a", Amount: 5, ClaimedAt: at},
		{CampaignID: id, UserID: "new-b", Amount: 20, ClaimedAt: at + 2},
	}
	res, err = w.Write(ctx, mixed)
	if err != nil {
		t.Fatal(err)
	}
	if res.Inserted != 2 || res.Duplicates != 4 {
		t.Fatalf("mixed write: %+v, want 2 inserted, 4 duplicates", res)
	}
	want["new-a"] = testenv.Row{Amount: 5, ClaimedAt: at}
	want["new-b"] = testenv.Row{Amount: 20, ClaimedAt: at + 2}
	testenv.AssertState(t, db, id, want)
}

func TestWriterRejects(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 2})
	w := writer.New(&postgres.Store{DB: db})
	at := time.Now().UnixMilli()
	unknown := id + 1_000_000_000 // no campaign has it (ids are a sequence)

	evs := []pipeline.Event{
		{CampaignID: id, UserID: "ok-1", Amount: 5, ClaimedAt: at},
		{CampaignID: unknown, UserID: "x", Amount: 5, ClaimedAt: at},
		{CampaignID: id, UserID: "bad-amount", Amount: 7, ClaimedAt: at},
		{CampaignID: id, UserID: "ok-2", Amount: 5, ClaimedAt: at},
		// Past the inventory (total 2): the CHECK on opened_count refuses
		// it, and only it.
		{CampaignID: id, UserID: "ok-3", Amount: 5, ClaimedAt: at},
	}
	res, err := w.Write(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for _, r := range res.Rejected {
		got[r.Index] = r.Reason
	}
	want := map[int]string{1: pipeline.ReasonUnknownCampaign, 2: pipeline.ReasonUnknownAmount, 4: pipeline.ReasonRejected}
	if fmt.Sprint(got) != fmt.Sprint(want) || res.Inserted != 2 {
		t.Fatalf("rejected %v inserted %d, want %v and 2", got, res.Inserted, want)
	}
	testenv.AssertState(t, db, id, map[string]testenv.Row{"ok-1": {Amount: 5, ClaimedAt: at}, "ok-2": {Amount: 5, ClaimedAt: at}})
}
