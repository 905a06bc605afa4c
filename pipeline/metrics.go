package pipeline

import (
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

// The api links the producer and the consumer binary the consumer side of
// this package; each side's metrics live in a set of their own, registered
// for /metrics only when that side is built, so neither process exports the
// other's series as zeros.
var (
	producerMetrics = metrics.NewSet()
	consumerMetrics = metrics.NewSet()

	registerProducer = sync.OnceFunc(func() { metrics.RegisterSet(producerMetrics) })
	registerConsumer = sync.OnceFunc(func() { metrics.RegisterSet(consumerMetrics) })
)
