package consumer_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain/internal/app/consumerproc"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/consumer"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestMain turns the test binary into a consumer replica when the crash
// test re-executes it (see childConsumer).
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childConsumer())
	}
	os.Exit(m.Run())
}

// testLogger logs warnings and errors into the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// opts are what the tests vary of a consumer's configuration; the rest is
// the default.
type opts struct {
	brokers        []string
	topic, group   string
	batchSize      int
	retryMax       time.Duration
	sessionTimeout time.Duration
}

func (o opts) config() consumer.Config {
	c := consumerproc.DefaultMainConfig().Consumer
	c.Group = o.group
	if o.batchSize > 0 {
		c.BatchSize = o.batchSize
	}
	if o.retryMax > 0 {
		c.RetryMax = o.retryMax
	}
	if o.sessionTimeout > 0 {
		c.SessionTimeout = o.sessionTimeout
	}
	return c
}

func (o opts) kafka() pipeline.KafkaConfig {
	k := pipeline.KafkaConfig{Brokers: o.brokers, Topic: o.topic, DLQTopic: o.topic + ".dlq", Partitions: 3}
	if k.Brokers == nil {
		k.Brokers = testenv.Brokers()
	}
	return k
}

// startConsumer runs a consumer until the test ends (or stop is called)
// and returns it with a stop function that waits for Run to return.
func startConsumer(t testing.TB, db *pgxpool.Pool, o opts) (*consumer.Consumer, func()) {
	t.Helper()
	c, err := consumer.New(o.config(), o.kafka(), &postgres.Store{DB: db}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func group(t testing.TB) string {
	return fmt.Sprintf("g_%s_%d", t.Name(), time.Now().UnixNano())
}

// waitCommitted waits until group has committed every record of topic.
func waitCommitted(t testing.TB, adm *kadm.Client, g, topic string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() (bool, string) {
		c, e, err := testenv.Committed(adm, g, topic)
		if err != nil {
			return false, err.Error()
		}
		return c == e, fmt.Sprintf("group %s committed %d of %d records", g, c, e)
	})
}

func TestConsumerRedelivery(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	topic := testenv.NewTopic(t, 3)
	adm := kadm.NewClient(testenv.Kafka(t))
	id := testenv.LiveCampaign(t, db, map[int64]int64{1: 1000, 10: 100})
	at := time.Now().Add(-time.Minute).UnixMilli()

	want := map[string]testenv.Row{}
	var values [][]byte
	for i := range 300 {
		user, amount := fmt.Sprintf("user-%03d", i), int64(1)
		if i%7 == 0 {
			amount = 10
		}
		want[user] = testenv.Row{Amount: amount, ClaimedAt: at + int64(i)}
		values = append(values, testenv.EventJSON(id, user, amount, at+int64(i)))
		if i%10 == 0 { // the producer's own retries put some events in twice
			values = append(values, testenv.EventJSON(id, user, amount, at+int64(i)))
		}
	}
	testenv.Produce(t, testenv.Kafka(t), topic, values...)

	g1 := group(t)
	c, stop := startConsumer(t, db, opts{topic: topic, group: g1, batchSize: 64})
	waitCommitted(t, adm, g1, topic, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		lag := c.Lag()
		return fmt.Sprint(lag) == "map[0:0 1:0 2:0]", fmt.Sprintf("lag %v, want 0 on the 3 partitions", lag)
	})
	stop()
	testenv.AssertState(t, db, id, want)

	// A second group reads every record again: nothing changes.
	g2 := group(t) + "_again"
	_, stop = startConsumer(t, db, opts{topic: topic, group: g2})
	waitCommitted(t, adm, g2, topic, 30*time.Second)
	stop()
	testenv.AssertState(t, db, id, want)
}

