package deploycheck

import (
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// series is one sample of a Prometheus text exposition.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// exposition is what one process exports: its series by name, as
// Prometheus stores them (a histogram as its _bucket, _sum and _count
// series, a summary as its quantiles, _sum and _count).
type exposition map[string][]series

// parseExposition reads the Prometheus text format (expfmt's parser).
func parseExposition(in io.Reader) (exposition, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(in)
	if err != nil {
		return nil, err
	}
	out := exposition{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(name string, v float64, extra ...string) {
				ls := labels
				if len(extra) == 2 {
					ls = map[string]string{extra[0]: extra[1]}
					for k, v := range labels {
						ls[k] = v
					}
				}
				out[name] = append(out[name], series{name: name, labels: ls, value: v})
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound()))
				}
				add(name+"_sum", h.GetSampleSum())
				add(name+"_count", float64(h.GetSampleCount()))
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				for _, q := range sm.GetQuantile() {
					add(name, q.GetValue(), "quantile", formatFloat(q.GetQuantile()))
				}
				add(name+"_sum", sm.GetSampleSum())
				add(name+"_count", float64(sm.GetSampleCount()))
			default:
				add(name, m.GetUntyped().GetValue())
			}
		}
	}
	return out, nil
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return fmt.Sprint(f)
}

func TestParseExposition(t *testing.T) {
	text := `# HELP rain_claims_total Claims.
# TYPE rain_claims_total counter
rain_claims_total{result="OK"} 2
rain_claims_total{result="SOLD_OUT"} 1
# TYPE rain_ring_used gauge
rain_ring_used 7
rain_open_seconds_bucket{vmrange="1.000e-03...1.136e-03"} 5
rain_open_seconds_sum 0.25
rain_open_seconds_count 5
# TYPE rain_batch_seconds histogram
rain_batch_seconds_bucket{le="0.1"} 3
rain_batch_seconds_bucket{le="+Inf"} 4
rain_batch_seconds_sum 1.5
rain_batch_seconds_count 4
`
	e, err := parseExposition(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(e, "rain_claims_total"); got != 3 {
		t.Errorf("rain_claims_total sums to %v, want 3", got)
	}
	if s := e["rain_claims_total"]; len(s) != 2 || (s[0].labels["result"] != "OK" && s[1].labels["result"] != "OK") {
		t.Errorf("rain_claims_total series %v", s)
	}
	for name, want := range map[string]float64{
		"rain_ring_used": 7, "rain_open_seconds_bucket": 5, "rain_open_seconds_sum": 0.25, "rain_open_seconds_count": 5,
		"rain_batch_seconds_bucket": 7, "rain_batch_seconds_sum": 1.5, "rain_batch_seconds_count": 4,
	} {
		if got := sum(e, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if len(e["rain_batch_seconds"]) != 0 {
		t.Error("a histogram is exported as its _bucket/_sum/_count series, not under its own name")
	}
	if b := e["rain_open_seconds_bucket"]; len(b) != 1 || b[0].labels["vmrange"] != "1.000e-03...1.136e-03" {
		t.Errorf("vmrange bucket %v", b)
	}
	if _, err := parseExposition(strings.NewReader("rain_x{a=\"b\" 1\n")); err == nil {
		t.Error("a broken line: want an error")
	}
}
