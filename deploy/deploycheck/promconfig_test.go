package deploycheck

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// promConfig is the part of deploy/prometheus/prometheus.yml these checks read.
type promConfig struct {
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName      string `yaml:"job_name"`
	MetricsPath  string `yaml:"metrics_path"`
	DNSSDConfigs []struct {
		Names []string `yaml:"names"`
		Type  string   `yaml:"type"`
		Port  int      `yaml:"port"`
	} `yaml:"dns_sd_configs"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
}

func (c promConfig) job(name string) (scrapeConfig, bool) {
	for _, sc := range c.ScrapeConfigs {
		if sc.JobName == name {
			return sc, true
		}
	}
	return scrapeConfig{}, false
}

func loadPromConfig(t testing.TB) promConfig {
	t.Helper()
	var c promConfig
	readYAML(t, "deploy/prometheus/prometheus.yml", &c)
	return c
}

// alertRules are the rules of deploy/prometheus/alerts.yml.
type alertRule struct {
	Alert  string `yaml:"alert"`
	Record string `yaml:"record"`
	Expr   string `yaml:"expr"`
}

func loadAlertRules(t testing.TB) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus/alerts.yml"), &f); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}