func TestConsumerDeadLetters(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	topic := testenv.NewTopic(t, 1) // one partition: the order below is the order read
	cl := testenv.Kafka(t)
	adm := kadm.NewClient(cl)
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 10})
	at := time.Now().Add(-time.Minute).UnixMilli()
	unknown := id + 1_000_000_000

	values := [][]byte{
		testenv.EventJSON(id, "good-1", 5, at),
		[]byte(`{"v":1,"campaign_id":`), // cut short
		testenv.EventJSON(id, "good-2", 5, at),
		[]byte(`{"v":2,"campaign_id":1,"user_id":"u","amount":5,"claimed_at":"2025-01-01T00:00:00.000Z"}`),
		testenv.EventJSON(id, "good-3", 5, at),
		testenv.EventJSON(unknown, "lost", 5, at),
		testenv.EventJSON(id, "bad-amount", 7, at),
		[]byte(`{"v":1,"campaign_id":1,"user_id":"has space","amount":5,"claimed_at":"2025-01-01T00:00:00.000Z"}`),
		testenv.EventJSON(id, "good-4", 5, at),
	}
	testenv.Produce(t, cl, topic, values...)
	g := group(t)
	startConsumer(t, db, opts{topic: topic, group: g})
	waitCommitted(t, adm, g, topic, 30*time.Second)
	testenv.AssertState(t, db, id, map[string]testenv.Row{"good-1": {Amount: 5, ClaimedAt: at}, "good-2": {Amount: 5, ClaimedAt: at}, "good-3": {Amount: 5, ClaimedAt: at}, "good-4": {Amount: 5, ClaimedAt: at}})

	// Every dead letter is on the DLQ, acknowledged before the commit.
	type dl struct{ offset, reason string }
	want := map[string]dl{
		string(values[1]): {"1", pipeline.ReasonMalformed},
		string(values[3]): {"3", pipeline.ReasonUnsupportedVersion},
		string(values[5]): {"5", pipeline.ReasonUnknownCampaign},
		string(values[6]): {"6", pipeline.ReasonUnknownAmount},
		string(values[7]): {"7", pipeline.ReasonInvalid},
	}
	dlq := testenv.Kafka(t, kgo.ConsumeTopics(topic+".dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]dl{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) < len(want) && ctx.Err() == nil {
		dlq.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			if h[consumer.HeaderDLQTopic] != topic || h[consumer.HeaderDLQPartition] != "0" || h[consumer.HeaderDLQError] == "" {
				t.Errorf("dead letter %q: headers %v", r.Value, h)
			}
			got[string(r.Value)] = dl{h[consumer.HeaderDLQOffset], h[consumer.HeaderDLQReason]}
		})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dead letters:\n got %v\nwant %v", got, want)
	}
}

// TestConsumerDeadLettersTooLarge: records as large as the broker takes,
// which no longer fit once dead-letter headers are added, are still
// dead-lettered (cut, with their coordinates) and the partition moves on;
// when even the cut does not fit a dead-letter topic of 16 KiB records,
// the coordinates alone go.
func TestConsumerDeadLettersTooLarge(t *testing.T) {
	t.Parallel()
	t.Run("dlq=default", func(t *testing.T) { testDeadLettersTooLarge(t, 0, "cut") })
	t.Run("dlq=16KiB", func(t *testing.T) { testDeadLettersTooLarge(t, 16<<10, "dropped") })
}

