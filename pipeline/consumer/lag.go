package consumer

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// consumerLag is the consumer lag per group and partition, exposed as
//
//	rain_consumer_lag_records{group="consumer",topic="claim_events",partition="3"} 120
//
// franz-go has no lag gauge: after each batch the lag of a partition is its
// high watermark (from the fetch) less the next offset to read. Partitions
// this process no longer owns are dropped, so sum() over replicas is the
// group's lag.
var consumerLag = &lagTracker{m: make(map[lagKey]int64)}

func init() { metrics.RegisterMetricsWriter(consumerLag.write) }

type lagKey struct {
	group, topic string
	partition    int32
}

type lagTracker struct {
	mu sync.Mutex
	m  map[lagKey]int64
}

func (l *lagTracker) set(group, topic string, partition int32, lag int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[lagKey{group, topic, partition}] = max(lag, 0)
}

// forget drops the partitions of group (all of them when ps is nil).
func (l *lagTracker) forget(group string, ps map[string][]int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.m {
		if k.group == group && (ps == nil || slices.Contains(ps[k.topic], k.partition)) {
			delete(l.m, k)
		}
	}
}

// lag returns the lag this process last saw for each partition of group's
// topic, keyed by partition.
func (l *lagTracker) lag(group, topic string) map[int32]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int32]int64)
	for k, v := range l.m {
		if k.group == group && k.topic == topic {
			out[k.partition] = v
		}
	}
	return out
}

func (l *lagTracker) write(w io.Writer) {
	l.mu.Lock()
	keys := make([]lagKey, 0, len(l.m))
	for k := range l.m {
		keys = append(keys, k)
	}
	vals := make(map[lagKey]int64, len(l.m))
	for k, v := range l.m {
		vals[k] = v
	}
	l.mu.Unlock()
	slices.SortFunc(keys, func(a, b lagKey) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	for _, k := range keys {
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`rain_consumer_lag_records{group=%q,topic=%q,partition="%d"}`,
			k.group, k.topic, k.partition), uint64(vals[k]))
	}
}
