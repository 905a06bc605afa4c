package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/producer"
)

// harness is an engine over the real Redis, PostgreSQL and (when a topic
// is given) Kafka, driven without HTTP.
type harness struct {
	t     testing.TB
	eng   *Engine
	ring  *producer.Ring
	redis rueidis.Client
	db    *postgres.Store
	keys  lua.Keyspace
}

type harnessOpt struct {
	ringSize int    // default 1024
	topic    string // "" = no producer: the ring is not drained
	redis    rueidis.Client
	db       *postgres.Store // default: testenv.Store
	keys     *lua.Keyspace   // default: testenv.Keys()
	set      func(*Config)   // changes to the default configuration
}

// testActor is the audit's record of the tests' merchant actions.
var testActor = postgres.Actor{Name: "test", Request: json.RawMessage(`{}`)}

func newHarness(t testing.TB, o harnessOpt) *harness {
	t.Helper()
	if o.ringSize == 0 {
		o.ringSize = 1024
	}
	if o.redis == nil {
		o.redis = testenv.Redis(t)
	}
	if o.db == nil {
		o.db = testenv.Store(t)
	}
	cfg := DefaultConfig()
	if o.set != nil {
		o.set(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ks := testenv.Keys()
	if o.keys != nil {
		ks = *o.keys
	}
	d := Deps{Redis: o.redis, Keys: ks, Store: o.db, Ring: producer.NewRing(o.ringSize), Log: log}
	if o.topic != "" {
		pc := config.Default[producer.Config]()
		pc.RingSize = o.ringSize
		p, err := producer.New(pc, pipeline.KafkaConfig{Brokers: testenv.Brokers(), Topic: o.topic}, log)
		if err != nil {
			t.Fatal(err)
		}
		go p.Run()
		d.Ring = p.Ring()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			p.Close(ctx)
		})
	}
	e := New(cfg, d)
	e.Start()
	t.Cleanup(e.Stop)
	return &harness{t: t, eng: e, ring: d.Ring, redis: o.redis, db: o.db, keys: ks}
}

// campaignOf is a campaign to create: inventory is the create body's JSON
// object of amount to count.
func campaignOf(t testing.TB, start, end time.Time, inventory string, k int) *rain.Campaign {
	t.Helper()
	var inv map[string]int64
	if err := json.Unmarshal([]byte(inventory), &inv); err != nil {
		t.Fatalf("inventory %s: %v", inventory, err)
	}
	c := &rain.Campaign{Name: "test " + t.Name(), StartTime: start.Truncate(time.Millisecond),
		EndTime: end.Truncate(time.Millisecond), Buckets: k}
	for a, n := range inv {
		amount, err := rain.ParseAmount(a)
		if err != nil {
			t.Fatal(err)
		}
		c.Inventory = append(c.Inventory, rain.Stock{Amount: amount, Total: n})
	}
	sort.Slice(c.Inventory, func(i, j int) bool { return c.Inventory[i].Amount > c.Inventory[j].Amount })
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// createK makes a campaign of k buckets through the engine and returns its
// id; its Redis keys are removed when the test ends (PostgreSQL rows stay:
// ids are unique).
func (h *harness) createK(start, end time.Time, inventory string, k int) int64 {
	h.t.Helper()
	c := campaignOf(h.t, start, end, inventory, k)
	if err := h.eng.Create(context.Background(), c, testActor); err != nil {
		h.t.Fatalf("create: %v", err)
	}
	h.t.Cleanup(func() { unlinkCampaign(h, c.ID, k) })
	return c.ID
}

// create makes a campaign of one bucket.
func (h *harness) create(start, end time.Time, inventory string) int64 {
	h.t.Helper()
	return h.createK(start, end, inventory, 1)
}

// live makes a campaign of one bucket open from an hour ago to an hour on.
func (h *harness) live(inventory string) int64 {
	h.t.Helper()
	return h.create(time.Now().Add(-time.Hour), time.Now().Add(time.Hour), inventory)
}

// createBuckets makes a live campaign with k buckets.
func (h *harness) createBuckets(k int, inventory string) int64 {
	h.t.Helper()
	return h.createK(time.Now().Add(-time.Hour), time.Now().Add(time.Hour), inventory, k)
}

func unlinkCampaign(h *harness, id int64, k int) {
	l, err := h.keys.Layout(id, k)
	if err != nil {
		return
	}
	for _, key := range l.AllKeys() {
		h.redis.Do(context.Background(), h.redis.B().Unlink().Key(key).Build())
	}
	k1 := h.keys.Of(id)
	h.redis.Do(context.Background(), h.redis.B().Unlink().Key(k1.Meta(), k1.Stock(), k1.Claims()).Build())
}

// open opens campaign id for user through the engine and returns the
// answer as the API shows it (edge/http.go maps them): the status and the
// body's fields, amounts as JSON numbers.
func (h *harness) open(id int64, user string) (int, map[string]any) {
	return answerOf(h.eng.Open(id, []byte(user)))
}

// answerOf is an open's answer as the API shows it.
func answerOf(res rain.Result, err error) (int, map[string]any) {
	if err != nil {
		status := map[string]int{rain.EBUSY: 503, rain.EINVALID: 400, rain.ENOTFOUND: 404}[rain.ErrorCode(err)]
		if status == 0 {
			status = 500
		}
		return status, map[string]any{"status": rain.ErrorCode(err), "error": rain.ErrorMessage(err)}
	}
	status := map[rain.Outcome]int{rain.NotFound: 404, rain.NotStarted: 400, rain.Ended: 400,
		rain.AlreadyOpened: 409, rain.SoldOut: 410, rain.OK: 200}[res.Outcome]
	if status == 0 {
		panic(fmt.Sprintf("outcome %v answered", res.Outcome))
	}
	m := map[string]any{"status": res.Outcome.String()}
	if res.Outcome == rain.OK || res.Outcome == rain.AlreadyOpened {
		m["amount"] = float64(res.Amount)
	}
	return status, m
}

// claims is the number of claims Redis holds for a campaign of one bucket.
func (h *harness) claims(id int64) int64 {
	h.t.Helper()
	n, err := h.redis.Do(context.Background(), h.redis.B().Hlen().Key(testenv.Keys().Of(id).Claims()).Build()).AsInt64()
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// liveState reads campaign id's state in Redis (as GET /campaign/{id}
// shows it).
func (h *harness) liveState(id int64) Live {
	h.t.Helper()
	c, err := h.eng.Campaign(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	v, err := h.eng.Live(context.Background(), c)
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}