func testDeadLettersTooLarge(t *testing.T, dlqMaxBytes int, hugeValue string) {
	t.Parallel()
	db := testenv.Postgres(t)
	topic := testenv.NewTopic(t, 1)
	adm := kadm.NewClient(testenv.Kafka(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	maxBytes := 0
	// A topic just made may answer without its configs for a moment.
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return false, err.Error()
		}
		cfg, err := cfgs.On(topic, nil)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range cfg.Configs {
			if c.Key == "max.message.bytes" && c.Value != nil {
				maxBytes, _ = strconv.Atoi(*c.Value)
			}
		}
		return maxBytes > 0, "no max.message.bytes in the topic's configs"
	})
	if maxBytes < 64<<10 {
		t.Fatalf("topic %s max.message.bytes %d", topic, maxBytes)
	}
	size := maxBytes - 512 // a record batch of one record: about 70 bytes more
	if dlqMaxBytes > 0 {
		v := strconv.Itoa(dlqMaxBytes)
		_, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "max.message.bytes", Value: &v}}, topic+".dlq")
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := testenv.Kafka(t, kgo.ProducerBatchMaxBytes(int32(maxBytes)))

	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 10})
	at := time.Now().Add(-time.Minute).UnixMilli()
	head := fmt.Sprintf(`{"v":1,"campaign_id":%d,"user_id":"huge","amount":5,"claimed_at":"`, id)
	// Random letters, so the dead letter does not compress under the limit.
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	noise := make([]byte, size-len(head)-2)
	for i := range noise {
		noise[i] = letters[rand.IntN(len(letters))]
	}
	huge := head + string(noise) + `"}`
	recs := []*kgo.Record{
		{Value: testenv.EventJSON(id, "good-1", 5, at)},
		{Key: []byte("k1"), Value: []byte(huge)},
		{Key: []byte("k2"), Value: []byte("not json"), Headers: []kgo.RecordHeader{{Key: "big", Value: bytes.Repeat([]byte("h"), size-100)}}},
		{Key: bytes.Repeat([]byte("k"), size-100), Value: []byte(`{"v":3}`)},
		{Value: testenv.EventJSON(id, "good-2", 5, at)},
	}
	for _, r := range recs {
		r.Topic = topic
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce records of %d bytes (max.message.bytes %d): %v", size, maxBytes, err)
	}

	g := group(t)
	startConsumer(t, db, opts{topic: topic, group: g, retryMax: 200 * time.Millisecond})
	waitCommitted(t, adm, g, topic, 30*time.Second)
	testenv.AssertState(t, db, id, map[string]testenv.Row{"good-1": {Amount: 5, ClaimedAt: at}, "good-2": {Amount: 5, ClaimedAt: at}})

	type dl struct{ reason, truncated string }
	want := map[string]dl{
		"1": {pipeline.ReasonInvalid, hugeValue},
		"2": {pipeline.ReasonMalformed, "cut"},
		"3": {pipeline.ReasonUnsupportedVersion, "cut"},
	}
	got := map[string]dl{}
	dlq := testenv.Kafka(t, kgo.ConsumeTopics(topic+".dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	for len(got) < len(want) && ctx.Err() == nil {
		dlq.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, kv := range r.Headers {
				h[kv.Key] = string(kv.Value)
			}
			off := h[consumer.HeaderDLQOffset]
			got[off] = dl{h[consumer.HeaderDLQReason], h[consumer.HeaderDLQTruncated]}
			orig := recs[0]
			if n, err := strconv.Atoi(off); err == nil && n < len(recs) {
				orig = recs[n]
			}
			if h[consumer.HeaderDLQTopic] != topic || h[consumer.HeaderDLQPartition] != "0" || h["big"] != "" ||
				len(h[consumer.HeaderDLQError]) > 1<<10 || h[consumer.HeaderDLQError] == "" ||
				!bytes.HasPrefix(orig.Value, r.Value) || len(r.Value) > 64<<10 || len(r.Key) > 1<<10 {
				t.Errorf("dead letter of offset %s: key %d, value %d bytes, headers %.200v", off, len(r.Key), len(r.Value), h)
			}
		})
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("dead letters:\n got %v\nwant %v", got, want)
	}
}

