package deploycheck

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redpacket/rain/internal/app/apiproc"

	"github.com/redpacket/rain/internal/app/consumerproc"
	"github.com/redpacket/rain/internal/config"
	"go.yaml.in/yaml/v3"
)

// The subset of the compose file format that compose.yaml uses and these
// checks read. Unknown keys are allowed (compose has many); the forms that
// have a short and a long syntax accept both.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string        `yaml:"image"`
	Build       *composeBuild `yaml:"build"`
	Command     stringList    `yaml:"command"`
	Entrypoint  stringList    `yaml:"entrypoint"`
	Environment envMap        `yaml:"environment"`
	Volumes     []mount       `yaml:"volumes"`
	DependsOn   dependsOn     `yaml:"depends_on"`
	Healthcheck *struct {
		Test    stringList `yaml:"test"`
		Disable bool       `yaml:"disable"`
	} `yaml:"healthcheck"`
	Deploy struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
	Ports         []string `yaml:"ports"`
	Expose        []string `yaml:"expose"`
	Restart       string   `yaml:"restart"`
	ContainerName string   `yaml:"container_name"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func (b *composeBuild) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		b.Context = n.Value
		return nil
	}
	type plain composeBuild
	return n.Decode((*plain)(b))
}

// stringList is a command: a string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = []string{n.Value}
		return nil
	}
	return n.Decode((*[]string)(s))
}

// envMap is an environment: a map or a list of KEY=VALUE.
type envMap map[string]string

func (e *envMap) UnmarshalYAML(n *yaml.Node) error {
	*e = envMap{}
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			(*e)[k] = v
		}
		return nil
	}
	var m map[string]*string
	if err := n.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		if v != nil {
			(*e)[k] = *v
		} else {
			(*e)[k] = ""
		}
	}
	return nil
}

// dependsOn is depends_on: a list of names or a map of name to condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = dependsOn{}
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, s := range list {
			(*d)[s] = "service_started"
		}
		return nil
	}
	var m map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		c := v.Condition
		if c == "" {
			c = "service_started"
		}
		(*d)[k] = c
	}
	return nil
}

// mount is a service volume: "source:target[:mode]" or the long syntax.
type mount struct {
	Type, Source, Target string
	ReadOnly             bool
}

func (m *mount) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		switch len(parts) {
		case 1:
			m.Type, m.Target = "volume", parts[0] // anonymous volume
			return nil
		case 2, 3:
			m.Source, m.Target = parts[0], parts[1]
			m.ReadOnly = len(parts) == 3 && strings.Contains(parts[2], "ro")
		default:
			return fmt.Errorf("volume %q: want source:target[:mode]", n.Value)
		}
		m.Type = "volume"
		if strings.HasPrefix(m.Source, ".") || strings.HasPrefix(m.Source, "/") || strings.HasPrefix(m.Source, "~") {
			m.Type = "bind"
		}
		return nil
	}
	var long struct {
		Type     string `yaml:"type"`
		Source   string `yaml:"source"`
		Target   string `yaml:"target"`
		ReadOnly bool   `yaml:"read_only"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	*m = mount{Type: long.Type, Source: long.Source, Target: long.Target, ReadOnly: long.ReadOnly}
	return nil
}

// interpolate replaces ${VAR}, ${VAR:-default}, ${VAR-default} and $VAR the
// way compose does with an empty environment (the defaults), and $$ with $.
var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func interpolate(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpolation.FindStringSubmatch(m)
		if strings.HasSuffix(sub[2], "-") {
			return sub[3]
		}
		return ""
	})
}

// loadCompose parses compose.yaml after interpolating it with the defaults.
func loadCompose(t testing.TB) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal([]byte(interpolate(string(readFile(t, "compose.yaml")))), &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(c.Services) == 0 {
		t.Fatal("compose.yaml: no services")
	}
	return c
}

// bindSource is the absolute path of a bind mount's source.
func bindSource(m mount) string {
	if filepath.IsAbs(m.Source) {
		return m.Source
	}
	return filepath.Join(root, filepath.FromSlash(m.Source))
}

