// Package producer is the api's side of the pipeline: the ring buffer the
// open handler pushes claims into and the Kafka producer that drains it.
package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/ratelog"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	producedTotal    = metrics.NewCounter(`rain_producer_records_total{result="ok"}`)
	produceErrors    = metrics.NewCounter(`rain_producer_records_total{result="error"}`)
	produceRetries   = metrics.NewCounter(`rain_producer_retries_total`)
	produceAbandoned = metrics.NewCounter(`rain_producer_abandoned_total`)
	produceLatency   = metrics.NewPrometheusHistogram(`rain_kafka_produce_duration_seconds`)

	// producerUnhealthy is how long failures or a stall may last before
	// Healthy (and so /readyz) says no.
	producerUnhealthy = 10 * time.Second
)

// Config tunes the ring and the Kafka producer.
type Config struct {
	// RingSize is the ring's capacity: claims taken and not yet handed to
	// the Kafka client. When it is full opens get 503 before claiming.
	RingSize int
	// Linger is how long a partition's batch waits for more records: larger
	// batches, fewer produce requests. Measured with make bench against
	// Apache Kafka on the same 2 cores: 5ms cost the broker 0.20 cores at
	// 31k claims/s, 50ms 0.07, and opens ran 16% faster; the price is ~25ms
	// more claim → row lag.
	Linger time.Duration
	// MaxBuffered bounds the records buffered in the client and not yet
	// acknowledged. When it is reached the drainer waits, the ring fills,
	// and opens get 503.
	MaxBuffered int
	// RetryBackoff is the wait before a record whose produce failed is
	// produced again. franz-go already retries retriable errors forever;
	// this covers the rest.
	RetryBackoff time.Duration
}

// Bind declares the producer's variables.
func (c *Config) Bind(s *config.Set) {
	s.Int(&c.RingSize, "RING_SIZE", 65_536, 1, 1<<24, "ring buffer slots; when full, opens get 503 before claiming")
	s.Duration(&c.Linger, "PRODUCER_LINGER", 50*time.Millisecond, 0, 10*time.Second,
		"how long a Kafka batch waits for more records (fewer, larger produce requests: the broker's CPU at 31k claims/s fell from 0.20 to 0.07 cores against 5 ms)")
	s.Int(&c.MaxBuffered, "PRODUCER_MAX_BUFFERED", 100_000, 1, 10_000_000,
		"records buffered in the producer, unacknowledged; when reached the ring fills")
	c.RetryBackoff = 250 * time.Millisecond
}

// Producer drains a Ring into Kafka with an asynchronous, idempotent,
// acks=all franz-go client. A record whose produce fails is produced again
// after a backoff until the producer is closed; one still unacknowledged
// then is logged and counted (rain_producer_abandoned_total): its claim is
// in Redis and the reconciler writes it to PostgreSQL.
type Producer struct {
	cfg   Config
	topic string
	log   *slog.Logger
	fail  *slog.Logger // log, at most one line per message every ratelog.Every
	cl    *kgo.Client
	ring  *Ring

	// ctx is given to every Produce; it is cancelled only when Close runs
	// out of time, which fails whatever is still buffered.
	ctx     context.Context
	cancel  context.CancelFunc
	stop    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup // retries waiting to be produced again
	waiting atomic.Int64   // how many, for Close

	abandoned atomic.Int64 // records failed at shutdown, for Close's summary
	lastOK    atomic.Int64 // unix ns of the last acknowledged record
	lastErr   atomic.Int64 // unix ns of the last failed produce
	pool      sync.Pool    // *kgo.Record with its buffer
}

// New connects a producer of claim events to kafka, with the ring it
// drains (Run). log receives failures.
func New(cfg Config, kafka pipeline.KafkaConfig, log *slog.Logger) (*Producer, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(kafka.Brokers...),
		kgo.DefaultProduceTopic(kafka.Topic),
		kgo.ProducerLinger(cfg.Linger),
		kgo.MaxBufferedRecords(cfg.MaxBuffered),
		kgo.RequiredAcks(kgo.AllISRAcks()), // the default, stated: durability is the point
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()),
		kgo.AllowAutoTopicCreation(),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	p := &Producer{cfg: cfg, topic: kafka.Topic, log: log, fail: ratelog.Logger(log, ratelog.Every), cl: cl, ring: NewRing(cfg.RingSize),
		stop: make(chan struct{}), done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.lastOK.Store(time.Now().UnixNano())
	return p, nil
}

