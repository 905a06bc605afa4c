package edge

import (
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// The HTTP side's metrics: requests and latency per route, method and
// status (the engine keeps the claims' own). Names follow Prometheus
// conventions; histograms use "le" buckets so histogram_quantile works.

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
