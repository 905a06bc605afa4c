package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// The role and databases the project uses.
const (
	pgRole     = "rain"
	pgPassword = "rain"
)

var pgDatabases = []string{"rain", "rain_test"}

// Postgres is the Debian PostgreSQL cluster on 127.0.0.1:Port, with role
// rain (password rain, LOGIN CREATEDB) owning databases rain and
// rain_test. It is started with pg_ctlcluster when it is down, and then
// recorded as started here (so that Stop stops only that).
type Postgres struct {
	s    *Stack
	port int
	name string // the cluster Start creates when none listens on port
}

// pgClusterName is what a cluster name may hold (pg_createcluster's rule,
// narrowed).
var pgClusterName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,63}$`)

// Name is "postgres".
func (p *Postgres) Name() string { return "postgres" }

// Addr is 127.0.0.1:port.
func (p *Postgres) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// DSN is the URL of database db as the project's role, over TCP.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pgRole, pgPassword, p.Addr(), db)
}

func (p *Postgres) marker() string { return filepath.Join(p.s.State, "postgres.started") }

// pgCluster is a line of pg_lsclusters.
type pgCluster struct{ version, name, status, log string }

// cluster finds the cluster on the port ("" name: none).
func (p *Postgres) cluster(ctx context.Context) (pgCluster, error) {
	out, err := command(ctx, 30*time.Second, "/", "pg_lsclusters", "-h")
	if err != nil {
		return pgCluster{}, fmt.Errorf("%w (is postgresql installed? bash deploy/local/install.sh)", err)
	}
	return parseClusters(out, p.port), nil
}

// parseClusters picks the line of `pg_lsclusters -h` output (Ver Cluster
// Port Status Owner Data-directory Log-file) for port.
func parseClusters(out string, port int) pgCluster {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[2] == strconv.Itoa(port) {
			c := pgCluster{version: f[0], name: f[1], status: f[3]}
			if len(f) >= 7 {
				c.log = f[6]
			}
			return c
		}
	}
	return pgCluster{}
}

func (p *Postgres) accepting(ctx context.Context) error {
	_, err := command(ctx, 10*time.Second, "/", "pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port))
	return err
}

// Check connects to database rain as the project's role and runs SELECT 1.
func (p *Postgres) Check(ctx context.Context) error {
	return p.login(ctx, "rain")
}

func (p *Postgres) login(ctx context.Context, db string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN(db))
	if err != nil {
		return fmt.Errorf("postgres %s: %w", p.Addr(), err)
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Start starts the cluster on the port when it is down (creating one
// when there is none), then creates the role and the databases when they
// are missing.
func (p *Postgres) Start(ctx context.Context) error { return p.s.startLocked(ctx, p) }

func (p *Postgres) start(ctx context.Context) error {
	c, err := p.cluster(ctx)
	if err != nil {
		return err
	}
	if c.name == "" {
		ver, err := latestPostgres()
		if err != nil {
			return err
		}
		p.s.logf("POSTGRES: no cluster on port %d; creating %s/%s", p.port, ver, p.name)
		if _, err := command(ctx, 2*time.Minute, "/", asRoot("pg_createcluster", "--port", strconv.Itoa(p.port), ver, p.name)...); err != nil {
			return err
		}
		if c, err = p.cluster(ctx); err != nil {
			return err
		}
	}
	switch {
	case p.accepting(ctx) == nil:
		p.s.logf("POSTGRES: cluster %s/%s already accepting connections on %s", c.version, c.name, p.Addr())
		p.checkSettings(ctx, c)
	case c.status == "online":
		p.s.logf("POSTGRES: cluster %s/%s is online but not ready yet; waiting", c.version, c.name)
	default:
		if err := p.writeSettings(ctx, c); err != nil {
			return fmt.Errorf("cluster %s/%s: its settings: %w", c.version, c.name, err)
		}
		p.s.logf("POSTGRES: starting cluster %s/%s (port %d) ...", c.version, c.name, p.port)
		if _, err := command(ctx, 2*time.Minute, "/", asRoot("pg_ctlcluster", c.version, c.name, "start")...); err != nil {
			return err
		}
		if err := os.MkdirAll(p.s.State, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p.marker(), []byte(c.version+" "+c.name+"\n"), 0o644); err != nil {
			return err
		}
	}
	if err := Poll(ctx, 30*time.Second, p.accepting); err != nil {
		return fmt.Errorf("cluster %s/%s on %s: %w (log: %s)", c.version, c.name, p.Addr(), err, c.log)
	}
	if err := p.ensureRole(ctx); err != nil {
		return err
	}
	p.s.logf("POSTGRES: cluster %s/%s ready on %s; POSTGRES_DSN=%s (tests: %s)", c.version, c.name, p.Addr(), p.DSN("rain"), p.DSN("rain_test"))
	return nil
}

// clusterName is the name of the cluster the stack creates on port: main
// on PostgreSQL's port, else one of its own (Debian names a cluster per
// version, and main on 5432 may exist already).
func clusterName(port int) string {
	if port == 5432 {
		return "main"
	}
	return "rain" + strconv.Itoa(port)
}

// latestPostgres is the newest PostgreSQL version installed.
func latestPostgres() (string, error) {
	entries, err := os.ReadDir("/usr/lib/postgresql")
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL server installed (bash deploy/local/install.sh): %w", err)
	}
	var vers []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			vers = append(vers, n)
		}
	}
	if len(vers) == 0 {
		return "", errors.New("no PostgreSQL server installed under /usr/lib/postgresql (bash deploy/local/install.sh)")
	}
	return strconv.Itoa(slices.Max(vers)), nil
}

// psql runs one statement as the postgres superuser over the local socket
// and returns its unaligned output.
func (p *Postgres) psql(ctx context.Context, sql string) (string, error) {
	out, err := command(ctx, time.Minute, "/", asUser("postgres", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-p", strconv.Itoa(p.port), "-d", "postgres", "-tAc", sql)...)
	return strings.TrimSpace(out), err
}

// Checkpoint runs CHECKPOINT as the superuser (the project's role may
// not): what a bulk load left in shared buffers is written out now, not by
// the checkpointer during what is measured next.
func (p *Postgres) Checkpoint(ctx context.Context) error {
	_, err := p.psql(ctx, "CHECKPOINT")
	return err
}

// ensureRole creates (or updates) the role and the databases, and makes
// password login over TCP on 127.0.0.1 work.
func (p *Postgres) ensureRole(ctx context.Context) error {
	have, err := p.psql(ctx, "SELECT 1 FROM pg_roles WHERE rolname = '"+pgRole+"'")
	if err != nil {
		return err
	}
	verb := "ALTER"
	if have != "1" {
		verb = "CREATE"
		p.s.logf("POSTGRES: creating role %s (LOGIN CREATEDB)", pgRole)
	}
	if _, err := p.psql(ctx, fmt.Sprintf("%s ROLE %s WITH LOGIN CREATEDB PASSWORD '%s'", verb, pgRole, pgPassword)); err != nil {
		return err
	}
	for _, db := range pgDatabases {
		have, err := p.psql(ctx, "SELECT 1 FROM pg_database WHERE datname = '"+db+"'")
		if err != nil {
			return err
		}
		if have != "1" {
			p.s.logf("POSTGRES: creating database %s owned by %s", db, pgRole)
			if _, err := p.psql(ctx, "CREATE DATABASE "+db+" OWNER "+pgRole); err != nil {
				return err
			}
		}
	}
	if p.login(ctx, "rain") != nil {
		// Debian's pg_hba.conf has a scram-sha-256 rule for 127.0.0.1/32;
		// add one when it is missing.
		hba, err := p.psql(ctx, "SHOW hba_file")
		if err != nil {
			return err
		}
		p.s.logf("WARNING: password login for %s on 127.0.0.1 failed; adding a scram-sha-256 rule to %s", pgRole, hba)
		if _, err := command(ctx, time.Minute, "/", asRoot("sed", "-i",
			"1i host all "+pgRole+" 127.0.0.1/32 scram-sha-256 # added by internal/dev/stack", hba)...); err != nil {
			return err
		}
		if _, err := p.psql(ctx, "SELECT pg_reload_conf()"); err != nil {
			return err
		}
	}
	for _, db := range pgDatabases {
		if err := Poll(ctx, 5*time.Second, func(ctx context.Context) error { return p.login(ctx, db) }); err != nil {
			return fmt.Errorf("cannot log in as %s to %s over TCP: %w", pgRole, db, err)
		}
	}
	return nil
}

// Stop stops the cluster if this package started it.
func (p *Postgres) Stop(ctx context.Context) (bool, error) {
	return locked(ctx, p.s.State, p.Name(), func() (bool, error) {
		b, err := os.ReadFile(p.marker())
		if err != nil {
			return false, nil
		}
		defer os.Remove(p.marker())
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return false, fmt.Errorf("%s: bad contents %q", p.marker(), b)
		}
		c, err := p.cluster(ctx)
		if err != nil || c.version != f[0] || c.name != f[1] || c.status != "online" {
			return false, err
		}
		p.s.logf("stopping PostgreSQL cluster %s/%s ...", c.version, c.name)
		_, err = command(ctx, 2*time.Minute, "/", asRoot("pg_ctlcluster", c.version, c.name, "stop")...)
		return err == nil, err
	})
}

// down stops the cluster on the port, whoever started it: SIGKILL means
// immediate mode (a crash), any other signal fast mode.
func (p *Postgres) down(ctx context.Context, sig syscall.Signal) error {
	c, err := p.cluster(ctx)
	if err != nil {
		return err
	}
	if c.name == "" {
		return fmt.Errorf("no cluster on port %d", p.port)
	}
	mode := "fast"
	if sig == syscall.SIGKILL {
		mode = "immediate"
	}
	_, err = command(ctx, 2*time.Minute, "/", asRoot("pg_ctlcluster", c.version, c.name, "stop", "-m", mode)...)
	return err
}

// Status says whether the project's role can log in, and which cluster
// serves the port.
func (p *Postgres) Status(ctx context.Context) Status {
	st := Status{Name: p.Name(), Addr: p.Addr()}
	st.Err = p.Check(ctx)
	st.Up = st.Err == nil
	c, err := p.cluster(ctx)
	if err == nil && c.name != "" {
		st.What = fmt.Sprintf("cluster %s/%s", c.version, c.name)
		st.Log = c.log
		st.Stop = asCommand(asRoot("pg_ctlcluster", c.version, c.name, "stop"))
		if b, err := os.ReadFile(p.marker()); err == nil && strings.Join(strings.Fields(string(b)), " ") == c.version+" "+c.name {
			st.Owned = true
		}
	}
	return st
}

func asCommand(argv []string) string { return strings.Join(argv, " ") }
