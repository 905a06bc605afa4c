package deploycheck

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type datasourceFile struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string         `yaml:"name"`
		UID       string         `yaml:"uid"`
		Type      string         `yaml:"type"`
		Access    string         `yaml:"access"`
		URL       string         `yaml:"url"`
		IsDefault bool           `yaml:"isDefault"`
		Editable  bool           `yaml:"editable"`
		JSONData  map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

func loadDatasources(t testing.TB) datasourceFile {
	t.Helper()
	var f datasourceFile
	readYAML(t, "deploy/grafana/provisioning/datasources/prometheus.yaml", &f)
	return f
}

type dashboardProvider struct {
	Name    string `yaml:"name"`
	Type    string `yaml:"type"`
	Options struct {
		Path string `yaml:"path"`
	} `yaml:"options"`
}

func loadDashboardProviders(t testing.TB) []dashboardProvider {
	t.Helper()
	files, _ := filepath.Glob(path("deploy/grafana/provisioning/dashboards/*.yaml"))
	if len(files) == 0 {
		t.Fatal("deploy/grafana/provisioning/dashboards: no provider file")
	}
	var out []dashboardProvider
	for _, f := range files {
		var pf struct {
			APIVersion int                 `yaml:"apiVersion"`
			Providers  []dashboardProvider `yaml:"providers"`
		}
		rel, _ := filepath.Rel(root, f)
		readYAML(t, filepath.ToSlash(rel), &pf)
		out = append(out, pf.Providers...)
	}
	return out
}

// Dashboard JSON, the fields these checks read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashboardFiles are the provisioned dashboards, repository-relative.
func dashboardFiles(t testing.TB) []string {
	t.Helper()
	files, _ := filepath.Glob(path("deploy/grafana/dashboards/*.json"))
	if len(files) == 0 {
		t.Fatal("deploy/grafana/dashboards: no dashboard")
	}
	var out []string
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		out = append(out, filepath.ToSlash(rel))
	}
	return out
}

func loadDashboard(t testing.TB, rel string) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, rel), &d); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return d
}

// allPanels flattens rows (collapsed rows carry their panels inside).
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// query is one PromQL expression of a dashboard target or an alert rule.
type query struct {
	where string // "rain.json: panel "Open rate by result" A"
	panel string // panel title ("" for alerts)
	expr  string // as written
}

// grafanaVars are Grafana's built-in variables and the values the checks
// substitute for them.
var grafanaVars = map[string]string{
	"__rate_interval": "1m", "__interval": "15s", "__range": "5m",
	"__range_s": "300", "__range_ms": "300000", "__interval_ms": "15000",
}

var varRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?|\[\[([A-Za-z_][A-Za-z0-9_]*)\]\]`)

// substitute replaces Grafana variables with values Prometheus accepts;
// an unknown variable is reported.
func substitute(expr string, known map[string]bool) (string, []string) {
	var unknown []string
	out := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varRef.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		if v, ok := grafanaVars[name]; ok {
			return v
		}
		if known[name] {
			return ".*" // dashboard variables: used in =~ matchers
		}
		unknown = append(unknown, m)
		return m
	})
	return out, unknown
}

// dashboardQueries are the PromQL expressions of every provisioned dashboard.
func dashboardQueries(t testing.TB) []query {
	t.Helper()
	var out []query
	for _, f := range dashboardFiles(t) {
		d := loadDashboard(t, f)
		for _, p := range allPanels(d.Panels) {
			for _, tg := range p.Targets {
				out = append(out, query{where: filepath.Base(f) + ": panel " + `"` + p.Title + `" ` + tg.RefID, panel: p.Title, expr: tg.Expr})
			}
		}
	}
	return out
}

// alertQueries are the expressions of deploy/prometheus/alerts.yml.
func alertQueries(t testing.TB) []query {
	t.Helper()
	var out []query
	for _, r := range loadAlertRules(t) {
		out = append(out, query{where: "alerts.yml: " + r.Alert + r.Record, expr: r.Expr})
	}
	return out
}

// TestGrafanaProvisioning checks the data source and dashboard provider
// files, and that dashboards query that data source.
func TestGrafanaProvisioning(t *testing.T) {
	var p problems
	ds := loadDatasources(t)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		p.add("datasources/prometheus.yaml: want apiVersion 1 and one data source")
	}
	var uid string
	for _, d := range ds.Datasources {
		if d.Type != "prometheus" || d.UID == "" || d.URL == "" || !d.IsDefault {
			p.add("data source %q: want type prometheus, a uid, a url, isDefault", d.Name)
		}
		uid = d.UID
	}
	provs := loadDashboardProviders(t)
	if len(provs) == 0 {
		p.add("dashboard providers: none")
	}
	for _, pr := range provs {
		if pr.Type != "file" || pr.Options.Path == "" {
			p.add("dashboard provider %q: want type file and options.path", pr.Name)
		}
	}
	for _, f := range dashboardFiles(t) {
		d := loadDashboard(t, f)
		for _, pn := range allPanels(d.Panels) {
			if pn.Type == "row" {
				continue
			}
			if pn.Datasource != nil && pn.Datasource.UID != uid {
				p.add("%s: panel %q uses data source uid %q, the provisioned one is %q", f, pn.Title, pn.Datasource.UID, uid)
			}
			for _, tg := range pn.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != uid {
					p.add("%s: panel %q target %s uses data source uid %q, the provisioned one is %q", f, pn.Title, tg.RefID, tg.Datasource.UID, uid)
				}
			}
		}
	}
	p.report(t, "grafana provisioning")
}

// TestDashboardPanels checks each dashboard's structure: every panel has a
// query (a dashboard that queries nothing is a defect), ids are unique,
// panels fit the 24-column grid without overlapping, variables are known,
// and the panels the project promises are there.
func TestDashboardPanels(t *testing.T) {
	for _, f := range dashboardFiles(t) {
		var p problems
		d := loadDashboard(t, f)
		if d.UID == "" || d.Title == "" {
			p.add("dashboard needs a uid and a title")
		}
		known := map[string]bool{}
		for _, v := range d.Templating.List {
			known[v.Name] = true
		}
		ids := map[int]string{}
		var boxes []panel
		panels := allPanels(d.Panels)
		if len(panels) == 0 {
			p.add("no panels")
		}
		for _, pn := range panels {
			if other, dup := ids[pn.ID]; dup || pn.ID == 0 {
				p.add("panel %q: id %d missing or also used by %q", pn.Title, pn.ID, other)
			}
			ids[pn.ID] = pn.Title
			if pn.Title == "" {
				p.add("panel %d has no title", pn.ID)
			}
			g := pn.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				p.add("panel %q: gridPos %+v outside the 24-column grid", pn.Title, g)
			}
			if pn.Type == "row" {
				continue
			}
			for _, b := range boxes {
				bg := b.GridPos
				if g.X < bg.X+bg.W && bg.X < g.X+g.W && g.Y < bg.Y+bg.H && bg.Y < g.Y+g.H {
					p.add("panels %q and %q overlap", b.Title, pn.Title)
				}
			}
			boxes = append(boxes, pn)
			if len(pn.Targets) == 0 {
				p.add("panel %q has no query", pn.Title)
			}
			refs := map[string]bool{}
			for _, tg := range pn.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					p.add("panel %q target %s: empty expr", pn.Title, tg.RefID)
				}
				if refs[tg.RefID] || tg.RefID == "" {
					p.add("panel %q: refId %q missing or repeated", pn.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				if _, unknown := substitute(tg.Expr, known); len(unknown) > 0 {
					p.add("panel %q target %s: unknown variables %v", pn.Title, tg.RefID, unknown)
				}
			}
		}
		p.report(t, f)
	}

	// The panels the dashboard must have, each found by what it queries.
	queries := dashboardQueries(t)
	has := func(res ...string) bool {
		return slices.ContainsFunc(queries, func(q query) bool {
			for _, re := range res {
				if !regexp.MustCompile(re).MatchString(q.expr) {
					return false
				}
			}
			return true
		})
	}
	var p problems
	for _, want := range []struct {
		what string
		res  []string
	}{
		{"open rate by result", []string{`by \((.*, *)?result\b`, `rain_claims_total`}},
		{"HTTP latency percentiles", []string{`histogram_quantile\(0\.99,`, `rain_http_request_duration_seconds_bucket`}},
		{"Redis latency", []string{`histogram_quantile`, `rain_redis_duration_seconds_bucket`}},
		{"Kafka latency", []string{`histogram_quantile`, `rain_kafka_produce_duration_seconds_bucket`}},
		{"PostgreSQL latency", []string{`histogram_quantile`, `rain_postgres_duration_seconds_bucket`}},
		{"ring buffer fill", []string{`rain_ring_length`, `/`, `rain_ring_capacity`}},
		{"producer errors", []string{`rain_producer_records_total\{[^}]*result="error"`}},
		{"consumer lag", []string{`rain_consumer_lag_records`}},
		{"consumer rows/s", []string{`rate\(rain_consumer_rows_inserted_total`}},
		{"dead letters", []string{`rain_consumer_dead_letters_total`}},
		{"reconciler repairs", []string{`rain_reconciler_repairs_total`}},
		{"remaining stock per campaign", []string{`by \((.*, *)?campaign_id\b`, `rain_campaign_stock_remaining`}},
	} {
		if !has(want.res...) {
			p.add("no panel for %s (a query matching all of %q)", want.what, want.res)
		}
	}
	p.report(t, "dashboard coverage")
}
