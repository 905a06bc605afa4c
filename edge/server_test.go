package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
	"github.com/redpacket/rain/edge/engine"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/producer"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

const (
	testToken = "test-token"             // the second of the harness's tokens: named token-2
	acmeEntry = "acme:acme-secret-token" // the third: named acme
	acmeToken = "acme-secret-token"
)

// harness is an api server on an in-memory listener over the real Redis,
// PostgreSQL and (when a topic is given) Kafka.
type harness struct {
	t      testing.TB
	srv    *Server
	eng    *engine.Engine
	ring   *producer.Ring
	redis  rueidis.Client
	client *fasthttp.Client
	dial   func() (net.Conn, error) // a raw connection to the server
	url    string                   // with harnessOpt.tcp: the server on 127.0.0.1 (http://host:port)
}

type harnessOpt struct {
	ringSize int    // default 1024
	topic    string // "" = no producer: the ring is not drained
	redis    rueidis.Client
	db       *postgres.Store // default: testenv.Store
	serverDB *postgres.Store // the HTTP side's own, when it must not share the engine's (default: db)
	set      func(*Config)   // changes to the default configuration (AdminTokens are the harness's)
	engine   func(*engine.Config)
	tcp      bool // serve on a loopback TCP port too (for a browser)
}

func newHarness(t testing.TB, o harnessOpt) *harness {
	t.Helper()
	if o.ringSize == 0 {
		o.ringSize = 1024
	}
	if o.redis == nil {
		o.redis = testenv.Redis(t)
	}
	cfg := DefaultConfig()
	cfg.AdminTokens = []string{"other-token", testToken, acmeEntry}
	if o.set != nil {
		o.set(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if o.db == nil {
		o.db = testenv.Store(t)
	}
	ecfg := engine.DefaultConfig()
	if o.engine != nil {
		o.engine(&ecfg)
	}
	ed := engine.Deps{Redis: o.redis, Keys: testenv.Keys(), Store: o.db, Ring: producer.NewRing(o.ringSize), Log: log}
	var producerHealth Health
	if o.topic != "" {
		pc := config.Default[producer.Config]()
		pc.RingSize = o.ringSize
		p, err := producer.New(pc, pipeline.KafkaConfig{Brokers: testenv.Brokers(), Topic: o.topic}, log)
		if err != nil {
			t.Fatal(err)
		}
		go p.Run()
		ed.Ring, producerHealth = p.Ring(), p
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p.Close(ctx)
		})
	}
	eng := engine.New(ecfg, ed)
	eng.Start()
	t.Cleanup(eng.Stop)
	if o.serverDB == nil {
		o.serverDB = o.db
	}
	s := New(cfg, Deps{Engine: eng, DB: o.serverDB, Producer: producerHealth, Log: log})
	s.Start()
	ln := fasthttputil.NewInmemoryListener()
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	h := &harness{t: t, srv: s, eng: eng, ring: ed.Ring, redis: o.redis,
		client: &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, DisablePathNormalizing: true}, dial: ln.Dial}
	if o.tcp {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(tl)
		h.url = "http://" + tl.Addr().String()
	}
	return h
}

// do sends a request and returns the status and the decoded JSON body.
func (h *harness) do(method, path, token, body string) (int, map[string]any) {
	h.t.Helper()
	status, raw := h.doRaw(method, path, token, body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		h.t.Fatalf("%s %s: body %q is not JSON: %v", method, path, raw, err)
	}
	return status, m
}

func (h *harness) doRaw(method, path, token, body string) (int, []byte) {
	h.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://api" + path)
	req.Header.SetMethod(method)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.SetBodyString(body)
	if err := h.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	checkExchange(h.t, fromFast(req, resp)) // against the OpenAPI document (openapi_test.go)
	if ct := string(resp.Header.ContentType()); !strings.HasPrefix(ct, "application/json") && path != "/metrics" {
		h.t.Errorf("%s %s: content type %q", method, path, ct)
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

// create makes a campaign through the API and returns its id.
func (h *harness) create(start, end time.Time, inventory string) int64 {
	h.t.Helper()
	return h.createAs(testToken, start, end, inventory)
}

// createAs makes a campaign with token: the token's merchant's (the
// operator's for an ADMIN_TOKEN entry).
func (h *harness) createAs(token string, start, end time.Time, inventory string) int64 {
	h.t.Helper()
	body := fmt.Sprintf(`{"name":"test %s","start_time":%q,"end_time":%q,"inventory":%s}`,
		h.t.Name(), start.UTC().Format(time.RFC3339Nano), end.UTC().Format(time.RFC3339Nano), inventory)
	status, m := h.do("POST", "/campaign", token, body)
	if status != 201 {
		h.t.Fatalf("create: %d %v", status, m)
	}
	id := int64(m["id"].(float64))
	h.t.Cleanup(func() { // keep Redis clean; PostgreSQL rows stay (ids are unique)
		k := testenv.Keys().Of(id)
		h.redis.Do(context.Background(), h.redis.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())
	})
	return id
}

func (h *harness) live(inventory string) int64 {
	return h.create(time.Now().Add(-time.Hour), time.Now().Add(time.Hour), inventory)
}

func (h *harness) open(id int64, user string) (int, map[string]any) {
	h.t.Helper()
	return h.do("POST", fmt.Sprintf("/campaign/%d/open", id), "", fmt.Sprintf(`{"user_id":%q}`, user))
}

// claims is the number of claims Redis holds for a campaign.
func (h *harness) claims(id int64) int64 {
	h.t.Helper()
	n, err := h.redis.Do(context.Background(), h.redis.B().Hlen().Key(testenv.Keys().Of(id).Claims()).Build()).AsInt64()
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// counter is the value of a counter of this process's metrics (the
// engine's included), by its full name.
func counter(name string) uint64 { return metrics.GetOrCreateCounter(name).Get() }
