package edge

import (
	"strconv"
	"time"

	"github.com/redpacket/rain"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// Metrics of the api, registered once per process (names follow Prometheus
// conventions; histograms use "le" buckets so histogram_quantile works).
var (
	claimsByOutcome [len(outcomeStatus)]*metrics.Counter
	claimsBusy      = metrics.NewCounter(`rain_claims_total{result="BUSY"}`)
	claimsError     = metrics.NewCounter(`rain_claims_total{result="REDIS_ERROR"}`)
	// Answers given from memory without Redis (counted in rain_claims_total too).
	claimsMemo        = metrics.NewCounter(`rain_claims_from_memory_total{result="ALREADY_OPENED"}`)
	claimsSoldOutFlag = metrics.NewCounter(`rain_claims_from_memory_total{result="SOLD_OUT"}`)
	redisClaim        = metrics.NewPrometheusHistogram(`rain_redis_duration_seconds{op="claim"}`)
	redisLoad         = metrics.NewPrometheusHistogram(`rain_redis_duration_seconds{op="load"}`)
	pgCreate          = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="create_campaign"}`)
	pgRead            = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="read_campaign"}`)
	repairs           = metrics.NewCounter(`rain_campaign_loads_total{reason="repair"}`)
)

func init() {
	for o := range claimsByOutcome {
		claimsByOutcome[o] = metrics.NewCounter(`rain_claims_total{result="` + rain.Outcome(o).String() + `"}`)
	}
}

// routeMetrics counts a route's requests by status and times them, with the
// counters made ahead of time so the hot path builds no metric names.
type routeMetrics struct {
	route    string
	method   string
	byStatus map[int]*metrics.Counter // read-only after newRouteMetrics
	latency  *metrics.PrometheusHistogram
}

var knownStatuses = []int{200, 201, 400, 401, 404, 405, 408, 409, 410, 413, 417, 429, 431, 500, 503}

func newRouteMetrics(method, route string) *routeMetrics {
	m := &routeMetrics{route: route, method: method, byStatus: make(map[int]*metrics.Counter)}
	labels := `{route="` + route + `",method="` + method + `"`
	for _, s := range knownStatuses {
		m.byStatus[s] = metrics.GetOrCreateCounter(`rain_http_requests_total` + labels + `,status="` + strconv.Itoa(s) + `"}`)
	}
	m.latency = metrics.GetOrCreatePrometheusHistogram(`rain_http_request_duration_seconds` + labels + `}`)
	return m
}

func (m *routeMetrics) observe(status int, start time.Time) {
	c, ok := m.byStatus[status]
	if !ok {
		c = metrics.GetOrCreateCounter(`rain_http_requests_total{route="` + m.route + `",method="` + m.method + `",status="` + strconv.Itoa(status) + `"}`)
	}
	c.Inc()
	m.latency.UpdateDuration(start)
}

// instrument wraps a handler with its route's request metrics.
func instrument(method, route string, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	m := newRouteMetrics(method, route)
	return func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		h(ctx)
		m.observe(ctx.Response.StatusCode(), start)
	}
}
