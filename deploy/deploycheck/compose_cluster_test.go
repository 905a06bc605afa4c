package deploycheck

import (
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/redpacket/rain/internal/app/apiproc"

	"github.com/redpacket/rain/internal/app/consumerproc"
	"github.com/redpacket/rain/internal/config"
	"go.yaml.in/yaml/v3"
)

// composeOverride merges an override file onto c the way compose does for
// what these checks read: a service of both gets the override's image,
// command and healthcheck when set, and its environment, depends_on and
// volumes added; other services and volumes are added.
func composeOverride(t testing.TB, c composeFile, file string) composeFile {
	t.Helper()
	var o composeFile
	if err := yaml.Unmarshal([]byte(interpolate(string(readFile(t, file)))), &o); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(o.Services) == 0 {
		t.Fatalf("%s: no services", file)
	}
	out := composeFile{Name: c.Name, Services: maps.Clone(c.Services), Volumes: maps.Clone(c.Volumes)}
	if out.Volumes == nil {
		out.Volumes = map[string]any{}
	}
	maps.Copy(out.Volumes, o.Volumes)
	for name, s := range o.Services {
		base, ok := out.Services[name]
		if !ok {
			out.Services[name] = s
			continue
		}
		if s.Image != "" {
			base.Image = s.Image
		}
		if len(s.Command) > 0 {
			base.Command = s.Command
		}
		if s.Healthcheck != nil {
			base.Healthcheck = s.Healthcheck
		}
		base.Environment = merged(base.Environment, s.Environment)
		base.DependsOn = merged(base.DependsOn, s.DependsOn)
		base.Volumes = append(slices.Clone(base.Volumes), s.Volumes...)
		out.Services[name] = base
	}
	return out
}

func merged[M ~map[string]string](a, b M) M {
	out := M{}
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

// words splits a compose command given as one string (shell words; "" is
// an empty word) or as a list.
func words(cmd stringList) []string {
	if len(cmd) != 1 {
		return cmd
	}
	var out []string
	for _, w := range regexp.MustCompile(`"[^"]*"|'[^']*'|\S+`).FindAllString(cmd[0], -1) {
		out = append(out, strings.Trim(w, `"'`))
	}
	return out
}

// option is the value that follows name in a command's words.
func option(ws []string, name string) (string, bool) {
	if i := slices.Index(ws, name); i >= 0 && i+1 < len(ws) {
		return ws[i+1], true
	}
	return "", false
}

// TestComposeCluster: compose.cluster.yaml, over compose.yaml, is a Redis
// Cluster the apps inside the network can use: six redis-server nodes with
// cluster mode, AOF everysec on a volume each, full coverage not required,
// each announcing its service name as its hostname (so MOVED, ASK and
// CLUSTER SLOTS name addresses every container resolves); an init service
// that forms 3 masters with a replica each once every node is healthy; and
// an api and a consumer whose REDIS_ADDR (accepted by the binaries) names
// cluster nodes only, started after the cluster is formed.
func TestComposeCluster(t *testing.T) {
	c := composeOverride(t, loadCompose(t), "compose.cluster.yaml")
	var p problems
	var nodes []string
	for name, s := range c.Services {
		ws := words(s.Command)
		if v, _ := option(ws, "--cluster-enabled"); v != "yes" || len(ws) == 0 || ws[0] != "redis-server" {
			continue
		}
		nodes = append(nodes, name)
		if !regexp.MustCompile(`^redis:7(\.|-|$)`).MatchString(s.Image) {
			p.add("%s: image %q, want redis:7.x (cluster-announce-hostname needs 7.0)", name, s.Image)
		}
		for opt, want := range map[string]string{
			"--appendonly": "yes", "--appendfsync": "everysec", "--cluster-require-full-coverage": "no",
			"--cluster-announce-hostname": name, "--cluster-preferred-endpoint-type": "hostname",
			"--cluster-config-file": "nodes.conf",
		} {
			if v, ok := option(ws, opt); !ok || v != want {
				p.add("%s: %s %q, want %q", name, opt, v, want)
			}
		}
		hasData := slices.ContainsFunc(s.Volumes, func(m mount) bool { return m.Type == "volume" && m.Source != "" && m.Target == "/data" })
		if _, declared := c.Volumes[volumeOf(s, "/data")]; !hasData || !declared {
			p.add("%s: no declared named volume on /data (AOF and nodes.conf would not survive the container)", name)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			p.add("%s: no healthcheck", name)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 6 {
		p.add("%d cluster nodes (%v), want 6: 3 masters and 3 replicas", len(nodes), nodes)
	}

	init, ok := c.Services["redis-cluster-init"]
	if !ok {
		p.add("no redis-cluster-init service forming the cluster")
	} else {
		for _, n := range nodes {
			if init.DependsOn[n] != "service_healthy" {
				p.add("redis-cluster-init: depends_on %s must be service_healthy (got %q)", n, init.DependsOn[n])
			}
		}
		script := strings.Join(append(slices.Clone(init.Entrypoint), init.Command...), " ")
		for _, want := range []string{"--cluster create", "--cluster-replicas 1", "cluster_state:ok"} {
			if !strings.Contains(script, want) {
				p.add("redis-cluster-init: script lacks %q", want)
			}
		}
		if init.Restart != "no" {
			p.add("redis-cluster-init: restart %q, want \"no\" (it runs once and exits)", init.Restart)
		}
	}

	for name, s := range appServices(c) {
		addr := s.Environment["REDIS_ADDR"]
		seeds := strings.Split(addr, ",")
		for _, a := range seeds {
			host, port, err := net.SplitHostPort(strings.TrimSpace(a))
			if err != nil || !slices.Contains(nodes, host) || port != "6379" {
				p.add("%s: REDIS_ADDR entry %q is not a cluster node (host:6379 of %v)", name, a, nodes)
			}
		}
		if len(seeds) < 2 {
			p.add("%s: REDIS_ADDR=%q: give more than one seed, so a start does not hang on one node", name, addr)
		}
		if s.DependsOn["redis-cluster-init"] != "service_completed_successfully" {
			p.add("%s: must depend on redis-cluster-init with condition service_completed_successfully", name)
		}
		// The binary accepts the configuration.
		env := map[string]string{"ADMIN_TOKEN": "x"}
		maps.Copy(env, s.Environment)
		set := config.New(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		switch appCommand(s) {
		case "api":
			var cfg apiproc.MainConfig
			cfg.Bind(set)
		case "consumer":
			var cfg consumerproc.MainConfig
			cfg.Bind(set)
		}
		if err := set.Err(); err != nil {
			p.add("%s: cmd/%s refuses its environment: %v", name, appCommand(s), err)
		}
	}
	for name, s := range c.Services {
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				p.add("%s: depends_on %q, which is not a service", name, dep)
			}
		}
	}
	p.report(t, fmt.Sprintf("compose.yaml + compose.cluster.yaml (nodes %v)", nodes))
}

// volumeOf is the named volume s mounts on target.
func volumeOf(s composeService, target string) string {
	for _, m := range s.Volumes {
		if m.Type == "volume" && m.Target == target {
			return m.Source
		}
	}
	return ""
}