// Client is the underlying franz-go client (for topic admin and tests).
func (p *Producer) Client() *kgo.Client { return p.cl }

// Ring is the ring buffer the producer drains.
func (p *Producer) Ring() *Ring { return p.ring }

// Run drains the ring into Kafka until Close. Call it once, in its own goroutine.
func (p *Producer) Run() {
	defer close(p.done)
	events := p.ring.Events()
	for {
		select {
		case ev := <-events:
			p.ring.Done()
			p.produce(ev)
		case <-p.stop:
			for { // the HTTP server is down: take what is left, then return
				select {
				case ev := <-events:
					p.ring.Done()
					p.produce(ev)
				default:
					return
				}
			}
		}
	}
}

func (p *Producer) produce(ev pipeline.Event) {
	rec, _ := p.pool.Get().(*kgo.Record)
	if rec == nil {
		rec = &kgo.Record{}
	}
	// Key and value share one buffer, recycled when the record is acked;
	// sized once for the longest user id and event (pprof: growing it was
	// a third of the producer's allocations).
	buf := rec.Key[:0]
	if cap(buf) < 2*rain.MaxUserIDLen+128 {
		buf = make([]byte, 0, 2*rain.MaxUserIDLen+128)
	}
	buf = append(buf, ev.UserID...)
	k := len(buf)
	buf = ev.AppendJSON(buf)
	*rec = kgo.Record{Key: buf[:k:k], Value: buf[k:], Topic: p.topic}
	p.cl.Produce(p.ctx, rec, p.promise)
}

// promise runs once per record, when Kafka acknowledged it or the client
// gave up on it.
func (p *Producer) promise(rec *kgo.Record, err error) {
	if err == nil {
		producedTotal.Inc()
		produceLatency.UpdateDuration(rec.Timestamp)
		p.lastOK.Store(time.Now().UnixNano())
		rec.Key = rec.Key[:0:cap(rec.Key)]
		rec.Value = nil
		p.pool.Put(rec)
		return
	}
	produceErrors.Inc()
	p.lastErr.Store(time.Now().UnixNano())
	if p.ctx.Err() != nil || errors.Is(err, kgo.ErrClientClosed) {
		produceAbandoned.Inc()
		p.abandoned.Add(1)
		p.fail.Error("claim event not produced before shutdown; the reconciler will persist it",
			"topic", rec.Topic, "user_id", string(rec.Key), "err", err)
		return
	}
	p.fail.Warn("produce failed; retrying", "user_id", string(rec.Key), "err", err)
	retry := &kgo.Record{Key: rec.Key, Value: rec.Value, Topic: rec.Topic}
	p.wg.Add(1)
	p.waiting.Add(1)
	go func() { // the promise must not block: it runs on the client's goroutine
		defer p.wg.Done()
		select {
		case <-time.After(p.cfg.RetryBackoff):
		case <-p.ctx.Done():
		}
		produceRetries.Inc()
		p.cl.Produce(p.ctx, retry, p.promise)
		p.waiting.Add(-1)
	}()
}

// Healthy reports whether records are reaching Kafka: no produce failed in
// the last 10s, and if records are waiting, one was acknowledged in that time.
func (p *Producer) Healthy() bool {
	now := time.Now().UnixNano()
	if now-p.lastErr.Load() < int64(producerUnhealthy) && p.lastErr.Load() > p.lastOK.Load() {
		return false
	}
	if p.cl.BufferedProduceRecords() > 0 && now-p.lastOK.Load() > int64(producerUnhealthy) {
		return false
	}
	return true
}

// Close drains the ring (stop taking opens first), waits until Kafka has
// acknowledged everything or ctx ends, then closes the client. Records still
// unacknowledged then are abandoned to the reconciler.
func (p *Producer) Close(ctx context.Context) error {
	close(p.stop)
	<-p.done
	err := p.cl.Flush(ctx)
	for err == nil && p.waiting.Load() > 0 { // retries re-produce after their backoff
		time.Sleep(10 * time.Millisecond)
		err = p.cl.Flush(ctx)
	}
	p.cancel()
	p.wg.Wait()
	p.cl.Close()
	if n := p.abandoned.Load(); n > 0 {
		p.log.Error("claim events not produced before shutdown; the reconciler will persist them", "records", n)
	}
	return err
}
