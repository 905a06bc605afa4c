package consumer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Dead-letter headers. The record keeps the original key, value and headers;
// these are added.
const (
	HeaderDLQReason    = "rain-dlq-reason"    // one of the Reason constants
	HeaderDLQError     = "rain-dlq-error"     // the detail, for a human
	HeaderDLQTopic     = "rain-dlq-topic"     // where the record was read
	HeaderDLQPartition = "rain-dlq-partition" // decimal
	HeaderDLQOffset    = "rain-dlq-offset"    // decimal
	HeaderDLQTruncated = "rain-dlq-truncated" // "true" when the value was cut to fit
)

// dlqMaxValue is what is kept of a value the DLQ topic refuses as too large.
const dlqMaxValue = 64 << 10

// deadLetter is a record that will not be written, and why.
type deadLetter struct {
	rec    *kgo.Record
	reason string
	err    error
	user   string // when the event decoded: for the logs
	id     int64
}

// decodeReason tells apart why pipeline.DecodeEvent refused a value: not JSON at
// all, a version this build does not read, or a bad field.
func decodeReason(value []byte) string {
	var probe struct {
		V json.RawMessage `json:"v"`
	}
	if err := json.NewDecoder(bytes.NewReader(value)).Decode(&probe); err != nil {
		return pipeline.ReasonMalformed
	}
	if probe.V != nil && string(probe.V) != strconv.Itoa(pipeline.EventVersion) {
		return pipeline.ReasonUnsupportedVersion
	}
	return pipeline.ReasonInvalid
}

// dlqRecord is the dead letter of d for topic.
func dlqRecord(topic string, d deadLetter) *kgo.Record {
	r := d.rec
	h := make([]kgo.RecordHeader, 0, len(r.Headers)+5)
	h = append(h, r.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(d.reason)},
		kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(d.err.Error())},
		kgo.RecordHeader{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
	)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: h}
}

// produceDeadLetters writes the dead letters to the DLQ topic and returns
// once Kafka acknowledged every one of them; failed produces are retried
// with backoff until ctx ends. The batch's offsets are committed only after
// this returns nil: a dead letter is never dropped.
func (c *Consumer) produceDeadLetters(ctx context.Context, dead []deadLetter) error {
	recs := make([]*kgo.Record, len(dead))
	for i, d := range dead {
		recs[i] = dlqRecord(c.kafka.DLQTopic, d)
	}
	bo := retry.BackOff(c.cfg.RetryMax)
	for {
		var failed []*kgo.Record
		var firstErr error
		for _, r := range c.cl.ProduceSync(ctx, recs...) {
			if r.Err == nil {
				continue
			}
			if firstErr == nil {
				firstErr = r.Err
			}
			// A fresh record each time: the client owns the fields it set.
			rec := &kgo.Record{Topic: r.Record.Topic, Key: r.Record.Key, Value: r.Record.Value, Headers: r.Record.Headers}
			if errors.Is(r.Err, kerr.MessageTooLarge) && len(rec.Value) > dlqMaxValue {
				// The DLQ topic will never take it whole: keep its start.
				rec.Value = rec.Value[:dlqMaxValue]
				rec.Headers = append(rec.Headers[:len(rec.Headers):len(rec.Headers)],
					kgo.RecordHeader{Key: HeaderDLQTruncated, Value: []byte("true")})
			}
			failed = append(failed, rec)
		}
		if len(failed) == 0 {
			return nil
		}
		dlqErrors.Add(len(failed))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.NextBackOff()
		c.log.Warn("dead letters not acknowledged; retrying", "topic", c.kafka.DLQTopic,
			"records", len(failed), "err", firstErr, "retry_in", wait)
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		recs = failed
	}
}
