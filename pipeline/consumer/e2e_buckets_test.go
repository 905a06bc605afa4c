package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
	"github.com/twmb/franz-go/pkg/kadm"
)

// TestEndToEndBuckets: a campaign of 4 buckets created over HTTP is sold
// out by concurrent opens of many users (a 503 is retried): exactly the
// stock is handed out, nobody twice, every 200 reaches claim_log through
// the consumer. Then Redis loses one bucket, later the whole campaign: each
// time the api lays it out again from PostgreSQL and nobody gets a second
// packet.
func TestEndToEndBuckets(t *testing.T) {
	t.Parallel()
	rdb, db := testenv.Redis(t), testenv.Postgres(t)
	topic := testenv.NewTopic(t, 3)
	const token = "e2e-token"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	api, stopAPI := startAPI(t, topic, token)
	base := "http://" + api.Addr()
	id := createCampaign(t, client, base, token, "e2e buckets", `{"20":100,"5":300}`, `,"buckets":4`)
	l, err := testenv.Keys().Layout(id, 4)
	if err != nil {
		t.Fatal(err)
	}
	unlink := func(keys []string) {
		for _, k := range keys {
			if err := rdb.Do(context.Background(), rdb.B().Unlink().Key(k).Build()).Error(); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() {
		testenv.DeleteCampaign(db, id)
		unlink(l.AllKeys())
	})

	// opens sends every user's open from 32 clients, retrying a 503, and
	// returns each user's final status and amount.
	type answer struct {
		code   int
		amount int64
	}
	opens := func(base string, users []string) map[string]answer {
		out := make(map[string]answer, len(users))
		var mu sync.Mutex
		var wg sync.WaitGroup
		work := make(chan string)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := range work {
					var a answer
					for try := 0; try < 100; try++ {
						resp, err := client.Post(fmt.Sprintf("%s/campaign/%d/open", base, id), "application/json",
							bytes.NewBufferString(`{"user_id":"`+u+`"}`))
						if err != nil {
							t.Errorf("open %s: %v", u, err)
							return
						}
						var m struct{ Amount int64 }
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						_ = json.Unmarshal(b, &m)
						a = answer{resp.StatusCode, m.Amount}
						if a.code != 503 {
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
					mu.Lock()
					out[u] = a
					mu.Unlock()
				}
			}()
		}
		for _, u := range users {
			work <- u
		}
		close(work)
		wg.Wait()
		return out
	}
	var users []string
	for i := range 600 {
		users = append(users, fmt.Sprintf("e2eb-%03d", i))
	}
	won := map[string]int64{}
	for u, a := range opens(base, users) {
		switch a.code {
		case 200:
			won[u] = a.amount
		case 410:
		default:
			t.Fatalf("open by %s: %d", u, a.code)
		}
	}
	if len(won) != 400 {
		t.Fatalf("%d users won, want 400: the inventory", len(won))
	}
	if err := stopAPI(); err != nil { // flushes the producer
		t.Fatal(err)
	}

	g := group(t)
	startConsumer(t, db, opts{topic: topic, group: g})
	waitCommitted(t, kadm.NewClient(testenv.Kafka(t)), g, topic, 30*time.Second)
	got := testenv.ClaimLog(t, db, id)
	perAmount := map[int64]int{}
	for u, amount := range won {
		if got[u].Amount != amount {
			t.Fatalf("claim_log: user %s has %+v, the api said %d", u, got[u], amount)
		}
		perAmount[amount]++
	}
	if len(got) != len(won) || perAmount[20] != 100 || perAmount[5] != 300 {
		t.Fatalf("claim_log holds %d claims (per amount %v), want the 400 of the inventory", len(got), perAmount)
	}

	// checkAgain: every winner gets 409 with their amount, anyone else 410.
	checkAgain := func(what string) {
		t.Helper()
		api, stop := startAPI(t, topic, token)
		defer stop()
		for u, a := range opens("http://"+api.Addr(), append(users, "e2eb-new-1", "e2eb-new-2")) {
			if amount, ok := won[u]; ok && (a.code != 409 || a.amount != amount) || !ok && a.code != 410 {
				t.Errorf("%s: %s got %d %d (won %d)", what, u, a.code, a.amount, won[u])
			}
		}
		st, err := lua.ReadBuckets(context.Background(), rdb, l)
		if err != nil || !st.Loaded || st.Claims != 400 || st.Left != 0 {
			t.Errorf("%s: redis holds %+v (%v), want the 400 claims and nothing left", what, st.State, err)
		}
	}
	// One bucket lost (its shard's data): the campaign is frozen and laid
	// out again from claim_log and the surviving buckets.
	b1 := l.Buckets[1]
	unlink([]string{b1.Meta(), b1.Stock(), b1.Claims(), b1.In(), b1.Out()})
	checkAgain("one bucket lost")
	// The whole campaign lost.
	unlink(l.AllKeys())
	checkAgain("all lost")
}
