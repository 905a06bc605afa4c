// Package consumer is the consumer group of the claim events: it polls a
// batch, writes it into PostgreSQL (pipeline/writer) in one transaction,
// commits the Kafka offsets only after PostgreSQL committed, dead-letters
// what cannot be decoded or written (dlq.go) and reports its lag; http.go
// serves its /metrics and /healthz.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/ratelog"
	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/pipeline"
	"github.com/redpacket/rain/pipeline/writer"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	consumerRecords    = metrics.NewCounter(`rain_consumer_records_total`)
	consumerBatchSize  = metrics.NewPrometheusHistogramExt(`rain_consumer_batch_size`, metrics.ExponentialBuckets(1, 2, 15))
	consumerBatch      = metrics.NewPrometheusHistogram(`rain_consumer_batch_duration_seconds`)
	consumerDecode     = metrics.NewPrometheusHistogram(`rain_consumer_step_duration_seconds{step="decode"}`)
	consumerWrite      = metrics.NewPrometheusHistogram(`rain_consumer_step_duration_seconds{step="write"}`)
	consumerDLQ        = metrics.NewPrometheusHistogram(`rain_consumer_step_duration_seconds{step="dead_letter"}`)
	consumerCommit     = metrics.NewPrometheusHistogram(`rain_consumer_step_duration_seconds{step="commit"}`)
	consumerInserted   = metrics.NewCounter(`rain_consumer_rows_inserted_total`)
	consumerDuplicates = metrics.NewCounter(`rain_consumer_duplicates_skipped_total`)
	writeErrors        = metrics.NewCounter(`rain_consumer_write_errors_total`)
	commitErrors       = metrics.NewCounter(`rain_consumer_commit_errors_total`)
	fetchErrors        = metrics.NewCounter(`rain_consumer_fetch_errors_total`)
	dlqErrors          = metrics.NewCounter(`rain_consumer_dead_letter_produce_errors_total`)
	deadLetters        = map[string]*metrics.Counter{}
)

func init() {
	for _, r := range []string{pipeline.ReasonMalformed, pipeline.ReasonUnsupportedVersion, pipeline.ReasonInvalid,
		pipeline.ReasonUnknownCampaign, pipeline.ReasonUnknownAmount, pipeline.ReasonRejected} {
		deadLetters[r] = metrics.NewCounter(`rain_consumer_dead_letters_total{reason="` + r + `"}`)
	}
}

// Config tunes a Consumer.
type Config struct {
	// Group is the consumer group. A group with no committed offsets starts
	// at the oldest record: replaying claims changes nothing, skipping them
	// would lose them.
	Group string
	// BatchSize is the most records written in one transaction.
	BatchSize int
	// BatchWait is how long a batch that is not full may wait for more
	// records after the first arrived.
	BatchWait time.Duration
	// RebalanceTimeout is how long the group waits for this member to
	// finish its batch when a rebalance starts (a batch of 5000 takes well
	// under a second). A member stuck longer (PostgreSQL down) is dropped
	// from the group; its uncommitted records go to another member and are
	// written once.
	RebalanceTimeout time.Duration
	// SessionTimeout is how long the group waits for heartbeats of a member
	// before it hands its partitions to the others (the broker allows
	// 6s-300s by default).
	SessionTimeout time.Duration
	// RetryMax caps the backoff between attempts to write a batch while
	// PostgreSQL fails.
	RetryMax time.Duration
	// StopTimeout is how long the batch in flight when Run's context ends
	// may take to be written and committed. Past it, the batch is left
	// uncommitted and is redelivered.
	StopTimeout time.Duration
}

// Bind declares the consumer group's variables.
func (c *Config) Bind(s *config.Set) {
	s.String(&c.Group, "KAFKA_GROUP", "consumer", "consumer group")
	s.Duration(&c.SessionTimeout, "KAFKA_SESSION_TIMEOUT", 15*time.Second, time.Second, 30*time.Minute,
		"a replica silent this long loses its partitions")
	s.Duration(&c.RebalanceTimeout, "KAFKA_REBALANCE_TIMEOUT", 60*time.Second, time.Second, 30*time.Minute,
		"how long a rebalance waits for the batch in flight")
	s.Int(&c.BatchSize, "BATCH_SIZE", 5000, 1, 100_000, "most records per PostgreSQL transaction")
	s.Duration(&c.BatchWait, "BATCH_WAIT", 50*time.Millisecond, 0, 10*time.Second,
		"how long a batch that is not full waits for more records")
	s.Duration(&c.RetryMax, "PG_RETRY_MAX", 5*time.Second, 100*time.Millisecond, 5*time.Minute,
		"backoff cap while PostgreSQL writes fail")
}

