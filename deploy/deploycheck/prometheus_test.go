package deploycheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/stack"
	"go.yaml.in/yaml/v3"
)

// checkPrometheus runs a real Prometheus with deploy/prometheus/prometheus.yml
// and alerts.yml, the api and consumer jobs pointed at the running processes
// instead of compose's DNS names, and checks that both targets are up, that
// every dashboard query evaluates without error, that every panel gets data
// from at least one of its queries, and that every alert rule evaluates.
func checkPrometheus(t *testing.T, st *running) {
	bin := requireTool(t, "prometheus")
	dir := t.TempDir()

	var cfg map[string]any
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus/prometheus.yml"), &cfg); err != nil {
		t.Fatal(err)
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		global = map[string]any{}
		cfg["global"] = global
	}
	global["scrape_interval"], global["scrape_timeout"], global["evaluation_interval"] = "1s", "1s", "1s"
	var rules []string
	rf, _ := cfg["rule_files"].([]any)
	for _, r := range rf {
		rules = append(rules, filepath.Join(path("deploy/prometheus"), fmt.Sprint(r)))
	}
	cfg["rule_files"] = rules
	targets := map[string]string{"api": st.apiAddr, "consumer": st.consumerAddr}
	var scrapes []any
	sc, _ := cfg["scrape_configs"].([]any)
	for _, s := range sc {
		m, _ := s.(map[string]any)
		addr, ok := targets[fmt.Sprint(m["job_name"])]
		if !ok {
			continue // haproxy, prometheus itself: not running here
		}
		delete(m, "dns_sd_configs")
		m["static_configs"] = []any{map[string]any{"targets": []string{addr}}}
		scrapes = append(scrapes, m)
	}
	if len(scrapes) != 2 {
		t.Fatalf("prometheus.yml: want the jobs api and consumer, found %d of them", len(scrapes))
	}
	cfg["scrape_configs"] = scrapes
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, out, 0o644); err != nil {
		t.Fatal(err)
	}

	listen := freeAddr(t)
	log := &syncBuffer{}
	api := &promAPI{base: "http://" + listen}
	prom := &stack.Proc{Name: "prometheus", Path: bin, Output: log, Ready: stack.HTTPReady(api.base + "/-/ready"),
		Args: []string{"--config.file=" + cfgFile, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + listen, "--log.level=warn"}}
	startProc(t, prom, 15*time.Second)
	if err := prom.WaitReady(context.Background(), 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, tail(log.String(), 4000))
	}

	// Poll until every target is up, every panel has data and every rule
	// has been evaluated; then report whatever is still wrong.
	queries := dashboardQueries(t)
	deadline := time.Now().Add(45 * time.Second)
	for {
		var p problems
		var targets struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := api.get("/api/v1/targets", nil, &targets); err != nil {
			p.add("targets: %v", err)
		}
		up := map[string]bool{}
		for _, tg := range targets.ActiveTargets {
			if tg.Health == "up" {
				up[tg.Labels["job"]] = true
			} else if tg.LastError != "" {
				p.add("target %s %s: %s %s", tg.Labels["job"], tg.Labels["instance"], tg.Health, tg.LastError)
			}
		}
		for job := range map[string]bool{"api": true, "consumer": true} {
			if !up[job] {
				p.add("target %s is not up", job)
			}
		}

		panelData := map[string]bool{}
		var panels []string
		for _, q := range queries {
			if _, seen := panelData[q.panel]; !seen {
				panels = append(panels, q.panel)
				panelData[q.panel] = false
			}
			expr, _ := substitute(q.expr, nil)
			var res struct {
				ResultType string            `json:"resultType"`
				Result     []json.RawMessage `json:"result"`
			}
			if err := api.get("/api/v1/query", url.Values{"query": {expr}}, &res); err != nil {
				p.add("%s: %v: %s", q.where, err, expr)
				continue
			}
			if len(res.Result) > 0 || res.ResultType == "scalar" {
				panelData[q.panel] = true
			}
		}
		for _, pn := range panels {
			if !panelData[pn] {
				p.add("panel %q: no query returns data", pn)
			}
		}

		var rules struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := api.get("/api/v1/rules", nil, &rules); err != nil {
			p.add("rules: %v", err)
		}
		n := 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health != "ok" {
					p.add("alert %s: health %q %s", r.Name, r.Health, r.LastError)
				}
			}
		}
		if want := len(loadAlertRules(t)); n != want {
			p.add("prometheus loaded %d rules, alerts.yml has %d", n, want)
		}

		if len(p) == 0 {
			t.Logf("prometheus %s: targets up, %d panels have data, %d rules evaluate", listen, len(panels), n)
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(p)
			p.report(t, "queries through Prometheus")
			t.Logf("prometheus log:\n%s", tail(log.String(), 3000))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// promAPI is a minimal client of the Prometheus HTTP API.
type promAPI struct{ base string }

func (a *promAPI) get(path string, q url.Values, data any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := a.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}
