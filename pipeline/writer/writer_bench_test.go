package writer_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/history"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/writer"
)

// BenchmarkWriter measures writing batches of claims with exactly-once
// effect, 0 % or 10 % of each batch redelivered from the batch before, two
// ways:
//
//	statement: every batch through one INSERT … SELECT FROM unnest(…)
//	           ON CONFLICT DO NOTHING feeding the opened_count update
//	           (postgres.Store.InsertClaims), as the writer did before COPY
//	writer:    writer.Writer: COPY while no duplicate turns up, that
//	           statement for the batches that hold some
//
// Besides rows/s (events given per second, duplicates included) it reports
// PostgreSQL's CPU per event: pg-cpu-µs/row (the connection's backend and
// the server's background processes), pg-backend-µs/row (the backend
// alone) and rows/pg-cpu-s (rows per second of that CPU: the rate one core
// of PostgreSQL sustains). PostgreSQL must run on this machine.
//
// With BENCH_HISTORY=N the database first holds N claims of ended
// campaigns (internal/dev/history: made when missing, kept for the next
// run). With BENCH_USERS=random the user ids are random (16 hex digits),
// so a batch's keys land all over the partition's index, as real users'
// do; by default they follow the batch (bench-<batch>-<n>) and land
// together.
//
// go test -run '^$' -bench Writer -benchtime 100x -count 3 ./pipeline/writer/
func BenchmarkWriter(b *testing.B) {
	db := testenv.Postgres(b)
	store := &postgres.Store{DB: db}
	if v := os.Getenv("BENCH_HISTORY"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			b.Fatalf("BENCH_HISTORY=%q: want a number of claims", v)
		}
		if _, err := history.Fill(context.Background(), db, n, b.Logf); err != nil {
			b.Fatal(err)
		}
	}
	random := os.Getenv("BENCH_USERS") == "random"
	for _, dup := range []int{0, 10} {
		for _, size := range []int{500, 5000} {
			for _, method := range []string{"statement", "writer"} {
				b.Run(fmt.Sprintf("dup=%d%%/batch=%d/%s", dup, size, method), func(b *testing.B) {
					id := testenv.LiveCampaign(b, db, map[int64]int64{1: 50_000_000, 5: 30_000_000, 20: 20_000_000})
					w := writer.New(store)
					ctx := context.Background()
					batches := make([][]pipeline.Event, b.N)
					var prev []pipeline.Event
					for i := range batches {
						batches[i] = benchBatch(id, i, size, dup, prev, random)
						prev = batches[i]
					}
					write := func(evs []pipeline.Event) (int, error) {
						res, err := w.Write(ctx, evs)
						return res.Inserted, err
					}
					if method == "statement" {
						write = func(evs []pipeline.Event) (int, error) { return store.InsertClaims(ctx, uniqueClaims(evs)) }
					}
					stop := testenv.MeasurePostgresCPU(b, db)
					b.ResetTimer()
					start := time.Now()
					inserted := 0
					for i := 0; i < b.N; i++ {
						n, err := write(batches[i])
						if err != nil {
							b.Fatal(err)
						}
						inserted += n
					}
					el := time.Since(start)
					b.StopTimer()
					stop().Report(b, b.N*size)
					b.ReportMetric(float64(b.N*size)/el.Seconds(), "rows/s")
					b.ReportMetric(float64(inserted)/el.Seconds(), "inserted/s")
				})
			}
		}
	}
}

// benchBatch is batch i of size events, dupPct % of them taken from prev
// (a redelivery), the rest new users (random ids with random).
func benchBatch(id int64, i, size, dupPct int, prev []pipeline.Event, random bool) []pipeline.Event {
	evs := make([]pipeline.Event, 0, size)
	now := time.Now().UnixMilli()
	amounts := [...]int64{1, 1, 1, 5, 5, 20}
	for len(evs) < size {
		if dupPct > 0 && len(prev) > 0 && len(evs)%(100/dupPct) == 0 {
			evs = append(evs, prev[rand.IntN(len(prev))])
			continue
		}
		user := fmt.Sprintf("bench-%d-%d", i, len(evs))
		if random {
			user = fmt.Sprintf("%016x", rand.Uint64())
		}
		evs = append(evs, pipeline.Event{CampaignID: id, UserID: user, Amount: amounts[rand.IntN(len(amounts))], ClaimedAt: now})
	}
	return evs
}

// uniqueClaims is evs sorted by (campaign, user), the first of each kept,
// as the writer hands them to PostgreSQL.
func uniqueClaims(evs []pipeline.Event) *postgres.Claims {
	s := slices.Clone(evs)
	slices.SortStableFunc(s, func(a, b pipeline.Event) int {
		return cmp.Or(cmp.Compare(a.CampaignID, b.CampaignID), cmp.Compare(a.UserID, b.UserID))
	})
	var c postgres.Claims
	for i, ev := range s {
		if i > 0 && s[i-1].CampaignID == ev.CampaignID && s[i-1].UserID == ev.UserID {
			continue
		}
		c.Append(ev.CampaignID, ev.UserID, ev.Amount, time.UnixMilli(ev.ClaimedAt).UTC())
	}
	return &c
}