// Consumer reads claim events from Kafka in a consumer group and writes them
// to PostgreSQL with exactly-once effect. Each batch is:
//
//	poll (up to BatchSize records or BatchWait) → decode → one PostgreSQL
//	transaction (writer.Writer) → dead letters acknowledged → offsets committed →
//	rebalances allowed again
//
// Offsets are committed only after the batch is in PostgreSQL and its dead
// letters are in Kafka, and rebalances are held off while a batch is in
// flight (BlockRebalanceOnPoll), so a batch is committed by the member that
// wrote it. A crash before the commit redelivers the batch, which the
// writer.Writer turns into no-ops.
type Consumer struct {
	cfg    Config
	kafka  pipeline.KafkaConfig
	cl     *kgo.Client
	writer *writer.Writer
	log    *slog.Logger
	fail   *slog.Logger // log, at most one line per message every ratelog.Every

	mu       sync.Mutex
	pgErr    error     // the last write error while writes fail
	pgSince  time.Time // when writes started failing
	kafkaErr error     // the last fetch error
	kafkaAt  time.Time // when
}

// New returns a consumer of kafka's topic writing through a writer.Writer over
// db. It joins the group when Run starts polling.
func New(cfg Config, kafka pipeline.KafkaConfig, db *postgres.Store, log *slog.Logger) (*Consumer, error) {
	c := &Consumer{cfg: cfg, kafka: kafka, writer: writer.New(db), log: log, fail: ratelog.Logger(log, ratelog.Every)}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(kafka.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(kafka.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/5)),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		// The same client produces the dead letters: idempotent, acks=all.
		kgo.ProducerLinger(0),
		kgo.AllowAutoTopicCreation(),
	)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	c.cl = cl
	return c, nil
}

// Client is the underlying franz-go client (for topic admin).
func (c *Consumer) Client() *kgo.Client { return c.cl }

// Run consumes until ctx ends, then finishes the batch in flight (writes
// and commits it, within StopTimeout), leaves the group and closes the
// client. It returns an error only if that last batch could not be
// finished; it stays uncommitted and is redelivered. Call Run once.
func (c *Consumer) Run(ctx context.Context) error {
	// work outlives ctx by StopTimeout, so the batch in flight at shutdown
	// gets its final commit, and a write retrying against a PostgreSQL that
	// is down still gives up.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(c.cfg.StopTimeout, cancelWork) })
	defer stopAfter()

	c.log.Info("consumer started", "topic", c.kafka.Topic, "group", c.cfg.Group, "dlq", c.kafka.DLQTopic,
		"batch_size", c.cfg.BatchSize, "batch_wait", c.cfg.BatchWait.String())
	var err error
	for ctx.Err() == nil {
		fs := c.poll(ctx)
		if fs.IsClientClosed() {
			break
		}
		err = c.handle(work, fs)
		c.cl.AllowRebalance()
		if err != nil {
			err = fmt.Errorf("batch abandoned uncommitted at shutdown (it will be redelivered): %w", err)
			break
		}
		if fs.NumRecords() == 0 && c.Health() != nil {
			_ = sleep(ctx, 500*time.Millisecond) // errors only: do not spin on them
		}
	}
	c.close()
	return err
}

// close leaves the group (bounded, even if Kafka is away) and closes the client.
func (c *Consumer) close() {
	c.cl.AllowRebalance()
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.cl.LeaveGroupContext(lctx); err != nil {
		c.log.Warn("leaving the consumer group", "err", err)
	}
	c.cl.Close()
	consumerLag.forget(c.cfg.Group, nil)
	c.log.Info("consumer stopped", "group", c.cfg.Group)
}

