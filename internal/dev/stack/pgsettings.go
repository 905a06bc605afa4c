package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pgSetting is one PostgreSQL setting the local stack gives its cluster:
// the claim writes' workload (docs/operations.md, "PostgreSQL settings",
// says what each did in the measurements and what to give a production
// server).
type pgSetting struct {
	Name, Value string
	Why         string
}

// pgSettings are the settings of the cluster the stack starts. Durability
// is left as it is (fsync, synchronous_commit, full_page_writes on): a
// batch the consumer committed is never lost, and Kafka offsets move only
// after PostgreSQL commits.
var pgSettings = []pgSetting{
	{"shared_buffers", "1GB", "the keys of the live campaigns' partitions stay in memory (default 128MB): a backend no longer writes out and reads back key pages"},
	{"max_wal_size", "8GB", "a checkpoint every 8GB of WAL, not every 1GB: fewer full-page images of the key pages, which real users' inserts spread"},
	{"min_wal_size", "1GB", "WAL segments recycled, not made anew"},
	{"checkpoint_timeout", "15min", "the time bound of the same (default 5min); crash recovery replays at most this much"},
}

// pgConfName is the file the settings are written to, in the cluster's
// conf.d (Debian's postgresql.conf includes that directory).
const pgConfName = "50-rain.conf"

// pgConf is the file's contents.
func pgConf() string {
	var b strings.Builder
	b.WriteString("# Written by the project's local stack (internal/dev/stack/pgsettings.go) when it\n" +
		"# starts this cluster; docs/operations.md, \"PostgreSQL settings\". Durability\n" +
		"# settings (fsync, synchronous_commit, full_page_writes) are left at their defaults: on.\n")
	for _, s := range pgSettings {
		fmt.Fprintf(&b, "\n# %s\n%s = '%s'\n", s.Why, s.Name, s.Value)
	}
	return b.String()
}

// confDir is the conf.d directory of a Debian cluster.
func (c pgCluster) confDir() string {
	return filepath.Join("/etc/postgresql", c.version, c.name, "conf.d")
}

// writeSettings writes the settings into the cluster's conf.d, to be read
// when it starts next: the stack calls it before it starts a cluster, never
// on one that runs (that one belongs to whoever started it).
func (p *Postgres) writeSettings(ctx context.Context, c pgCluster) error {
	dst := filepath.Join(c.confDir(), pgConfName)
	if b, err := os.ReadFile(dst); err == nil && string(b) == pgConf() {
		return nil
	}
	if err := os.MkdirAll(p.s.State, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(p.s.State, pgConfName)
	if err := os.WriteFile(tmp, []byte(pgConf()), 0o644); err != nil {
		return err
	}
	p.s.logf("POSTGRES: settings for the claim writes in %s", dst)
	_, err := command(ctx, time.Minute, "/", asRoot("install", "-D", "-m", "0644", tmp, dst)...)
	return err
}

// checkSettings compares the settings of a running cluster with the
// stack's and says which differ, and how to apply them: the stack does not
// restart a cluster it did not start.
func (p *Postgres) checkSettings(ctx context.Context, c pgCluster) {
	names := make([]string, len(pgSettings))
	for i, s := range pgSettings {
		names[i] = "'" + s.Name + "'"
	}
	out, err := p.psql(ctx, "SELECT name || '=' || current_setting(name) FROM pg_settings WHERE name IN ("+strings.Join(names, ",")+")")
	if err != nil {
		p.s.logf("WARNING: POSTGRES: cannot read the settings of %s/%s: %v", c.version, c.name, err)
		return
	}
	have := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			have[k] = v
		}
	}
	var differ []string
	for _, s := range pgSettings {
		if !sameSetting(have[s.Name], s.Value) {
			differ = append(differ, fmt.Sprintf("%s=%s (stack: %s)", s.Name, have[s.Name], s.Value))
		}
	}
	if len(differ) > 0 {
		p.s.logf("POSTGRES: cluster %s/%s runs without the stack's settings: %s. It was started elsewhere, so it is left as it is; "+
			"to apply them: stop it (pg_ctlcluster %s %s stop) and start the services again (docs/operations.md, \"PostgreSQL settings\")",
			c.version, c.name, strings.Join(differ, ", "), c.version, c.name)
	}
}

// sameSetting compares a value SHOW gives with one of pgSettings (units
// as PostgreSQL prints them: 1GB, 15min).
func sameSetting(have, want string) bool {
	return strings.EqualFold(strings.TrimSpace(have), want)
}
