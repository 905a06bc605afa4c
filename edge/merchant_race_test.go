package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redpacket/rain/edge/engine"
	"github.com/redpacket/rain/internal/app/consumerproc"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/consumer"
	"github.com/valyala/fasthttp"
)

// answer is one open of the flood, as its client saw it.
type answer struct {
	campaign   int64
	replica    int
	user       string
	sent, recv time.Time
	status     int
	outcome    string
	amount     int64
}

// send makes one request through the harness and validates the exchange;
// unlike do, it may run on any goroutine (it fails the test with Errorf).
func (h *harness) send(method, uri, body string) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://api" + uri)
	req.Header.SetMethod(method)
	req.SetBodyString(body)
	if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		return 0, nil, err
	}
	x := fromFast(req, resp)
	checkExchange(h.t, x)
	return x.status, x.respBody, nil
}

// TestMerchantRaceTwoReplicas: an add-stock and two ends, each made through
// one of two api replicas on the same Redis and PostgreSQL, while a flood
// of opens (new users and repeats) hits both. Both replicas remember
// sold-out campaigns for a minute (SOLD_OUT_TTL), so only the refresher can
// bring them the changes. Checked:
//   - no open sent after an end answered is OK, and every open sent
//     followWithin after it is ENDED, on both replicas (answers from memory
//     too);
//   - no open sent followWithin after the restock answered is SOLD_OUT, on
//     both replicas, while stock remains;
//   - no packet beyond the new total: Redis holds exactly the OK claims,
//     remaining + claims = PostgreSQL's total, a retried restock added once;
//   - every OK is in claim_log with its amount (a consumer runs here);
//   - a repeat gets the amount of the user's OK.
func TestMerchantRaceTwoReplicas(t *testing.T) {
	// followWithin is a ceiling for a busy machine, not the product's pace:
	// the refresher follows within MEMORY_REFRESH (250 ms), but under -race
	// with other packages' tests on 2 cores a pass was seen 1.5 s late. A
	// replica that never follows still fails: each phase lasts a second
	// past it.
	const followWithin = 2 * time.Second
	const phase = followWithin + time.Second
	topic := testenv.NewTopic(t, 3)
	set := func(c *engine.Config) { c.SoldOutTTL = time.Minute }
	reps := []*harness{
		newHarness(t, harnessOpt{topic: topic, engine: set, ringSize: 1 << 14}),
		newHarness(t, harnessOpt{topic: topic, engine: set, ringSize: 1 << 14}),
	}
	a, b := reps[0], reps[1]
	db := a.srv.store
	ctx := context.Background()
	restocked := a.live(`{"5":60,"20":40}`) // sold out, restocked (more than the flood takes), then ended
	ended := a.live(`{"5":100}`)            // sold out, then ended
	topped := a.live(`{"20":100}`)          // sold out, restocked with 50, sold out again
	camps := []int64{restocked, ended, topped}

	// The flood: per replica, workers opening both campaigns with new users
	// and repeats of their own earlier users.
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers []answer
	)
	for r, h := range reps {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []answer
				var users []string
				for n := 0; !stop.Load(); n++ {
					id := camps[n%len(camps)]
					user := fmt.Sprintf("r%d-w%d-%d", r, w, n)
					if n%4 == 3 && len(users) > 0 {
						user = users[(n/4)%len(users)]
					} else {
						users = append(users, user)
					}
					x := answer{campaign: id, replica: r, user: user, sent: time.Now()}
					status, body, err := h.send("POST", fmt.Sprintf("/campaign/%d/open", id), `{"user_id":"`+user+`"}`)
					x.recv, x.status = time.Now(), status
					if err != nil {
						t.Errorf("open: %v", err)
						return
					}
					var m struct {
						Status string
						Amount int64
					}
					if err := json.Unmarshal(body, &m); err != nil {
						t.Errorf("open answer %q: %v", body, err)
						return
					}
					x.outcome, x.amount = m.Status, m.Amount
					mine = append(mine, x)
				}
				mu.Lock()
				answers = append(answers, mine...)
				mu.Unlock()
			}()
		}
	}
	defer func() { stop.Store(true); wg.Wait() }()

	claims := func(id int64) int64 {
		n, err := a.redis.Do(ctx, a.redis.B().Hlen().Key(testenv.Keys().Of(id).Claims()).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		return claims(restocked) == 100 && claims(ended) == 100 && claims(topped) == 100,
			fmt.Sprintf("claims %d, %d and %d of 100 each", claims(restocked), claims(ended), claims(topped))
	})
	time.Sleep(300 * time.Millisecond) // sold-out floods now answered from memory

	merchant := func(h *harness, uri, key, body string) map[string]any {
		hdr := bearerOf(testToken)
		if key != "" {
			hdr[headerIdemKey] = key
		}
		status, _, raw := h.req("POST", uri, hdr, body)
		if status != 200 {
			t.Fatalf("POST %s: %d %s", uri, status, raw)
		}
		return jsonOf(t, raw)
	}
	const added = 5_000_000
	stockURI := fmt.Sprintf("/campaign/%d/stock", restocked)
	first := merchant(a, stockURI, "race-1", fmt.Sprintf(`{"amount":5,"count":%d}`, added))
	restockAt := time.Now()
	if again := merchant(b, stockURI, "race-1", fmt.Sprintf(`{"amount":5,"count":%d}`, added)); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("retried restock: %v, first %v", again, first)
	}
	merchant(b, fmt.Sprintf("/campaign/%d/stock", topped), "", `{"amount":20,"count":50}`)
	time.Sleep(phase)

	merchant(b, fmt.Sprintf("/campaign/%d/end", ended), "", "")
	endedAt := time.Now()
	time.Sleep(phase)
	merchant(a, fmt.Sprintf("/campaign/%d/end", restocked), "", "")
	restockedEndAt := time.Now()
	time.Sleep(phase)
	stop.Store(true)
	wg.Wait()

	endOf := map[int64]time.Time{ended: endedAt, restocked: restockedEndAt, topped: time.Now().Add(time.Hour)}
	won := map[int64]map[string]int64{restocked: {}, ended: {}, topped: {}}
	count := map[string]int{}
	for _, x := range answers {
		count[fmt.Sprintf("%d/%d", x.status, x.replica)]++
		end := endOf[x.campaign]
		switch {
		case x.status == 200:
			if _, dup := won[x.campaign][x.user]; dup {
				t.Errorf("user %s got two packets of campaign %d", x.user, x.campaign)
			}
			won[x.campaign][x.user] = x.amount
			if x.sent.After(end) {
				t.Errorf("replica %d: OK to an open sent %v after the end", x.replica, x.sent.Sub(end))
			}
		case x.status == 409 || x.status == 410 || x.status == 400 && x.outcome == "ENDED":
		default:
			t.Errorf("replica %d: open answered %d %s", x.replica, x.status, x.outcome)
		}
		if x.sent.After(end.Add(followWithin)) && x.outcome != "ENDED" {
			t.Errorf("replica %d: %s to an open of campaign %d sent %v after its end", x.replica, x.outcome, x.campaign, x.sent.Sub(end))
		}
		if x.campaign == restocked && x.status == 410 && x.sent.After(restockAt.Add(followWithin)) && x.sent.Before(restockedEndAt) {
			t.Errorf("replica %d: SOLD_OUT to an open sent %v after the restock", x.replica, x.sent.Sub(restockAt))
		}
	}
	for _, x := range answers {
		if x.status == 409 && x.amount != won[x.campaign][x.user] {
			t.Errorf("repeat by %s: amount %d, the user won %d", x.user, x.amount, won[x.campaign][x.user])
		}
	}
	t.Logf("answers by status/replica: %v; OKs: %d restocked, %d ended, %d topped up", count, len(won[restocked]), len(won[ended]), len(won[topped]))
	if len(won[topped]) != 150 || len(won[ended]) != 100 {
		t.Errorf("OKs: %d of a campaign of 150 packets, %d of 100", len(won[topped]), len(won[ended]))
	}
	if count["200/0"] == 0 || count["200/1"] == 0 || count["410/0"] == 0 || count["410/1"] == 0 {
		t.Errorf("the flood did not reach every case on both replicas: %v", count)
	}

	// Redis holds exactly the OK claims, within the totals.
	totals := map[int64]int64{restocked: 100 + added, ended: 100, topped: 150}
	for _, id := range camps {
		k := testenv.Keys().Of(id)
		st, err := lua.ReadState(ctx, a.redis, k)
		if err != nil {
			t.Fatal(err)
		}
		if st.Claims != int64(len(won[id])) || st.Left+st.Claims != totals[id] {
			t.Errorf("campaign %d: redis %d claims and %d left, the flood won %d, total %d", id, st.Claims, st.Left, len(won[id]), totals[id])
		}
		var endMs int64
		c, err := a.eng.Campaign(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		endMs = c.EndTime.UnixMilli()
		if err := lua.ScanClaims(ctx, a.redis, k, func(u string, amount, at int64) error {
			if won[id][u] != amount {
				return fmt.Errorf("redis claim %s=%d, the flood saw %d", u, amount, won[id][u])
			}
			// Redis dates claims in milliseconds: one decided just before
			// the end, in the same millisecond, carries the end's.
			if at > endMs {
				return fmt.Errorf("claim of %s at %d, after the end %d", u, at, endMs)
			}
			return nil
		}); err != nil {
			t.Errorf("campaign %d: %v", id, err)
		}
	}

	// Every OK reaches claim_log, through Kafka and a consumer.
	cfg := consumerproc.DefaultMainConfig().Consumer
	cfg.Group = fmt.Sprintf("g_%s_%d", t.Name(), time.Now().UnixNano())
	cons, err := consumer.New(cfg, pipeline.KafkaConfig{Brokers: testenv.Brokers(), Topic: topic, DLQTopic: topic + ".dlq", Partitions: 3},
		db, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(cctx) }()
	defer func() { cancel(); <-done }()
	for _, id := range camps {
		testenv.Eventually(t, time.Minute, func() (bool, string) {
			n := len(testenv.ClaimLog(t, db.DB, id))
			return n == len(won[id]), fmt.Sprintf("campaign %d: %d of %d claims in claim_log", id, n, len(won[id]))
		})
		for u, row := range testenv.ClaimLog(t, db.DB, id) {
			if won[id][u] != row.Amount {
				t.Errorf("claim_log of %d: %s=%d, the api answered %d", id, u, row.Amount, won[id][u])
			}
		}
	}
}
