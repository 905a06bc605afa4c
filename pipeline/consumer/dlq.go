package consumer

import (
	"context"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Dead-letter headers. The record keeps the original key, value and headers
// when they fit the dead-letter topic; these are added.
const (
	HeaderDLQReason    = "rain-dlq-reason"    // one of the Reason constants
	HeaderDLQError     = "rain-dlq-error"     // the detail, for a human (at most dlqMaxError bytes)
	HeaderDLQTopic     = "rain-dlq-topic"     // where the record was read
	HeaderDLQPartition = "rain-dlq-partition" // decimal
	HeaderDLQOffset    = "rain-dlq-offset"    // decimal
	// HeaderDLQTruncated is set when the record did not fit the dead-letter
	// topic whole: "cut" (the value cut to its first 64 KiB, the key to
	// 1 KiB, the original headers dropped if over 16 KiB together) or
	// "dropped" (key, value and original headers dropped: the coordinates
	// above say where to read the record while the topic retains it).
	HeaderDLQTruncated = "rain-dlq-truncated"
)

const (
	dlqMaxError   = 1 << 10  // bytes of error text in HeaderDLQError
	dlqMaxValue   = 64 << 10 // what "cut" keeps of the value
	dlqMaxKey     = 1 << 10  // what "cut" keeps of the key
	dlqMaxHeaders = 16 << 10 // original headers "cut" keeps, keys and values together
)

var dlqTruncated = map[dlqFit]*metrics.Counter{
	dlqCut:     metrics.NewCounter(`rain_consumer_dead_letters_truncated_total{how="cut"}`),
	dlqDropped: metrics.NewCounter(`rain_consumer_dead_letters_truncated_total{how="dropped"}`),
}

// dlqFit is how much of the original record a dead letter carries.
type dlqFit int

const (
	dlqWhole   dlqFit = iota // key, value and headers as read
	dlqCut                   // cut to the dlqMax sizes
	dlqDropped               // the coordinates and reason only
)

func (f dlqFit) String() string { return [...]string{"whole", "cut", "dropped"}[f] }

// deadLetter is a record that will not be written, and why.
type deadLetter struct {
	rec    *kgo.Record
	reason string
	err    string // the error text, cut to dlqMaxError bytes
	user   string // when the event decoded: for the logs
	id     int64
}

func newDeadLetter(rec *kgo.Record, reason string, err error) deadLetter {
	return deadLetter{rec: rec, reason: reason, err: cutText(err.Error(), dlqMaxError)}
}

// decodeReason is why pipeline.DecodeEvent refused a value.
func decodeReason(err error) string {
	var bad *pipeline.BadEventError
	if errors.As(err, &bad) {
		return bad.Reason
	}
	return pipeline.ReasonMalformed
}

// cutText is s cut to at most n bytes, at a rune boundary, with "…" (3
// bytes, counted) marking a cut.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// dlqRecord is the dead letter of d for topic, carrying as much of the
// original as fit says.
func dlqRecord(topic string, d deadLetter, fit dlqFit) *kgo.Record {
	r := d.rec
	key, value, orig := r.Key, r.Value, r.Headers
	switch fit {
	case dlqCut:
		key, value = key[:min(len(key), dlqMaxKey)], value[:min(len(value), dlqMaxValue)]
		size := 0
		for _, h := range orig {
			size += len(h.Key) + len(h.Value)
		}
		if size > dlqMaxHeaders {
			orig = nil
		}
	case dlqDropped:
		key, value, orig = nil, nil, nil
	}
	h := make([]kgo.RecordHeader, 0, len(orig)+6)
	h = append(h, orig...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(d.reason)},
		kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(d.err)},
		kgo.RecordHeader{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, r.Offset, 10)},
	)
	if fit != dlqWhole {
		h = append(h, kgo.RecordHeader{Key: HeaderDLQTruncated, Value: []byte(fit.String())})
	}
	return &kgo.Record{Topic: topic, Key: key, Value: value, Headers: h}
}

// tooLarge: the dead-letter topic will never take the record as it is.
func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

// produceDeadLetters writes the dead letters to the DLQ topic and returns
// once Kafka acknowledged every one of them; failed produces are retried
// with backoff until ctx ends. The batch's offsets are committed only after
// this returns nil: a dead letter is never dropped. A record the topic
// refuses as too large is sent again with less of the original (cut, then
// only its coordinates), so no record can hold its partition back. The
// broker refuses a whole batch for one record too large, so a record is
// first sent again alone, and made smaller only if it is refused alone.
func (c *Consumer) produceDeadLetters(ctx context.Context, dead []deadLetter) error {
	fit := make([]dlqFit, len(dead))
	alone := make([]bool, len(dead))
	pending := make([]int, len(dead)) // indexes into dead still to be acknowledged
	for i := range pending {
		pending[i] = i
	}
	bo := retry.BackOff(c.cfg.RetryMax)
	for {
		var together, solo []*kgo.Record
		index := make(map[*kgo.Record]int, len(pending))
		for _, j := range pending {
			r := dlqRecord(c.kafka.DLQTopic, dead[j], fit[j])
			index[r] = j
			if alone[j] {
				solo = append(solo, r)
			} else {
				together = append(together, r)
			}
		}
		results := c.cl.ProduceSync(ctx, together...)
		for _, r := range solo {
			results = append(results, c.cl.ProduceSync(ctx, r)...)
		}
		var firstErr error
		pending = pending[:0]
		for _, r := range results {
			if r.Err == nil {
				continue
			}
			j := index[r.Record]
			pending = append(pending, j)
			switch {
			case !tooLarge(r.Err) || fit[j] == dlqDropped:
				if firstErr == nil {
					firstErr = r.Err
				}
			case !alone[j]:
				alone[j] = true
			default:
				fit[j]++
				dlqTruncated[fit[j]].Inc()
				c.fail.Warn("dead letter too large for its topic; sending less of it", "topic", c.kafka.DLQTopic,
					"fit", fit[j].String(), "from_topic", dead[j].rec.Topic, "partition", dead[j].rec.Partition,
					"offset", dead[j].rec.Offset, "err", r.Err)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if firstErr == nil {
			continue // only records sent again alone or smaller: at once
		}
		dlqErrors.Add(len(pending))
		wait := bo.NextBackOff()
		c.fail.Warn("dead letters not acknowledged; retrying", "topic", c.kafka.DLQTopic,
			"records", len(pending), "err", firstErr, "retry_in", wait.String())
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}