// mountOf returns the bind mount of svc whose target is target.
func mountOf(svc composeService, target string) (mount, bool) {
	for _, m := range svc.Volumes {
		if m.Type == "bind" && m.Target == target {
			return m, true
		}
	}
	return mount{}, false
}

// appCommand is the binary a service built from deploy/Dockerfile runs
// ("api" by default).
func appCommand(svc composeService) string {
	if len(svc.Command) > 0 {
		return strings.Fields(svc.Command[0])[0]
	}
	return "api"
}

// appServices are the services built from the repository's Dockerfile.
func appServices(c composeFile) map[string]composeService {
	out := map[string]composeService{}
	for name, svc := range c.Services {
		if svc.Build != nil {
			out[name] = svc
		}
	}
	return out
}

// TestComposeReferences: compose.yaml parses, every file it refers to
// exists, every named volume is declared, and depends_on names existing
// services with conditions they can meet, without cycles.
func TestComposeReferences(t *testing.T) {
	c := loadCompose(t)
	var p problems
	for name, svc := range c.Services {
		if svc.Image == "" && svc.Build == nil {
			p.add("service %s: neither image nor build", name)
		}
		if svc.Build != nil {
			ctx := filepath.Join(root, filepath.FromSlash(svc.Build.Context))
			if fi, err := os.Stat(ctx); err != nil || !fi.IsDir() {
				p.add("service %s: build context %q is not a directory", name, svc.Build.Context)
			}
			df := svc.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if !exists(filepath.Join(ctx, filepath.FromSlash(df))) {
				p.add("service %s: dockerfile %q does not exist (relative to the context %q)", name, df, svc.Build.Context)
			}
		}
		for _, m := range svc.Volumes {
			switch m.Type {
			case "bind":
				if !exists(bindSource(m)) {
					p.add("service %s: bind mount source %q does not exist", name, m.Source)
				}
			case "volume":
				if _, ok := c.Volumes[m.Source]; m.Source != "" && !ok {
					p.add("service %s: volume %q is not declared under top-level volumes", name, m.Source)
				}
			}
		}
		for dep, cond := range svc.DependsOn {
			target, ok := c.Services[dep]
			if !ok {
				p.add("service %s: depends_on %q, which is not a service", name, dep)
				continue
			}
			switch cond {
			case "service_started":
			case "service_healthy":
				if target.Healthcheck == nil || target.Healthcheck.Disable || len(target.Healthcheck.Test) == 0 {
					p.add("service %s: depends_on %s: service_healthy, but %s has no healthcheck", name, dep, dep)
				}
			case "service_completed_successfully":
				if target.Restart != "" && target.Restart != "no" {
					p.add("service %s: depends_on %s: service_completed_successfully, but %s restarts (%q)", name, dep, dep, target.Restart)
				}
			default:
				p.add("service %s: depends_on %s: unknown condition %q", name, dep, cond)
			}
		}
	}
	// No cycles: a service starts only after all it depends on.
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string, []string)
	visit = func(s string, stack []string) {
		switch state[s] {
		case 1:
			p.add("depends_on cycle: %s", strings.Join(append(stack, s), " -> "))
			return
		case 2:
			return
		}
		state[s] = 1
		for dep := range c.Services[s].DependsOn {
			if _, ok := c.Services[dep]; ok {
				visit(dep, append(stack, s))
			}
		}
		state[s] = 2
	}
	for name := range c.Services {
		visit(name, nil)
	}
	p.report(t, "compose.yaml")
}

