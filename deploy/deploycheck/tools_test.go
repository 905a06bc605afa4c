package deploycheck

import (
	"strings"
	"testing"
	"time"
)

// TestPrometheusConfig runs promtool on the Prometheus config of the compose
// stack (which also checks the rule files it loads), on the alert rules, and
// the alert rules' unit tests.
func TestPrometheusConfig(t *testing.T) {
	promtool := requireTool(t, "promtool")
	out := run(t, time.Minute, promtool, "check", "config", "deploy/prometheus/prometheus.yml")
	if !strings.Contains(out, "alerts.yml") {
		t.Errorf("promtool check config did not load deploy/prometheus/alerts.yml (rule_files):\n%s", out)
	}
	run(t, time.Minute, promtool, "check", "rules", "deploy/prometheus/alerts.yml")
	run(t, time.Minute, promtool, "test", "rules", "deploy/prometheus/alerts_test.yml")
}

// TestHAProxyConfig checks the load balancer's config with haproxy -c (the
// "api" replicas are resolved at run time, so no DNS is needed here).
func TestHAProxyConfig(t *testing.T) {
	haproxy := requireTool(t, "haproxy")
	run(t, time.Minute, haproxy, "-c", "-f", "deploy/haproxy/haproxy.cfg")
}