func TestConsumerPostgresDown(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t) // direct, for the test's own reads
	topic := testenv.NewTopic(t, 3)
	cl := testenv.Kafka(t)
	adm := kadm.NewClient(cl)
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 1000})
	at := time.Now().Add(-time.Minute).UnixMilli()
	batch := func(from, to int) (vals [][]byte, want map[string]testenv.Row) {
		want = map[string]testenv.Row{}
		for i := from; i < to; i++ {
			u := fmt.Sprintf("u%04d", i)
			vals = append(vals, testenv.EventJSON(id, u, 5, at))
			want[u] = testenv.Row{Amount: 5, ClaimedAt: at}
		}
		return vals, want
	}

	proxy := testenv.NewProxy(t, testenv.PostgresHostPort(t))
	g := group(t)
	c, _ := startConsumer(t, testenv.PostgresAt(t, proxy.Addr()), opts{topic: topic, group: g, retryMax: 300 * time.Millisecond})

	first, _ := batch(0, 100)
	testenv.Produce(t, cl, topic, first...)
	waitCommitted(t, adm, g, topic, 30*time.Second)

	proxy.Cut()
	second, _ := batch(100, 250)
	testenv.Produce(t, cl, topic, second...)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		err := c.Health()
		return err != nil, "consumer still healthy with postgres unreachable"
	})
	// While PostgreSQL is down the consumer retries and commits nothing.
	for range 6 {
		if n, end := testenv.MustCommitted(t, adm, g, topic); n != 100 || end != 250 {
			t.Fatalf("committed %d of %d while postgres is down, want 100 of 250", n, end)
		}
		if c.Health() == nil {
			t.Fatal("health OK while postgres is down")
		}
		time.Sleep(250 * time.Millisecond) // spans several retries (backoff cap 300ms)
	}
	if n := testenv.CountClaims(t, db, id); n != 100 {
		t.Fatalf("%d claims persisted while postgres is down, want 100", n)
	}

	proxy.Restore()
	waitCommitted(t, adm, g, topic, 30*time.Second)
	_, want := batch(0, 250)
	testenv.AssertState(t, db, id, want)
	if err := c.Health(); err != nil {
		t.Fatalf("health after recovery: %v", err)
	}
}

// The crash test: the test binary, re-executed with childEnv set, is a
// consumer replica (TestMain runs childConsumer instead of the tests).
const childEnv = "RAIN_TEST_CONSUMER_CHILD"

// childConsumer runs a consumer of $CHILD_TOPIC in $CHILD_GROUP until
// SIGTERM (graceful) or SIGKILL.
func childConsumer() int {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	db, err := pgxpool.New(ctx, testenv.PostgresDSN())
	if err != nil {
		log.Error("child: postgres", "err", err)
		return 1
	}
	defer db.Close()
	o := opts{topic: os.Getenv("CHILD_TOPIC"), group: os.Getenv("CHILD_GROUP"), batchSize: 300,
		sessionTimeout: 6 * time.Second} // the broker's minimum: a killed member is noticed fast
	c, err := consumer.New(o.config(), o.kafka(), &postgres.Store{DB: db}, log)
	if err != nil {
		log.Error("child: consumer", "err", err)
		return 1
	}
	if err := c.Run(ctx); err != nil {
		log.Error("child: run", "err", err)
		return 1
	}
	return 0
}

// child is a replica process; its logs go to the test output.
type child struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan error
}

func startChild(t *testing.T, topic, g string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "CHILD_TOPIC="+topic, "CHILD_GROUP="+g)
	ch := &child{cmd: cmd, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = ch.logs, ch.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { ch.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-ch.done
		if t.Failed() || os.Getenv("DUMP") != "" {
			t.Logf("replica %d logs:\n%s", cmd.Process.Pid, ch.logs.String())
		}
	})
	return ch
}

