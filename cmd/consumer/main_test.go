package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redpacket/rain"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/app/consumerproc"
	"github.com/redpacket/rain/internal/archive"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/consumer"
	"github.com/redpacket/rain/pipeline/reconcile"
	"github.com/twmb/franz-go/pkg/kgo"
)

// runMainEnv makes the re-executed test binary run main() (TestProcess).
const runMainEnv = "RAIN_TEST_RUN_CONSUMER_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) != "" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func bind(env map[string]string) (consumerproc.MainConfig, *config.Set) {
	var c consumerproc.MainConfig
	s := config.New(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	c.Bind(s)
	return c, s
}

func TestLoadConfig(t *testing.T) {
	c, s := bind(nil)
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	cc := c.Consumer
	if c.Kafka.Topic != "claim_events" || c.Kafka.DLQTopic != "claim_events.dlq" || cc.Group != "consumer" ||
		cc.BatchSize != 5000 || cc.BatchWait != 50*time.Millisecond || c.MetricsAddr != ":9091" ||
		c.Reconcile.Interval != 30*time.Second || c.Reconcile.Lookback != 24*time.Hour || c.Reconcile.Grace != 30*time.Second ||
		c.Reconcile.Chunk != 5000 || cc.StopTimeout != 15*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	c, s = bind(map[string]string{"KAFKA_TOPIC": "t", "RECONCILE_INTERVAL": "0", "RECONCILE_GRACE": "0", "BATCH_WAIT": "0"})
	if s.Err() != nil || c.Kafka.DLQTopic != "t.dlq" || c.Reconcile.Interval != 0 || c.Reconcile.Grace != 0 || c.Consumer.BatchWait != 0 {
		t.Fatalf("KAFKA_TOPIC=t, zeros: %+v %v", c, s.Err())
	}

	_, s = bind(map[string]string{
		"BATCH_SIZE": "0", "BATCH_WAIT": "soon", "METRICS_ADDR": "nowhere", "KAFKA_TOPIC": "x",
		"KAFKA_DLQ_TOPIC": "x", "RECONCILE_LOOKBACK": "1s",
	})
	err := s.Err()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, name := range []string{"BATCH_SIZE", "BATCH_WAIT", "METRICS_ADDR", "KAFKA_DLQ_TOPIC", "RECONCILE_LOOKBACK"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

// TestDocListsEveryVariable: docs/configuration.md's consumer table is exactly what
// `consumer -help` lists (regenerate it with the expected text below).
func TestDocListsEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, s := bind(nil)
	if err := s.CheckDoc(string(doc), "### consumer (`cmd/consumer`)"); err != nil {
		t.Error(err)
	}
}

func TestHandler(t *testing.T) {
	var health error
	srv := httptest.NewServer(consumer.Handler(func() error { return health }))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != `{"status":"OK"}` {
		t.Fatalf("healthy: %d %s", code, body)
	}
	health = errors.New("postgres writes failing since 2025-01-01T00:00:00Z: connection refused")
	code, body := get("/healthz")
	var v struct{ Status, Error string }
	if code != 503 || json.Unmarshal([]byte(body), &v) != nil || v.Status != "DEGRADED" || !strings.Contains(v.Error, "postgres") {
		t.Fatalf("degraded: %d %s", code, body)
	}
	code, body = get("/metrics")
	if code != 200 || !strings.Contains(body, "rain_consumer_rows_inserted_total") {
		t.Fatalf("metrics: %d %.300s", code, body)
	}
	if strings.Contains(body, "rain_producer_") || strings.Contains(body, "rain_http_") {
		t.Fatalf("the consumer exports the api's metrics: %.300s", body)
	}
}

// campaign makes a live campaign in PostgreSQL and Redis with n claims
// made straight in Redis (no events), and removes it when the test ends.
func campaign(t *testing.T, db *pgxpool.Pool, n int) (int64, *lua.Keys) {
	t.Helper()
	ctx := context.Background()
	rdb := testenv.Redis(t)
	now := time.Now()
	var id int64
	if err := db.QueryRow(ctx, `INSERT INTO campaign (name, start_time, end_time) VALUES ('cmd test', $1, $2) RETURNING id`,
		now.Add(-time.Hour), now.Add(time.Hour)).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO campaign_inventory (campaign_id, amount, total_count) VALUES ($1, 5, 1000)`, id); err != nil {
		t.Fatal(err)
	}
	k := testenv.Keys().Of(id)
	del := func() { rdb.Do(ctx, rdb.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build()) }
	del()
	t.Cleanup(func() {
		del()
		testenv.DeleteCampaign(db, id)
	})
	if _, err := lua.Load(ctx, rdb, k, now.Add(-time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli(), map[int64]int64{5: 1000}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if r, err := lua.Claim(ctx, rdb, k, fmt.Sprintf("u%d", i), rand.Uint64()); err != nil || r.Outcome != rain.OK {
			t.Fatalf("claim: %+v %v", r, err)
		}
	}
	return id, k
}

func TestReconcileCommand(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	id, k := campaign(t, db, 12)
	cfg, _ := bind(map[string]string{"POSTGRES_DSN": testenv.PostgresDSN(), "REDIS_ADDR": testenv.RedisAddr(),
		"REDIS_KEY_PREFIX": testenv.KeyPrefix})
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	run := func(args ...string) (int, reconcile.Report) {
		var out bytes.Buffer
		code := app.ExitCode(reconcileNow(context.Background(), cfg, args, &out, log))
		var rep reconcile.Report
		if out.Len() > 0 {
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("report %q: %v", out.String(), err)
			}
		}
		return code, rep
	}
	campaignArg := strconv.FormatInt(id, 10)
	if code, rep := run("-campaign", campaignArg); code != 0 || rep.Repaired != 12 || rep.Scanned != 12 {
		t.Fatalf("reconcile: exit %d, %+v; want 0 and 12 repaired", code, rep)
	}
	if code, rep := run("-campaign", campaignArg); code != 0 || rep.Repaired != 0 {
		t.Fatalf("reconcile again: exit %d, %+v; want 0 and nothing repaired", code, rep)
	}
	var n int
	if err := db.QueryRow(context.Background(), `SELECT opened_count FROM campaign_inventory WHERE campaign_id = $1`, id).Scan(&n); err != nil || n != 12 {
		t.Fatalf("opened_count %d %v, want 12", n, err)
	}

	if code, _ := run("-campaign", "x"); code != 2 {
		t.Fatalf("bad flag: exit %d, want 2", code)
	}
	// A claim that cannot be written: it finishes, and says so.
	rdb := testenv.Redis(t)
	rdb.Do(context.Background(), rdb.B().Hset().Key(k.Claims()).FieldValue().FieldValue("odd", lua.ClaimValue(7, time.Now().UnixMilli())).Build())
	if code, rep := run("-campaign", campaignArg); code != 1 || rep.Rejected != 1 {
		t.Fatalf("with a bad claim: exit %d, %+v; want 1", code, rep)
	}
	// PostgreSQL unreachable: it could not finish.
	cfg.Boot.PostgresDSN = "postgres://rain:rain@127.0.0.1:1/rain_test?sslmode=disable&connect_timeout=2"
	if code, _ := run("-campaign", campaignArg); code != 1 {
		t.Fatalf("postgres unreachable: exit %d, want 1", code)
	}
}

func TestArchiveCommand(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	now := time.Now()
	old := testenv.NewCampaign(t, db, now.Add(-72*time.Hour), now.Add(-48*time.Hour), map[int64]int64{5: 10})
	recent := testenv.NewCampaign(t, db, now.Add(-3*time.Hour), now.Add(-time.Hour), map[int64]int64{5: 10})
	var c postgres.Claims
	for _, u := range []string{"a", "b", "c"} {
		c.Append(old, u, 5, now.Add(-50*time.Hour))
	}
	if err := (&postgres.Store{DB: db}).CopyClaims(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	cfg, _ := bind(map[string]string{"POSTGRES_DSN": testenv.PostgresDSN()})
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := t.TempDir()
	run := func(args ...string) (int, string) {
		var out bytes.Buffer
		return app.ExitCode(archiveNow(context.Background(), cfg, args, &out, log)), out.String()
	}
	for _, args := range [][]string{
		{"-campaign", "1"}, // no -dir
		{"-dir", dir},      // neither -campaign nor -ended-before
		{"-dir", dir, "-campaign", "1", "-ended-before", "48h"}, // both
		{"-dir", dir, "-ended-before", "1h"},                    // within RECONCILE_LOOKBACK (24h)
	} {
		if code, _ := run(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	// Ended an hour ago: the reconciler may still write its claims.
	if code, _ := run("-dir", dir, "-campaign", strconv.FormatInt(recent, 10)); code != 1 {
		t.Fatalf("recent campaign: exit %d, want 1", code)
	}
	code, out := run("-dir", dir, "-campaign", strconv.FormatInt(old, 10), "-drop")
	var res archive.Result
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Campaign != old || res.Claims != 3 || !res.Dropped {
		t.Fatalf("archive: exit %d, %q", code, out)
	}
	if _, err := os.Stat(res.File); err != nil || filepath.Dir(res.File) != dir {
		t.Fatalf("export %s: %v", res.File, err)
	}
	cfg.Boot.PostgresDSN = "postgres://rain:rain@127.0.0.1:1/rain_test?sslmode=disable&connect_timeout=2"
	if code, _ := run("-dir", dir, "-campaign", strconv.FormatInt(old, 10)); code != 1 {
		t.Fatalf("postgres unreachable: exit %d, want 1", code)
	}
}

// TestProcess runs the consumer process (this binary re-executed into
// main) against the local services: it writes events, serves /healthz and
// /metrics, and stops cleanly on SIGTERM.
func TestProcess(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	topic := testenv.Topic(t, 2)
	id, _ := campaign(t, db, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(os.Args[0]) // no arguments: main() reads them
	cmd.Env = append(os.Environ(), runMainEnv+"=1",
		"POSTGRES_DSN="+testenv.PostgresDSN(), "REDIS_ADDR="+testenv.RedisAddr(), "REDIS_KEY_PREFIX="+testenv.KeyPrefix,
		"KAFKA_BROKERS="+strings.Join(testenv.Brokers(), ","), "KAFKA_TOPIC="+topic,
		"KAFKA_GROUP=g_"+topic, "METRICS_ADDR="+addr,
		"RECONCILE_INTERVAL=0") // the shared test database holds other tests' campaigns
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			<-done
			t.Logf("consumer logs:\n%s", logs.String())
		}
	}()

	var recs []*kgo.Record
	at := time.Now().UnixMilli()
	for i := range 50 {
		ev := pipeline.Event{CampaignID: id, UserID: fmt.Sprintf("p%d", i), Amount: 5, ClaimedAt: at}
		recs = append(recs, &kgo.Record{Topic: topic, Value: ev.AppendJSON(nil)})
	}
	if err := testenv.Kafka(t).ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		_ = db.QueryRow(context.Background(), `SELECT count(*) FROM claim_log WHERE campaign_id = $1`, id).Scan(&n)
		if n == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 50 claims persisted by the process", n)
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the process exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for path, want := range map[string]string{"/healthz": `"status":"OK"`, "/metrics": "rain_consumer_rows_inserted_total"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("GET %s: %d %.300s", path, resp.StatusCode, b)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"consumer stopped"`) || !strings.Contains(logs.String(), `"msg":"batch committed"`) {
		t.Fatalf("logs lack the commit or the shutdown:\n%s", logs.String())
	}
}
