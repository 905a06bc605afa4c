package engine

import (
	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
)

// Metrics of the engine, registered once per process (names follow
// Prometheus conventions; histograms use "le" buckets so
// histogram_quantile works).
var (
	claimsByOutcome [rain.Busy + 1]*metrics.Counter
	claimsBusy      = metrics.NewCounter(`rain_claims_total{result="BUSY"}`)
	claimsError     = metrics.NewCounter(`rain_claims_total{result="REDIS_ERROR"}`)
	claimsNotAcked  = metrics.NewCounter(`rain_claims_total{result="NOT_ACKED"}`) // REDIS_ACK=replica: answered 503
	// Answers given from memory without Redis (counted in rain_claims_total too).
	claimsMemo        = metrics.NewCounter(`rain_claims_from_memory_total{result="ALREADY_OPENED"}`)
	claimsSoldOutFlag = metrics.NewCounter(`rain_claims_from_memory_total{result="SOLD_OUT"}`)
	redisClaim        = metrics.NewPrometheusHistogram(`rain_redis_duration_seconds{op="claim"}`)
	redisLoad         = metrics.NewPrometheusHistogram(`rain_redis_duration_seconds{op="load"}`)
	redisMerchant     = metrics.NewPrometheusHistogram(`rain_redis_duration_seconds{op="merchant"}`)
	pgCreate          = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="create_campaign"}`)
	pgRead            = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="read_campaign"}`)
	pgEnd             = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="end_campaign"}`)
	pgStock           = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="add_stock"}`)
	repairs           = metrics.NewCounter(`rain_campaign_loads_total{reason="repair"}`)
	keysReplaced      = metrics.NewCounter(`rain_campaign_keys_replaced_total`) // another row's keys under a campaign's id

	// Campaigns an end cut short (an end of a campaign already over ends
	// nothing), and stock added (each restock once, however often its
	// request is retried), and pending stock the sweep settled.
	merchantActions = map[string]*metrics.Counter{
		postgres.ActionCreate: metrics.NewCounter(`rain_merchant_actions_total{kind="create"}`),
		postgres.ActionEnd:    metrics.NewCounter(`rain_merchant_actions_total{kind="end"}`),
		postgres.ActionStock:  metrics.NewCounter(`rain_merchant_actions_total{kind="stock"}`),
	}
	endedEarly     = metrics.NewCounter(`rain_campaigns_ended_early_total`)
	restocked      = metrics.NewCounter(`rain_campaigns_restocked_total`)
	pendingSettled = metrics.NewCounter(`rain_stock_settled_total`)
)

func init() {
	// EMPTY and BUSY are never answered (they become 503 BUSY): the
	// counters of the six answers only.
	for o := rain.NotFound; o <= rain.OK; o++ {
		claimsByOutcome[o] = metrics.NewCounter(`rain_claims_total{result="` + o.String() + `"}`)
	}
}
