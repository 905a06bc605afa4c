package consumer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/archive"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/twmb/franz-go/pkg/kadm"
)

// TestArchiveUnderLoad archives ended campaigns (export, detach, drop)
// while new users open a live campaign through the api and the consumer
// writes their claims in small batches: no open fails, every 200 is in
// claim_log once with its amount, and every claim of the archived
// campaigns is in its export.
func TestArchiveUnderLoad(t *testing.T) {
	t.Parallel()
	rdb, db := testenv.Redis(t), testenv.Postgres(t)
	s := &postgres.Store{DB: db}
	topic := testenv.NewTopic(t, 3)
	const token = "archive-token"
	api, stopAPI := startAPI(t, topic, token)
	g := group(t)
	startConsumer(t, db, opts{topic: topic, group: g, batchSize: 100})
	base := "http://" + api.Addr()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	live := createCampaign(t, client, base, token, "archive-live", `{"5":100000,"20":100000}`, "")
	t.Cleanup(func() {
		testenv.DeleteCampaign(db, live)
		k := testenv.Keys().Of(live)
		rdb.Do(context.Background(), rdb.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())
	})

	const oldClaims = 3000
	now := time.Now()
	var old []int64
	for range 3 {
		id := testenv.NewCampaign(t, db, now.Add(-72*time.Hour), now.Add(-48*time.Hour), map[int64]int64{5: oldClaims})
		var c postgres.Claims
		for i := range oldClaims {
			c.Append(id, fmt.Sprintf("old-%05d", i), 5, now.Add(-50*time.Hour))
		}
		if err := s.CopyClaims(context.Background(), &c); err != nil {
			t.Fatal(err)
		}
		old = append(old, id)
	}

	// Opens by new users, 16 at a time, until stopped.
	var (
		mu      sync.Mutex
		won     = map[string]int64{}
		failed  []string
		opened  atomic.Int64
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		openURL = fmt.Sprintf("%s/campaign/%d/open", base, live)
	)
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				user := fmt.Sprintf("arch-%02d-%06d", w, i)
				resp, err := client.Post(openURL, "application/json", bytes.NewBufferString(`{"user_id":"`+user+`"}`))
				if err != nil {
					mu.Lock()
					failed = append(failed, user+": "+err.Error())
					mu.Unlock()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var ok struct{ Amount int64 }
				mu.Lock()
				if resp.StatusCode == 200 && json.Unmarshal(b, &ok) == nil && ok.Amount > 0 {
					won[user] = ok.Amount
				} else {
					failed = append(failed, fmt.Sprintf("%s: %d %s", user, resp.StatusCode, b))
				}
				mu.Unlock()
				opened.Add(1)
			}
		})
	}
	waitOpens := func(n int64) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			return opened.Load() >= n, fmt.Sprintf("%d opens of %d", opened.Load(), n)
		})
	}
	waitOpens(300)
	before := testenv.CountClaims(t, db, live)
	dir := t.TempDir()
	for _, id := range old {
		res, err := archive.Campaign(context.Background(), s, id, archive.Options{Dir: dir, Before: now.Add(-24 * time.Hour), Drop: true})
		if err != nil {
			t.Fatal(err)
		}
		if res.Claims != oldClaims || !res.Dropped || exportRows(t, res.File) != oldClaims {
			t.Fatalf("archive of %d: %+v", id, res)
		}
		if _, _, err := s.ClaimsPage(context.Background(), id, 0, "", 10); rain.ErrorCode(err) != rain.EARCHIVED {
			t.Fatalf("claims of archived campaign %d: %v", id, err)
		}
	}
	// The writer was not held up: claims of the live campaign kept
	// reaching claim_log while the archives ran.
	if during := testenv.CountClaims(t, db, live); during <= before {
		t.Fatalf("claim_log of the live campaign: %d claims before the archives, %d after", before, during)
	}
	waitOpens(opened.Load() + 300)
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d opens failed during the archive, first: %s", len(failed), opened.Load(), failed[0])
	}

	_ = stopAPI() // flushes the producer: every 200's event is in Kafka (an error is reported at cleanup)
	waitCommitted(t, kadm.NewClient(testenv.Kafka(t)), g, topic, 60*time.Second)
	want := map[string]testenv.Row{}
	got := testenv.ClaimLog(t, db, live)
	for u, amount := range won {
		if got[u].Amount != amount {
			t.Fatalf("user %s: claim_log %+v, the api said %d", u, got[u], amount)
		}
		want[u] = got[u]
	}
	testenv.AssertState(t, db, live, want) // and nothing else, opened_count agreeing
	t.Logf("%d opens while %d campaigns of %d claims were archived", len(won), len(old), oldClaims)
}

// exportRows is the number of claims in an archive's export (its lines
// less the header).
func exportRows(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(recs) - 1)
}