func TestConsumerReplicaKilled(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	topic := testenv.NewTopic(t, 6)
	cl := testenv.Kafka(t)
	adm := kadm.NewClient(cl)
	id := testenv.LiveCampaign(t, db, map[int64]int64{1: 100_000, 5: 100_000})
	g := group(t)

	a := startChild(t, topic, g)
	b := startChild(t, topic, g)
	// Both replicas in the group, each with partitions.
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		gs, err := adm.DescribeGroups(ctx, g)
		if err != nil {
			return false, err.Error()
		}
		d := gs[g]
		n := 0
		for _, m := range d.Members {
			if a, ok := m.Assigned.AsConsumer(); ok && len(a.Topics) > 0 && len(a.Topics[0].Partitions) > 0 {
				n++
			}
		}
		return d.State == "Stable" && n == 2, fmt.Sprintf("group %s state %q, %d members with partitions", g, d.State, n)
	})

	// Stream events while replica a is killed half-way.
	const total = 12_000
	at := time.Now().Add(-time.Minute).UnixMilli()
	produced := make(chan error, 1)
	go func() {
		for from := 0; from < total; from += 500 {
			var recs []*kgo.Record
			for i := from; i < from+500; i++ {
				recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)),
					Value: testenv.EventJSON(id, fmt.Sprintf("user-%05d", i), int64(1+4*(i%2)), at+int64(i))})
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				produced <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		produced <- nil
	}()
	testenv.Eventually(t, 60*time.Second, func() (bool, string) {
		n := testenv.CountClaims(t, db, id)
		return n >= total/4, fmt.Sprintf("%d claims persisted", n)
	})
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-produced; err != nil {
		t.Fatalf("produce: %v", err)
	}

	waitCommitted(t, adm, g, topic, 90*time.Second)
	got := testenv.ClaimLog(t, db, id)
	if len(got) != total {
		t.Fatalf("%d claims persisted, want %d", len(got), total)
	}
	want := map[int64]int64{1: total / 2, 5: total / 2}
	if o := testenv.OpenedCounts(t, db, id); fmt.Sprint(o) != fmt.Sprint(want) || fmt.Sprint(testenv.Tally(got)) != fmt.Sprint(want) {
		t.Fatalf("opened_count %v, claims per amount %v, want %v", o, testenv.Tally(got), want)
	}
	for i := range total {
		if r, ok := got[fmt.Sprintf("user-%05d", i)]; !ok || r.ClaimedAt != at+int64(i) {
			t.Fatalf("user-%05d: %+v %v", i, r, ok)
		}
	}

	// The survivor stops gracefully on SIGTERM.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("replica b after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("replica b did not stop within 30s of SIGTERM")
	}
	if !bytes.Contains(b.logs.Bytes(), []byte(`"msg":"consumer stopped"`)) {
		t.Fatalf("replica b did not log its shutdown:\n%s", b.logs)
	}
}

// TestConsumerKafkaOutage stops the broker under a running consumer and
// starts it again: the consumer rides it out and carries on. The shared
// local broker cannot be stopped, so this test runs on a broker of its own:
// franz-go's kfake, in-process, persisting to a directory across the
// restart.
func TestConsumerKafkaOutage(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	id := testenv.LiveCampaign(t, db, map[int64]int64{5: 1000})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, topic := t.TempDir(), "outage"
	startBroker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.Ports(port), kfake.DataDir(dir), kfake.ClusterID("outage"),
			kfake.SeedTopics(3, topic, topic+".dlq"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := startBroker()
	brokers := []string{fmt.Sprintf("127.0.0.1:%d", port)}
	at := time.Now().UnixMilli()
	produceUsers := func(from, to int) {
		cl := testenv.Kafka(t, kgo.SeedBrokers(brokers...))
		var vals [][]byte
		for i := from; i < to; i++ {
			vals = append(vals, testenv.EventJSON(id, fmt.Sprintf("k%03d", i), 5, at))
		}
		testenv.Produce(t, cl, topic, vals...)
		cl.Close()
	}

	g := group(t)
	c, _ := startConsumer(t, db, opts{brokers: brokers, topic: topic, group: g})
	produceUsers(0, 100)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		n := testenv.CountClaims(t, db, id)
		return n == 100, fmt.Sprintf("%d of 100 claims persisted", n)
	})

	broker.Close()              // Kafka down
	time.Sleep(3 * time.Second) // the consumer polls, fails to reach it, reconnects in a loop
	broker = startBroker()
	defer broker.Close()
	produceUsers(100, 200)
	adm := kadm.NewClient(testenv.Kafka(t, kgo.SeedBrokers(brokers...)))
	waitCommitted(t, adm, g, topic, 60*time.Second)
	if n := testenv.CountClaims(t, db, id); n != 200 {
		t.Fatalf("%d of 200 claims persisted after the outage", n)
	}
	if err := c.Health(); err != nil {
		t.Fatalf("health after the outage: %v", err)
	}
}
