package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redpacket/rain/internal/dev/stack"
)

// clkTck is USER_HZ, the unit of the tick counts in /proc: 100 on every
// Linux architecture Go supports (the kernel scales to it whatever HZ is).
const clkTck = 100

// Snapshot is the CPU the machine and each part of the stack had used up to
// a moment, in ticks; RedisCPU is Redis's own count (INFO used_cpu_sys +
// used_cpu_user, seconds).
type Snapshot struct {
	At       time.Time
	Machine  int64            // busy ticks of all CPUs
	Ticks    map[string]int64 // part → ticks of its processes
	RedisCPU float64
	// PG is the ticks of each PostgreSQL process that works for the bench's
	// database: its backends, and the WAL writer, checkpointer and
	// background writer (the cluster is shared with the tests).
	PG map[int]int64
}

// procTicks is the CPU a process used, in ticks: user and system time of
// its own and of its reaped children (so PostgreSQL's postmaster counts the
// backends that have exited).
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return statTicks(b)
}

// statTicks reads utime+stime+cutime+cstime from a /proc/<pid>/stat line.
func statTicks(stat []byte) (int64, error) {
	_, rest, ok := cutLast(stat, ')') // the command may contain spaces and ')'
	f := strings.Fields(string(rest))
	if !ok || len(f) < 15 {
		return 0, fmt.Errorf("unexpected /proc stat line %.60q", stat)
	}
	var t int64
	for _, s := range f[11:15] { // fields 14-17 of the line: utime stime cutime cstime
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %q: %w", s, err)
		}
		t += v
	}
	return t, nil
}

// statPPid reads the parent pid from a /proc/<pid>/stat line.
func statPPid(stat []byte) int {
	_, rest, _ := cutLast(stat, ')')
	f := strings.Fields(string(rest))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

func cutLast(b []byte, c byte) (before, after []byte, ok bool) {
	i := bytes.LastIndexByte(b, c)
	if i < 0 {
		return b, nil, false
	}
	return b[:i], b[i+1:], true
}

// children lists the live child processes of ppid.
func children(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && statPPid(b) == ppid {
			out = append(out, pid)
		}
	}
	return out
}

// machineBusy is the busy ticks of all CPUs from /proc/stat: user, nice,
// system, irq and softirq.
func machineBusy() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return statBusy(b)
}

func statBusy(b []byte) (int64, error) {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat line %.60q", line)
	}
	var t int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", f[i], err)
		}
		t += v
	}
	return t, nil
}

// ticksOf sums the ticks of pids; a pid that is gone counts 0.
func ticksOf(pids []int) int64 {
	var t int64
	for _, pid := range pids {
		if v, err := procTicks(pid); err == nil {
			t += v
		}
	}
	return t
}

// Cores turns two snapshots around a phase into the cores each part used:
// the parts, "wrk" (wrkCPU seconds), "machine" (all busy time) and "other"
// (the machine's busy time none of the parts account for: other users, the
// OS). A part whose count went down restarted in between and is left out.
func Cores(before, after Snapshot, wrkCPU float64) map[string]float64 {
	secs := after.At.Sub(before.At).Seconds()
	if secs <= 0 {
		return nil
	}
	cpu := map[string]float64{}
	known := 0.0
	for k, a := range after.Ticks {
		b, ok := before.Ticks[k]
		if !ok || a < b {
			continue
		}
		cpu[k] = float64(a-b) / clkTck / secs
		known += cpu[k]
	}
	if wrkCPU > 0 {
		cpu["wrk"] = wrkCPU / secs
		known += cpu["wrk"]
	}
	if after.Machine > 0 && after.Machine >= before.Machine {
		cpu["machine"] = float64(after.Machine-before.Machine) / clkTck / secs
		cpu["other"] = max(0, cpu["machine"]-known)
	}
	return cpu
}

// cpuSeconds is the CPU part used between two snapshots, in seconds (-1: not
// measured, or it restarted).
func cpuSeconds(before, after Snapshot, part string) float64 {
	b, ok1 := before.Ticks[part]
	a, ok2 := after.Ticks[part]
	if !ok1 || !ok2 || a < b {
		return -1
	}
	return float64(a-b) / clkTck
}

// redisCPU reads used_cpu_sys + used_cpu_user (seconds) from the text of
// Redis's INFO cpu.
func redisCPU(info string) (float64, error) {
	var sum float64
	found := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_cpu_sys" && k != "used_cpu_user") {
			continue
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("INFO cpu: %s: %w", k, err)
		}
		sum += x
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("INFO cpu: no used_cpu_sys and used_cpu_user in %.80q", info)
	}
	return sum, nil
}

// servicePids finds the processes of Redis, PostgreSQL and Kafka (by the
// port each listens on) and returns the function that lists them per part
// at a snapshot: PostgreSQL is the postmaster and its live backends. A
// service whose process cannot be seen is left out of the CPU table.
func servicePids(st *stack.Stack) func() map[string][]int {
	pids := map[string]int{}
	for _, svc := range st.Services() {
		pid, err := stack.ListenerPid(svc.Addr())
		if err != nil {
			logf("WARNING: no CPU figures for %s: %v", svc.Name(), err)
			continue
		}
		pids[svc.Name()] = pid
	}
	return func() map[string][]int {
		m := map[string][]int{}
		for name, pid := range pids {
			m[name] = []int{pid}
			if name == "postgres" {
				m[name] = append(m[name], children(pid)...)
			}
		}
		return m
	}
}

// pgSeconds is the CPU the processes of Snapshot.PG used between two
// snapshots, in seconds: a process that started in between counts whole,
// one that ended in between is not seen (the consumer's connections stay).
func pgSeconds(before, after Snapshot) float64 {
	var t int64
	for pid, a := range after.PG {
		if b, ok := before.PG[pid]; ok && a >= b {
			t += a - b
		} else if !ok {
			t += a
		}
	}
	return float64(t) / clkTck
}
