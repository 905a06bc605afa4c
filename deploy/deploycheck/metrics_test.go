package deploycheck

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/app/apiproc"

	"github.com/redpacket/rain/internal/dev/stack"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
)

const adminToken = "deploycheck-token"

// running is an api served in-process and a consumer process, both on the
// local Redis, PostgreSQL and Kafka, on a topic of their own.
type running struct {
	apiAddr      string // 127.0.0.1:port of the api (HTTP, /metrics)
	consumerAddr string // 127.0.0.1:port of the consumer's METRICS_ADDR
	consumerLog  *syncBuffer
}

// syncBuffer collects a child's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startStack starts the api (apiproc.Main, as cmd/api runs it) and the
// consumer binary, exercises the api, and waits until the consumer has
// written the claims and dead-lettered a malformed record, so that the
// metrics of every path the dashboard shows have been touched.
// startAPI runs an api in-process (apiproc.Main, as cmd/api runs it) on the
// test services, producing to topic (of partitions), on a free loopback
// port, with set's changes to the default configuration; closed at cleanup.
func startAPI(t *testing.T, log *slog.Logger, topic string, partitions int, set func(*apiproc.MainConfig)) *apiproc.Main {
	t.Helper()
	cfg := apiproc.DefaultMainConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Boot = testenv.Boot()
	cfg.Kafka = pipeline.KafkaConfig{Brokers: testenv.Brokers(), Topic: topic, DLQTopic: topic + ".dlq", Partitions: partitions}
	set(&cfg)
	api := apiproc.NewMain(cfg, log)
	if err := api.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		api.Close(ctx)
	})
	return api
}

