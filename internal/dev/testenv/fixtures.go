package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Fixtures shared by the tests of several packages.

// NewCampaign inserts a campaign with the given window and inventory
// (amount -> total) straight into PostgreSQL and deletes it, with its
// claims, when the test ends. The database is shared by every test package:
// each test works in its own campaigns only.
func NewCampaign(tb testing.TB, db *pgxpool.Pool, start, end time.Time, inventory map[int64]int64) int64 {
	tb.Helper()
	ctx := context.Background()
	var id int64
	err := db.QueryRow(ctx, `INSERT INTO campaign (name, start_time, end_time) VALUES ($1, $2, $3) RETURNING id`,
		"test "+tb.Name(), start, end).Scan(&id)
	if err != nil {
		tb.Fatalf("insert campaign: %v", err)
	}
	for amount, total := range inventory {
		if _, err := db.Exec(ctx, `INSERT INTO campaign_inventory (campaign_id, amount, total_count) VALUES ($1, $2, $3)`,
			id, amount, total); err != nil {
			tb.Fatalf("insert inventory: %v", err)
		}
	}
	tb.Cleanup(func() { DeleteCampaign(db, id) })
	return id
}

// LiveCampaign is a campaign open from an hour ago to an hour from now.
func LiveCampaign(tb testing.TB, db *pgxpool.Pool, inventory map[int64]int64) int64 {
	return NewCampaign(tb, db, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), inventory)
}

// DeleteCampaign deletes campaign id with its claims (and their
// partition), best effort: a clean-up that fails leaves a test campaign
// behind, which no other test sees.
func DeleteCampaign(db *pgxpool.Pool, id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = (&postgres.Store{DB: db}).DeleteCampaign(ctx, id)
}

// Row is one claim_log row.
type Row struct {
	Amount    int64
	ClaimedAt int64 // unix ms
}

// ClaimLog reads the claims of campaign id: user -> Row.
func ClaimLog(tb testing.TB, db *pgxpool.Pool, id int64) map[string]Row {
	tb.Helper()
	rows, _ := db.Query(context.Background(),
		`SELECT user_id, amount, claimed_at FROM claim_log WHERE campaign_id = $1`, id)
	out := make(map[string]Row)
	var (
		user   string
		amount int64
		at     time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&user, &amount, &at}, func() error {
		out[user] = Row{Amount: amount, ClaimedAt: at.UnixMilli()}
		return nil
	})
	if err != nil {
		tb.Fatalf("read claim_log: %v", err)
	}
	return out
}

// CountClaims is the number of claim_log rows of the campaigns.
func CountClaims(tb testing.TB, db *pgxpool.Pool, ids ...int64) int {
	tb.Helper()
	var n int
	if err := db.QueryRow(context.Background(),
		`SELECT count(*) FROM claim_log WHERE campaign_id = ANY($1)`, ids).Scan(&n); err != nil {
		tb.Fatalf("count claim_log: %v", err)
	}
	return n
}

// OpenedCounts reads opened_count per amount of campaign id.
func OpenedCounts(tb testing.TB, db *pgxpool.Pool, id int64) map[int64]int64 {
	tb.Helper()
	rows, _ := db.Query(context.Background(),
		`SELECT amount, opened_count FROM campaign_inventory WHERE campaign_id = $1`, id)
	out := make(map[int64]int64)
	var amount, n int64
	_, err := pgx.ForEachRow(rows, []any{&amount, &n}, func() error {
		out[amount] = n
		return nil
	})
	if err != nil {
		tb.Fatalf("read opened_count: %v", err)
	}
	return out
}

// Tally counts claims per amount.
func Tally(claims map[string]Row) map[int64]int64 {
	out := make(map[int64]int64)
	for _, r := range claims {
		out[r.Amount]++
	}
	return out
}

// Eventually polls cond every 50ms until it holds or timeout passes, then
// fails the test with cond's last description of the state.
func Eventually(tb testing.TB, timeout time.Duration, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %s", timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// EventJSON builds the JSON of a claim event.
func EventJSON(campaign int64, user string, amount, claimedAt int64) []byte {
	ev := pipeline.Event{CampaignID: campaign, UserID: user, Amount: amount, ClaimedAt: claimedAt}
	return ev.AppendJSON(nil)
}

// Produce writes the values to topic (keyed by index) and waits for the acks.
func Produce(tb testing.TB, cl *kgo.Client, topic string, values ...[]byte) {
	tb.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		tb.Fatalf("produce: %v", err)
	}
}

// Committed is the sum over partitions of the group's committed offsets in
// topic, and the sum of the partitions' end offsets. Kafka answers
// COORDINATOR_NOT_AVAILABLE for a moment after a group or the offsets topic
// is new: an error is returned, for the caller to poll again.
func Committed(adm *kadm.Client, group, topic string) (commit, end int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("fetch offsets of %s: %w", group, err)
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At >= 0 {
			commit += o.At
		}
	})
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	return commit, end, nil
}

// MustCommitted is committed, retried for a while on errors.
func MustCommitted(tb testing.TB, adm *kadm.Client, group, topic string) (commit, end int64) {
	tb.Helper()
	var err error
	for range 50 {
		if commit, end, err = Committed(adm, group, topic); err == nil {
			return commit, end
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatal(err)
	return 0, 0
}

// NewTopic is testenv.Topic, deleted with its DLQ when the test ends (after
// the consumers it started, which stop in cleanups registered later).
func NewTopic(tb testing.TB, partitions int32) string {
	tb.Helper()
	topic := Topic(tb, partitions)
	adm := kadm.NewClient(Kafka(tb))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopics(ctx, topic, topic+".dlq")
	})
	return topic
}

// AssertState fails the test unless claim_log of campaign id holds exactly
// want and opened_count per amount counts exactly those claims.
func AssertState(t testing.TB, db *pgxpool.Pool, id int64, want map[string]Row) {
	t.Helper()
	got := ClaimLog(t, db, id)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("claim_log of campaign %d:\n got %v\nwant %v", id, got, want)
	}
	opened := OpenedCounts(t, db, id)
	for amount, n := range Tally(want) {
		if opened[amount] != n {
			t.Fatalf("opened_count %v, want %v", opened, Tally(want))
		}
	}
	var sum int64
	for _, n := range opened {
		sum += n
	}
	if sum != int64(len(want)) {
		t.Fatalf("opened_count %v sums to %d, want %d", opened, sum, len(want))
	}
}