// TestComposeStack checks that compose.yaml is the stack the project ships:
// Redis 7 with AOF everysec on a volume, PostgreSQL 16+ on a volume, Apache
// Kafka in KRaft mode with the topics made before the apps start, 2 api
// replicas behind the load balancer on the host's port 8080, 2 consumers in
// one group, Prometheus and Grafana wired to the files in deploy/, and apps
// configured only with variables the binaries read.
func TestComposeStack(t *testing.T) {
	c := loadCompose(t)
	var p problems
	svc := func(name string) composeService {
		s, ok := c.Services[name]
		if !ok {
			p.add("no service %q", name)
		}
		return s
	}
	hasVolume := func(name string, s composeService, target string) {
		for _, m := range s.Volumes {
			if m.Type == "volume" && m.Source != "" && m.Target == target {
				return
			}
		}
		p.add("%s: no named volume mounted on %s (data would not survive the container)", name, target)
	}

	// Redis: 7.x, AOF, fsync every second, data on a volume.
	redis := svc("redis")
	if !regexp.MustCompile(`^redis:7(\.|-|$)`).MatchString(redis.Image) {
		p.add("redis: image %q, want redis:7.x", redis.Image)
	}
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec"} {
		if !strings.Contains(cmd, want) {
			p.add("redis: command %q lacks %q", cmd, want)
		}
	}
	hasVolume("redis", redis, "/data")

	// PostgreSQL 16 or newer, on a volume.
	pg := svc("postgres")
	if m := regexp.MustCompile(`^postgres:(\d+)`).FindStringSubmatch(pg.Image); m == nil {
		p.add("postgres: image %q, want postgres:<major>", pg.Image)
	} else if major, _ := strconv.Atoi(m[1]); major < 16 {
		p.add("postgres: image %q, want 16 or newer", pg.Image)
	} else if major >= 18 {
		hasVolume("postgres", pg, "/var/lib/postgresql") // 18+ keeps PGDATA in a versioned subdirectory
	} else {
		hasVolume("postgres", pg, "/var/lib/postgresql/data")
	}

	// Kafka: Apache Kafka 4.x, KRaft (broker+controller), no ZooKeeper anywhere.
	kafka := svc("kafka")
	if !strings.HasPrefix(kafka.Image, "apache/kafka:4") {
		p.add("kafka: image %q, want apache/kafka:4.x", kafka.Image)
	}
	roles := kafka.Environment["KAFKA_PROCESS_ROLES"]
	if !strings.Contains(roles, "broker") || !strings.Contains(roles, "controller") {
		p.add("kafka: KAFKA_PROCESS_ROLES=%q, want broker,controller (KRaft)", roles)
	}
	for name, s := range c.Services {
		if strings.Contains(strings.ToLower(s.Image), "zookeeper") || strings.Contains(strings.ToLower(name), "zookeeper") {
			p.add("service %s: ZooKeeper has no place in a KRaft stack", name)
		}
	}
	hasVolume("kafka", kafka, kafka.Environment["KAFKA_LOG_DIRS"])
	if adv := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]; !strings.Contains(adv, "//kafka:") {
		p.add("kafka: KAFKA_ADVERTISED_LISTENERS=%q must advertise the service name (kafka:<port>) to the other containers", adv)
	}

	apps := appServices(c)
	api, consumer := svc("api"), svc("consumer")
	if api.Build == nil || consumer.Build == nil {
		p.add("api and consumer must be built from the repository (build:)")
	}
	if appCommand(api) != "api" || appCommand(consumer) != "consumer" {
		p.add("api runs %q and consumer runs %q, want api and consumer", appCommand(api), appCommand(consumer))
	}

	// Topics: made by an init service that the apps wait for, with the
	// names the apps are configured with.
	for name, s := range apps {
		init, ok := c.Services["kafka-init"]
		if !ok {
			break
		}
		if s.DependsOn["kafka-init"] != "service_completed_successfully" {
			p.add("%s: must depend on kafka-init with condition service_completed_successfully", name)
		}
		script := strings.Join(append(append([]string{}, init.Entrypoint...), init.Command...), " ")
		for _, v := range []string{"KAFKA_TOPIC", "KAFKA_DLQ_TOPIC"} {
			if topic := s.Environment[v]; topic == "" || !strings.Contains(script, topic) {
				p.add("%s: %s=%q is not created by kafka-init", name, v, topic)
			}
		}
	}
	if _, ok := c.Services["kafka-init"]; !ok {
		p.add("no kafka-init service creating claim_events and its DLQ")
	}

	// Every app waits for healthy Redis, PostgreSQL and Kafka, and has a health check.
	for name, s := range apps {
		for _, dep := range []string{"redis", "postgres", "kafka"} {
			if s.DependsOn[dep] != "service_healthy" {
				p.add("%s: depends_on %s must be condition service_healthy (got %q)", name, dep, s.DependsOn[dep])
			}
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			p.add("%s: no healthcheck", name)
		}
		if s.ContainerName != "" {
			p.add("%s: container_name prevents replicas", name)
		}
	}

	// api: 2+ replicas, no host port of their own (the balancer has it),
	// ADMIN_TOKEN with an overridable default.
	if api.Deploy.Replicas == nil || *api.Deploy.Replicas < 2 {
		p.add("api: deploy.replicas must be 2 or more")
	}
	if len(api.Ports) > 0 {
		p.add("api: publishes %v; replicas cannot share a host port, publish the balancer instead", api.Ports)
	}
	if raw := string(readFile(t, "compose.yaml")); !regexp.MustCompile(`ADMIN_TOKEN:\s*\$\{ADMIN_TOKEN:-[^}]+\}`).MatchString(raw) {
		p.add("api: ADMIN_TOKEN must be ${ADMIN_TOKEN:-<default>}")
	}
	apiPort := api.Environment["PORT"]
	if apiPort == "" {
		apiPort = "8080"
	}

	// consumer: 2+ replicas in one group.
	if consumer.Deploy.Replicas == nil || *consumer.Deploy.Replicas < 2 {
		p.add("consumer: deploy.replicas must be 2 or more")
	}
	metricsAddr := consumer.Environment["METRICS_ADDR"]
	if metricsAddr == "" {
		metricsAddr = ":9091"
	}
	_, consumerPort, err := net.SplitHostPort(metricsAddr)
	if err != nil {
		p.add("consumer: METRICS_ADDR=%q: %v", metricsAddr, err)
	}

	// Load balancer: publishes host port 8080 (overridable), forwards to the
	// api service on the api's port, waits for a healthy api.
	lb := svc("lb")
	if !slices.ContainsFunc(lb.Ports, func(p string) bool { return strings.HasSuffix(p, ":8080") && strings.Contains(p, "8080:") }) {
		p.add("lb: ports %v do not publish 8080", lb.Ports)
	}
	if lb.DependsOn["api"] != "service_healthy" {
		p.add("lb: depends_on api must be service_healthy")
	}
	if m, ok := mountOf(lb, "/usr/local/etc/haproxy/haproxy.cfg"); !ok {
		p.add("lb: deploy/haproxy/haproxy.cfg is not mounted on /usr/local/etc/haproxy/haproxy.cfg")
	} else if cfg, err := os.ReadFile(bindSource(m)); err == nil {
		if !regexp.MustCompile(`(?m)^\s*server(-template)?\s.*\bapi:` + regexp.QuoteMeta(apiPort) + `\b`).Match(cfg) {
			p.add("lb: %s has no server line for api:%s", m.Source, apiPort)
		}
	}

	// Prometheus: mounts deploy/prometheus/prometheus.yml and the rule files
	// it loads; discovers each replica of api and consumer by DNS on the
	// ports they listen on.
	prom := svc("prometheus")
	promMount, ok := mountOf(prom, "/etc/prometheus/prometheus.yml")
	if !ok || filepath.ToSlash(filepath.Clean(promMount.Source)) != "deploy/prometheus/prometheus.yml" {
		p.add("prometheus: deploy/prometheus/prometheus.yml must be mounted on /etc/prometheus/prometheus.yml")
	}
	pc := loadPromConfig(t)
	for _, rf := range pc.RuleFiles {
		target := rf
		if !filepath.IsAbs(target) {
			target = filepath.ToSlash(filepath.Join("/etc/prometheus", rf))
		}
		if m, ok := mountOf(prom, target); !ok {
			p.add("prometheus: rule file %s is not mounted on %s", rf, target)
		} else if !exists(bindSource(m)) {
			p.add("prometheus: rule file source %s does not exist", m.Source)
		}
	}
	wantJobs := map[string]string{"api": apiPort, "consumer": consumerPort}
	for job, port := range wantJobs {
		sc, ok := pc.job(job)
		if !ok {
			p.add("prometheus.yml: no scrape job %q", job)
			continue
		}
		if len(sc.DNSSDConfigs) == 0 {
			p.add("prometheus.yml: job %s must use dns_sd_configs so that every replica is scraped", job)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				if _, ok := c.Services[n]; !ok {
					p.add("prometheus.yml: job %s resolves %q, which is not a compose service", job, n)
				}
			}
			if !slices.Contains(d.Names, job) {
				p.add("prometheus.yml: job %s does not resolve the %s service (names %v)", job, job, d.Names)
			}
			if strconv.Itoa(d.Port) != port || d.Type != "A" {
				p.add("prometheus.yml: job %s: dns_sd type %s port %d, want type A port %s", job, d.Type, d.Port, port)
			}
		}
	}
	for _, sc := range pc.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, _, _ := net.SplitHostPort(target)
				if _, ok := c.Services[host]; !ok && host != "localhost" {
					p.add("prometheus.yml: job %s scrapes %s, which is not a compose service", sc.JobName, target)
				}
			}
		}
	}

	// Grafana: the provisioning directory and the dashboards directory are
	// mounted where the provisioning files say, and the data source points
	// at the prometheus service.
	graf := svc("grafana")
	if m, ok := mountOf(graf, "/etc/grafana/provisioning"); !ok || filepath.ToSlash(filepath.Clean(m.Source)) != "deploy/grafana/provisioning" {
		p.add("grafana: deploy/grafana/provisioning must be mounted on /etc/grafana/provisioning")
	}
	for _, prov := range loadDashboardProviders(t) {
		m, ok := mountOf(graf, prov.Options.Path)
		if !ok || filepath.ToSlash(filepath.Clean(m.Source)) != "deploy/grafana/dashboards" {
			p.add("grafana: dashboard provider %s reads %s, where deploy/grafana/dashboards is not mounted", prov.Name, prov.Options.Path)
		}
	}
	if home := graf.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		m, ok := mountOf(graf, filepath.ToSlash(filepath.Dir(home)))
		if !ok || !exists(filepath.Join(bindSource(m), filepath.Base(home))) {
			p.add("grafana: home dashboard %s is not a mounted dashboard file", home)
		}
	}
	for _, ds := range loadDatasources(t).Datasources {
		host := strings.TrimPrefix(strings.TrimPrefix(ds.URL, "http://"), "https://")
		host, _, _ = net.SplitHostPort(strings.TrimSuffix(host, "/"))
		if _, ok := c.Services[host]; !ok {
			p.add("grafana: data source %s points at %s, which is not a compose service", ds.Name, ds.URL)
		}
	}
	if graf.DependsOn["prometheus"] == "" {
		p.add("grafana: must depend on prometheus")
	}

	// The apps are configured only with variables their binaries read.
	declared := map[string]func(*config.Set){
		"api":      func(s *config.Set) { var c apiproc.MainConfig; c.Bind(s) },
		"consumer": func(s *config.Set) { var c consumerproc.MainConfig; c.Bind(s) },
	}
	for name, s := range apps {
		bin := appCommand(s)
		bind, ok := declared[bin]
		if !ok {
			p.add("%s: runs %q, which is not cmd/api or cmd/consumer", name, bin)
			continue
		}
		vars := config.Defaults()
		bind(vars)
		reads := map[string]bool{}
		for _, v := range vars.Vars() {
			reads[v.Name] = true
		}
		for k := range s.Environment {
			if !reads[k] {
				p.add("%s: environment %s is not read by cmd/%s (typo, or a variable of the other binary?)", name, k, bin)
			}
		}
	}
	p.report(t, "compose.yaml")
}