func startStack(t *testing.T) *running {
	t.Helper()
	bins := binaries(t)
	rdb := testenv.Redis(t)
	testenv.Postgres(t) // migrated before the processes start
	topic := testenv.Topic(t, 3)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	api := startAPI(t, log, topic, 3, func(cfg *apiproc.MainConfig) { cfg.Server.AdminTokens = []string{adminToken} })
	st := &running{apiAddr: api.Addr(), consumerLog: &syncBuffer{}}

	// Exercise the api: a campaign of 2 packets, 2 wins, a sold-out, a
	// repeat, the errors, the admin read, the probes.
	base := "http://" + st.apiAddr
	expect := func(method, path, token, body string, want int) string {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		return string(b)
	}
	now := time.Now().UTC()
	campaign := fmt.Sprintf(`{"name":"deploycheck","start_time":%q,"end_time":%q,"inventory":{"5":1,"20":1}}`,
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	expect("POST", "/campaign", "", campaign, 401)
	created := expect("POST", "/campaign", adminToken, campaign, 201)
	var id int64
	if _, err := fmt.Sscanf(strings.TrimSpace(created), `{"id":%d}`, &id); err != nil {
		t.Fatalf("create answered %s", created)
	}
	t.Cleanup(func() {
		k := testenv.Keys().Of(id)
		rdb.Do(context.Background(), rdb.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())
	})
	open := fmt.Sprintf("/campaign/%d/open", id)
	user := fmt.Sprintf("deploycheck-%d-", rand.Int64())
	expect("POST", open, "", `{"user_id":"`+user+`1"}`, 200)
	expect("POST", open, "", `{"user_id":"`+user+`2"}`, 200)
	expect("POST", open, "", `{"user_id":"`+user+`3"}`, 410)
	expect("POST", open, "", `{"user_id":"`+user+`1"}`, 409)
	expect("POST", open, "", `{"user_id":""}`, 400)
	expect("POST", "/campaign/999999999999/open", "", `{"user_id":"`+user+`1"}`, 404)
	expect("GET", fmt.Sprintf("/campaign/%d", id), adminToken, "", 200)
	expect("GET", "/healthz", "", "", 200)
	// Ready once the producer delivers: its first records wait for the
	// new topic's metadata, which a machine busy with every package's
	// tests gives late. Bounded by readiness, not by a fixed time.
	testenv.Eventually(t, 2*time.Minute, func() (bool, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200, fmt.Sprintf("/readyz: %d %s", resp.StatusCode, b)
	})

	// A record the consumer cannot decode: it must be dead-lettered.
	kcl := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kcl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("deploycheck"), Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatalf("produce a malformed record: %v", err)
	}

	// The consumer, as the image runs it (no periodic reconciler: it would
	// walk the campaigns of the other packages' tests in the shared database).
	st.consumerAddr = freeAddr(t)
	consumer := &stack.Proc{Name: "consumer", Path: filepath.Join(bins, "consumer"), Output: st.consumerLog}
	consumer.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"POSTGRES_DSN=" + testenv.PostgresDSN(),
		"REDIS_ADDR=" + testenv.RedisAddr(),
		"REDIS_KEY_PREFIX=" + testenv.KeyPrefix,
		"KAFKA_BROKERS=" + strings.Join(testenv.Brokers(), ","),
		"KAFKA_TOPIC=" + topic,
		"KAFKA_DLQ_TOPIC=" + topic + ".dlq",
		"KAFKA_PARTITIONS=3",
		"KAFKA_GROUP=" + topic + "-group",
		"METRICS_ADDR=" + st.consumerAddr,
		"BATCH_WAIT=10ms",
		"RECONCILE_INTERVAL=0",
		"SHUTDOWN_TIMEOUT=5s",
	}
	startProc(t, consumer, 20*time.Second)

	// Wait until the consumer has written both claims and dead-lettered the
	// malformed record (its lag gauge then exists too).
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-consumer.Done():
			t.Fatalf("consumer exited: %v\n%s", consumer.State(), tail(st.consumerLog.String(), 4000))
		default:
		}
		exp, err := scrape(st.consumerAddr)
		if err == nil && sum(exp, "rain_consumer_rows_inserted_total") >= 2 &&
			sum(exp, "rain_consumer_dead_letters_total") >= 1 && len(exp["rain_consumer_lag_records"]) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer did not write the 2 claims and dead-letter the malformed record in time "+
				"(last scrape error %v; rows_inserted %v, dead_letters %v, lag series %d)\n%s",
				err, sum(exp, "rain_consumer_rows_inserted_total"), sum(exp, "rain_consumer_dead_letters_total"),
				len(exp["rain_consumer_lag_records"]), tail(st.consumerLog.String(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return st
}

// scrape reads and parses a process's /metrics.
func scrape(addr string) (exposition, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	return parseExposition(resp.Body)
}

// sum adds the values of a metric's series.
func sum(e exposition, name string) float64 {
	var s float64
	for _, x := range e[name] {
		s += x.value
	}
	return s
}

// TestDashboardMetrics runs the api and the consumer, then checks every
// query of the dashboards and alert rules against what they export (see
// checkExported), and then through a real Prometheus scraping them (see
// checkPrometheus).
func TestDashboardMetrics(t *testing.T) {
	testenv.Need(t, "Redis, PostgreSQL, Kafka and prometheus")
	queries := append(dashboardQueries(t), alertQueries(t)...)
	if len(queries) == 0 {
		t.Fatal("no dashboard or alert queries")
	}
	st := startStack(t)
	api, err := scrape(st.apiAddr)
	if err != nil {
		t.Fatalf("scrape api: %v", err)
	}
	consumer, err := scrape(st.consumerAddr)
	if err != nil {
		t.Fatalf("scrape consumer: %v", err)
	}
	jobs := map[string]exposition{"api": api, "consumer": consumer}
	t.Run("exported", func(t *testing.T) { checkExported(t, queries, jobs) })
	t.Run("prometheus", func(t *testing.T) { checkPrometheus(t, st) })
}

// checkExported: each query's metric names (identifiers rain_*; a histogram
// is queried by its _bucket/_sum/_count series, exactly as exported) are
// exported by the job its job matcher selects (either, without one); each
// selector's label matchers select at least one exported series; and every
// label it groups by exists on one of its metrics.
func checkExported(t *testing.T, queries []query, jobs map[string]exposition) {
	var p problems
	used := map[string]bool{}
	for _, q := range queries {
		expr, unknown := substitute(q.expr, nil)
		if len(unknown) > 0 {
			p.add("%s: unknown variables %v", q.where, unknown)
			continue
		}
		pq, err := parsePromQL(expr)
		if err != nil {
			p.add("%s: %v: %s", q.where, err, q.expr)
			continue
		}
		hasRain := false
		labels := map[string]bool{"job": true, "instance": true}
		for _, sel := range pq.selectors {
			if sel.name == "up" {
				continue // made by Prometheus for each target
			}
			hasRain = true
			used[sel.name] = true
			// Which jobs the selector may match.
			var in []string
			for job := range jobs {
				ok := true
				for _, m := range sel.matchers {
					if m.label == "job" && !m.matches(job) {
						ok = false
					}
				}
				if ok {
					in = append(in, job)
				}
			}
			sort.Strings(in)
			if len(in) == 0 {
				p.add("%s: %s selects a job that is neither api nor consumer", q.where, sel.name)
				continue
			}
			exported, matched := false, false
			for _, job := range in {
				for _, s := range jobs[job][sel.name] {
					exported = true
					for l := range s.labels {
						labels[l] = true
					}
					if matchesAll(s, sel.matchers) {
						matched = true
					}
				}
			}
			switch {
			case !exported:
				hint := ""
				for _, job := range in {
					if len(jobs[job][sel.name+"_bucket"]) > 0 {
						hint = " (a histogram: query its _bucket, _sum or _count series)"
					}
				}
				p.add("%s: %s is not exported by %s%s", q.where, sel.name, strings.Join(in, " or "), hint)
			case !matched:
				p.add("%s: no series of %s (%s) matches %v", q.where, sel.name, strings.Join(in, ", "), sel.matchers)
			}
		}
		if !hasRain && !slices.ContainsFunc(pq.selectors, func(s selector) bool { return s.name == "up" }) {
			p.add("%s: queries none of our metrics: %s", q.where, q.expr)
		}
		for _, l := range pq.grouping {
			if !labels[l] {
				p.add("%s: groups by %q, a label none of its metrics has", q.where, l)
			}
		}
	}
	p.report(t, "dashboard and alert queries vs the metrics of the running api and consumer")
	t.Logf("%d queries use %d metric names; the api exports %d names, the consumer %d",
		len(queries), len(used), len(jobs["api"]), len(jobs["consumer"]))
}

// matchesAll: the series satisfies every matcher but those on job and
// instance (target labels Prometheus adds). A missing label is "".
func matchesAll(s series, ms []matcher) bool {
	for _, m := range ms {
		if m.label == "job" || m.label == "instance" {
			continue
		}
		if !m.matches(s.labels[m.label]) {
			return false
		}
	}
	return true
}
