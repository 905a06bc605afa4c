package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresCPU is the CPU time PostgreSQL used between two readings, from
// /proc (so only for a server on this machine, in this pid namespace).
type PostgresCPU struct {
	// Backends is the CPU of the pool's own server processes: what its
	// statements cost.
	Backends time.Duration
	// Server is Backends plus the CPU of the server's background processes
	// (postmaster, WAL writer, checkpointer, background writer, autovacuum
	// launcher and the workers alive at the end): what the statements cost
	// the server, without the other clients' backends of a shared server.
	Server time.Duration
	// Measured is false where the server's processes cannot be read here
	// (another machine or pid namespace): the durations are then zero.
	Measured bool
}

// Report reports c per row as three benchmark metrics: pg-cpu-µs/row
// (Server) and pg-backend-µs/row (Backends), in microseconds, and
// rows/pg-cpu-s, the rows a second of Server's CPU wrote (what one core
// of PostgreSQL sustains).
func (c PostgresCPU) Report(b *testing.B, rows int) {
	if !c.Measured || rows <= 0 || c.Server <= 0 {
		return
	}
	b.ReportMetric(float64(c.Server.Nanoseconds())/1e3/float64(rows), "pg-cpu-µs/row")
	b.ReportMetric(float64(c.Backends.Nanoseconds())/1e3/float64(rows), "pg-backend-µs/row")
	b.ReportMetric(float64(rows)/c.Server.Seconds(), "rows/pg-cpu-s")
}

// MeasurePostgresCPU starts measuring the CPU the server of db spends and
// returns the function that ends the measurement. Both must be called while
// no connection of db is in use (around the timed loop of a benchmark).
func MeasurePostgresCPU(tb testing.TB, db *pgxpool.Pool) func() PostgresCPU {
	tb.Helper()
	own, background := serverPids(tb, db)
	if comm, err := os.ReadFile("/proc/" + strconv.Itoa(own[0]) + "/comm"); err != nil || string(bytes.TrimSpace(comm)) != "postgres" {
		tb.Logf("PostgreSQL CPU not measured: backend %d is not a postgres process on this machine (%q, %v)", own[0], comm, err)
		return func() PostgresCPU { return PostgresCPU{} }
	}
	own0, background0 := cpuOf(own), cpuOf(background)
	return func() PostgresCPU {
		tb.Helper()
		own, background := serverPids(tb, db)
		// A process started meanwhile counts from zero; one gone is lost.
		c := PostgresCPU{Measured: true}
		for pid, t := range cpuOf(own) {
			c.Backends += t - own0[pid]
		}
		c.Server = c.Backends
		for pid, t := range cpuOf(background) {
			c.Server += t - background0[pid]
		}
		return c
	}
}

// serverPids are the server pids of db's idle connections (at least one),
// and those of the server's other processes that are not client backends:
// the postmaster (the parent of a backend) and the background processes.
func serverPids(tb testing.TB, db *pgxpool.Pool) (own, background []int) {
	tb.Helper()
	ctx := context.Background()
	conns := db.AcquireAllIdle(ctx)
	if len(conns) == 0 {
		c, err := db.Acquire(ctx)
		if err != nil {
			tb.Fatalf("postgres: %v", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		own = append(own, int(c.Conn().PgConn().PID()))
	}
	// backend_type reads NULL for the processes of other roles without
	// pg_read_all_stats: the background processes, to an unprivileged role.
	rows, _ := conns[0].Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE backend_type IS DISTINCT FROM 'client backend' AND pid IS NOT NULL`)
	var pid int
	_, err := pgx.ForEachRow(rows, []any{&pid}, func() error {
		background = append(background, pid)
		return nil
	})
	for _, c := range conns {
		c.Release()
	}
	if err != nil {
		tb.Fatalf("postgres: pg_stat_activity: %v", err)
	}
	if postmaster, err := ppid(own[0]); err == nil {
		background = append(background, postmaster)
	}
	return own, background
}

// clkTck is USER_HZ, the unit of the tick counts in /proc/<pid>/stat: 100
// on every Linux architecture Go supports.
const clkTck = 100

// cpuOf reads the CPU time each pid ran (/proc/<pid>/schedstat, in ns;
// utime+stime of /proc/<pid>/stat, in ticks, where the kernel keeps no
// schedstat); a pid that is gone is left out.
func cpuOf(pids []int) map[int]time.Duration {
	m := make(map[int]time.Duration, len(pids))
	for _, pid := range pids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/schedstat"); err == nil {
			if f := bytes.Fields(b); len(f) > 0 {
				if ns, err := strconv.ParseInt(string(f[0]), 10, 64); err == nil {
					m[pid] = time.Duration(ns)
					continue
				}
			}
		}
		if f, err := statFields(pid); err == nil && len(f) >= 13 {
			m[pid] = ticks(f[11]) + ticks(f[12]) // utime, stime
		}
	}
	return m
}

func ticks(field []byte) time.Duration {
	v, _ := strconv.ParseInt(string(field), 10, 64)
	return time.Duration(v) * time.Second / clkTck
}

// statFields are the fields of /proc/<pid>/stat after the command (which
// may hold spaces and parentheses): field 3 of the line is the first.
func statFields(pid int) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	return bytes.Fields(b[i+1:]), nil
}

func ppid(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return strconv.Atoi(string(f[1]))
}
