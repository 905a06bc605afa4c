package consumer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkConsumer measures the consumer alone against the local broker
// and PostgreSQL: b.N claim events are produced first (6 partitions), then
// one consumer at the default batch size drains them; the time runs from
// its start (group join included) until every offset is committed, i.e.
// every claim is in claim_log. dup=10% makes every tenth record a
// redelivery of an earlier one.
//
//	go test -run '^$' -bench Consumer -benchtime 200000x ./pipeline/
//
// rows/s counts records consumed, inserted/s the rows new to claim_log.
func BenchmarkConsumer(b *testing.B) {
	for _, dup := range []int{0, 10} {
		b.Run(fmt.Sprintf("dup=%d%%", dup), func(b *testing.B) {
			db := testenv.Postgres(b)
			topic := testenv.NewTopic(b, 6)
			id := testenv.LiveCampaign(b, db, map[int64]int64{1: 50_000_000, 5: 30_000_000, 20: 20_000_000})
			cl := testenv.Kafka(b, kgo.DefaultProduceTopic(topic), kgo.MaxBufferedRecords(1_000_000))
			adm := kadm.NewClient(cl)

			amounts := [...]int64{1, 1, 1, 5, 5, 20}
			at := time.Now().UnixMilli()
			unique := 0
			errs := make(chan error, 1)
			for i := 0; i < b.N; i++ {
				n := unique
				if dup > 0 && i%100 < dup && unique > 0 {
					n = rand.IntN(unique) // a redelivery of an earlier claim
				} else {
					unique++
				}
				user := "bench-" + strconv.Itoa(n)
				cl.Produce(context.Background(), &kgo.Record{Key: []byte(user), Value: testenv.EventJSON(id, user, amounts[n%len(amounts)], at)},
					func(_ *kgo.Record, err error) {
						if err != nil {
							select {
							case errs <- err:
							default:
							}
						}
					})
			}
			if err := cl.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			select {
			case err := <-errs:
				b.Fatal(err)
			default:
			}

			g := group(b)
			b.ResetTimer()
			start := time.Now()
			_, stop := startConsumer(b, db, opts{topic: topic, group: g})
			waitCommitted(b, adm, g, topic, 10*time.Minute)
			el := time.Since(start)
			b.StopTimer()
			stop()
			if n := testenv.CountClaims(b, db, id); n != unique {
				b.Fatalf("%d claims in claim_log, want %d", n, unique)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "rows/s")
			b.ReportMetric(float64(unique)/el.Seconds(), "inserted/s")
		})
	}
}