// poll returns up to BatchSize records: it waits for the first, then up to
// BatchWait for more.
func (c *Consumer) poll(ctx context.Context) kgo.Fetches {
	fs := c.cl.PollRecords(ctx, c.cfg.BatchSize)
	n := fs.NumRecords()
	if n == 0 || n >= c.cfg.BatchSize || c.cfg.BatchWait <= 0 {
		return fs
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.BatchWait)
	defer cancel()
	for n < c.cfg.BatchSize && wctx.Err() == nil {
		more := c.cl.PollRecords(wctx, c.cfg.BatchSize-n)
		n += more.NumRecords()
		fs = append(fs, more...)
		if more.IsClientClosed() {
			break
		}
	}
	return fs
}

// handle writes one polled batch and commits its offsets. It returns an
// error only when ctx ended before the batch could be finished.
func (c *Consumer) handle(ctx context.Context, fs kgo.Fetches) error {
	c.fetchErrors(fs)
	recs := fs.Records()
	if len(recs) == 0 {
		return nil
	}
	start := time.Now()
	consumerRecords.Add(len(recs))
	consumerBatchSize.Update(float64(len(recs)))

	evs := make([]pipeline.Event, 0, len(recs))
	src := make([]*kgo.Record, 0, len(recs))
	var dead []deadLetter
	for _, r := range recs {
		ev, err := pipeline.DecodeEvent(r.Value)
		if err != nil {
			dead = append(dead, newDeadLetter(r, decodeReason(err), err))
			continue
		}
		evs = append(evs, ev)
		src = append(src, r)
	}
	consumerDecode.UpdateDuration(start)

	t := time.Now()
	res, err := c.write(ctx, evs)
	if err != nil {
		return err
	}
	consumerWrite.UpdateDuration(t)
	consumerInserted.Add(res.Inserted)
	consumerDuplicates.Add(res.Duplicates)
	for _, r := range res.Rejected {
		ev := evs[r.Index]
		d := newDeadLetter(src[r.Index], r.Reason, r.Err)
		d.id, d.user = ev.CampaignID, ev.UserID
		dead = append(dead, d)
	}

	if len(dead) > 0 {
		t = time.Now()
		if err := c.produceDeadLetters(ctx, dead); err != nil {
			return err
		}
		consumerDLQ.UpdateDuration(t)
		c.logDeadLetters(dead)
	}

	t = time.Now()
	if err := c.cl.CommitRecords(ctx, recs...); err != nil {
		// The batch is in PostgreSQL: whoever gets these records again
		// (this member after a retry, or another after a rebalance)
		// writes nothing new.
		commitErrors.Inc()
		c.fail.Warn("offset commit failed; the batch will be redelivered and change nothing",
			"offsets", nextOffsets(recs), "err", err)
	} else {
		consumerCommit.UpdateDuration(t)
		c.log.Info("batch committed", "topic", c.kafka.Topic, "offsets", nextOffsets(recs), "records", len(recs),
			"inserted", res.Inserted, "duplicates", res.Duplicates, "dead_letters", len(dead),
			"took_ms", time.Since(start).Milliseconds())
	}
	c.trackLag(fs)
	consumerBatch.UpdateDuration(start)
	return nil
}

