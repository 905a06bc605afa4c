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

	"github.com/redpacket/rain/internal/app/apiproc"

	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kadm"
)

// startAPI runs a whole api process (apiproc.Main, as cmd/api does) on the
// test services, producing to topic, on a free loopback port. stop closes
// it once (its producer flushed into Kafka) and returns the close's error;
// the test's cleanup runs it too and reports that error.
func startAPI(t testing.TB, topic, token string) (api *apiproc.Main, stop func() error) {
	t.Helper()
	cfg := apiproc.DefaultMainConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Boot = testenv.Boot()
	cfg.Kafka = pipeline.KafkaConfig{Brokers: testenv.Brokers(), Topic: topic, DLQTopic: topic + ".dlq", Partitions: 3}
	cfg.Producer.RingSize = 1024
	cfg.Server.AdminTokens = []string{token}
	api = apiproc.NewMain(cfg, testLogger(t))
	if err := api.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop = sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return api.Close(ctx)
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("api close: %v", err)
		}
	})
	return api, stop
}

// createCampaign creates a live campaign through the api at base with the
// given inventory JSON and extra fields (`,"buckets":4`), and returns its id.
func createCampaign(t *testing.T, client *http.Client, base, token, name, inventory, extra string) int64 {
	t.Helper()
	now := time.Now().UTC()
	body := fmt.Sprintf(`{"name":%q,"start_time":%q,"end_time":%q,"inventory":%s%s}`, name,
		now.Add(-time.Minute).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339), inventory, extra)
	req, _ := http.NewRequest("POST", base+"/campaign", bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID int64 }
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || json.Unmarshal(b, &created) != nil || created.ID == 0 {
		t.Fatalf("create campaign: %d %s", resp.StatusCode, b)
	}
	return created.ID
}

// TestEndToEnd runs the whole path: the api process on a test topic, a campaign created over HTTP, concurrent opens, then the
// consumer. claim_log must hold exactly the (user, amount) pairs that got
// 200, and opened_count per amount their number.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	rdb, db := testenv.Redis(t), testenv.Postgres(t)
	topic := testenv.NewTopic(t, 3)

	const token = "e2e-token"
	api, stopAPI := startAPI(t, topic, token)
	base := "http://" + api.Addr()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	// Create: 30 packets of 20 and 220 of 5, for 300 users: 50 sell out.
	id := createCampaign(t, client, base, token, "e2e", `{"20":30,"5":220}`, "")
	t.Cleanup(func() {
		testenv.DeleteCampaign(db, id)
		k := testenv.Keys().Of(id)
		rdb.Do(context.Background(), rdb.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())
	})

	// 300 distinct users open concurrently, 60 of them twice.
	type open struct {
		user string
		code int
		body string
	}
	var jobs []string
	for i := range 300 {
		jobs = append(jobs, fmt.Sprintf("e2e-user-%03d", i))
	}
	for i := 0; i < 300; i += 5 {
		jobs = append(jobs, fmt.Sprintf("e2e-user-%03d", i))
	}
	work := make(chan string)
	results := make(chan open, len(jobs))
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				resp, err := client.Post(fmt.Sprintf("%s/campaign/%d/open", base, id), "application/json",
					bytes.NewBufferString(`{"user_id":"`+u+`"}`))
				if err != nil {
					results <- open{u, 0, err.Error()}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				results <- open{u, resp.StatusCode, string(b)}
			}
		}()
	}
	for _, u := range jobs {
		work <- u
	}
	close(work)
	wg.Wait()
	close(results)

	won := map[string]int64{} // user -> amount, from the 200s
	codes := map[int]int{}
	for r := range results {
		codes[r.code]++
		switch r.code {
		case 200:
			var ok struct{ Amount int64 }
			if err := json.Unmarshal([]byte(r.body), &ok); err != nil || ok.Amount == 0 {
				t.Fatalf("200 body %q", r.body)
			}
			if _, dup := won[r.user]; dup {
				t.Fatalf("user %s got two 200s", r.user)
			}
			won[r.user] = ok.Amount
		case 409, 410:
		default:
			t.Fatalf("open by %s: %d %s", r.user, r.code, r.body)
		}
	}
	if len(won) != 250 || codes[200] != 250 {
		t.Fatalf("%d users won (codes %v), want 250: the inventory", len(won), codes)
	}
	_ = stopAPI() // flushes the producer: every 200's event is in Kafka (an error is reported at cleanup)

	g := group(t)
	startConsumer(t, db, opts{topic: topic, group: g})
	waitCommitted(t, kadm.NewClient(testenv.Kafka(t)), g, topic, 30*time.Second)
	got := testenv.ClaimLog(t, db, id)
	if len(got) != len(won) {
		t.Fatalf("claim_log holds %d claims, want %d", len(got), len(won))
	}
	wantOpened := map[int64]int64{}
	for u, amount := range won {
		if got[u].Amount != amount {
			t.Fatalf("claim_log: user %s has %+v, the api said %d", u, got[u], amount)
		}
		wantOpened[amount]++
	}
	if o := testenv.OpenedCounts(t, db, id); fmt.Sprint(o) != fmt.Sprint(wantOpened) {
		t.Fatalf("opened_count %v, want %v", o, wantOpened)
	}
	if fmt.Sprint(wantOpened) != fmt.Sprint(map[int64]int64{5: 220, 20: 30}) {
		t.Fatalf("claims per amount %v, want the whole inventory", wantOpened)
	}
	// The claim times are those Redis recorded.
	if err := lua.ScanClaims(context.Background(), rdb, testenv.Keys().Of(id), func(u string, amount, at int64) error {
		if got[u] != (testenv.Row{Amount: amount, ClaimedAt: at}) {
			return fmt.Errorf("user %s: redis %d@%d, claim_log %+v", u, amount, at, got[u])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