// write writes evs, retrying with capped backoff while PostgreSQL fails,
// until it succeeds or ctx ends. Nothing is committed meanwhile, and
// Health reports the failure.
func (c *Consumer) write(ctx context.Context, evs []pipeline.Event) (writer.Result, error) {
	bo := retry.BackOff(c.cfg.RetryMax)
	for attempt := 1; ; attempt++ {
		res, err := c.writer.Write(ctx, evs)
		if err == nil {
			c.setPostgres(nil)
			return res, nil
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		writeErrors.Inc()
		c.setPostgres(err)
		wait := bo.NextBackOff()
		c.fail.Error("postgres write failed; retrying the batch (offsets not committed)",
			"err", err, "events", len(evs), "campaign_ids", campaignIDs(evs, 10), "attempt", attempt, "retry_in", wait.String())
		if err := sleep(ctx, wait); err != nil {
			return res, err
		}
	}
}

// logDeadLetters counts the dead letters of a batch and logs the first
// (at most one line every ratelog.Every: the dead-letter topic has them
// all, the metric counts them all).
func (c *Consumer) logDeadLetters(dead []deadLetter) {
	for _, d := range dead {
		deadLetters[d.reason].Inc()
	}
	d := dead[0]
	attrs := []any{"reason", d.reason, "err", d.err, "topic", d.rec.Topic, "partition", d.rec.Partition,
		"offset", d.rec.Offset, "dlq", c.kafka.DLQTopic, "in_batch", len(dead)}
	if d.id != 0 {
		attrs = append(attrs, "campaign_id", d.id, "user_id", d.user)
	}
	c.fail.Warn("records dead-lettered", attrs...)
}

// fetchErrors logs and records the fetch errors of a poll (franz-go retries
// and reconnects by itself; these are for the logs and Health).
func (c *Consumer) fetchErrors(fs kgo.Fetches) {
	var first error
	fs.EachError(func(topic string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
			return
		}
		fetchErrors.Inc()
		if first == nil {
			first = err
		}
		c.fail.Warn("kafka fetch error", "topic", topic, "partition", p, "err", err)
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if first != nil {
		c.kafkaErr, c.kafkaAt = first, time.Now()
	} else if fs.NumRecords() > 0 {
		c.kafkaErr = nil
	}
}

func (c *Consumer) setPostgres(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err == nil:
		if c.pgErr != nil {
			c.log.Info("postgres writes recovered", "failed_for", time.Since(c.pgSince).String())
		}
		c.pgErr = nil
	case c.pgErr == nil:
		c.pgErr, c.pgSince = err, time.Now()
	default:
		c.pgErr = err
	}
}

// kafkaErrorWindow is how long a fetch error keeps Health degraded when no
// record arrives after it.
const kafkaErrorWindow = 30 * time.Second

// Health is nil while the consumer works, or an error saying what fails:
// PostgreSQL writes (the batch is being retried, nothing committed) or
// Kafka fetches in the last 30s. The text before the first ": " is the
// short reason /healthz shows; the cause after it is for the logs.
func (c *Consumer) Health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pgErr != nil {
		return fmt.Errorf("postgres writes failing since %s: %w", c.pgSince.UTC().Format(time.RFC3339), c.pgErr)
	}
	if c.kafkaErr != nil && time.Since(c.kafkaAt) < kafkaErrorWindow {
		return fmt.Errorf("kafka fetch failed at %s: %w", c.kafkaAt.UTC().Format(time.RFC3339), c.kafkaErr)
	}
	return nil
}

func (c *Consumer) assigned(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	c.log.Info("partitions assigned", "group", c.cfg.Group, "partitions", ps)
}

func (c *Consumer) revoked(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	// Nothing to commit: every batch was committed before rebalances were
	// allowed again.
	consumerLag.forget(c.cfg.Group, ps)
	if len(ps) > 0 {
		c.log.Info("partitions revoked", "group", c.cfg.Group, "partitions", ps)
	}
}

func (c *Consumer) lost(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
	consumerLag.forget(c.cfg.Group, ps)
	if len(ps) > 0 {
		c.log.Warn("partitions lost (their uncommitted records go to another member)", "group", c.cfg.Group, "partitions", ps)
	}
}

// trackLag records, per partition of the batch, the records behind the
// partition's high watermark.
func (c *Consumer) trackLag(fs kgo.Fetches) {
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 {
			consumerLag.set(c.cfg.Group, p.Topic, p.Partition, p.HighWatermark-p.Records[n-1].Offset-1)
		}
	})
}

// nextOffsets is, per partition, the offset committed for the batch (the
// next one to read), keyed by partition number.
func nextOffsets(recs []*kgo.Record) map[string]int64 {
	out := make(map[string]int64, 8)
	for _, r := range recs {
		k := strconv.Itoa(int(r.Partition))
		if o, ok := out[k]; !ok || r.Offset+1 > o {
			out[k] = r.Offset + 1
		}
	}
	return out
}

// campaignIDs lists up to max distinct campaign ids of evs, for the logs.
func campaignIDs(evs []pipeline.Event, max int) []int64 {
	var ids []int64
	for _, ev := range evs {
		if !slices.Contains(ids, ev.CampaignID) {
			if ids = append(ids, ev.CampaignID); len(ids) == max {
				break
			}
		}
	}
	return ids
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Lag is the lag this consumer last saw per partition it owns: records
// behind the high watermark after its last batch.
func (c *Consumer) Lag() map[int32]int64 { return consumerLag.lag(c.cfg.Group, c.kafka.Topic) }
