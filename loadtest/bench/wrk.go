package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// WrkResult is the BENCH_JSON line that loadtest/wrk/bench.lua prints.
type WrkResult struct {
	Requests   int64              `json:"requests"`
	DurationUS int64              `json:"duration_us"`
	Bytes      int64              `json:"bytes"`
	Errors     map[string]int64   `json:"errors"`
	LatencyUS  map[string]float64 `json:"latency_us"`
	Statuses   map[string]int64   `json:"statuses"`
	// Reused counts the requests of mode tokens that repeated a user, its
	// thread's slice of the token file used up.
	Reused int64 `json:"reused"`
}

// Load is one wrk run of loadtest/wrk/bench.lua.
type Load struct {
	URL         string
	Mode        string // get, unique, fixed or tokens (see bench.lua)
	Prefix      string // user id prefix
	Users       int    // fixed mode: how many users
	Tokens      string // tokens mode: the file of users and their tokens
	Threads     int
	Connections int
	Duration    time.Duration
	Output      string // file for wrk's whole output
}

// args are wrk's command line for l, without the program name.
func (l Load) args(script string) []string {
	secs := max(1, int(l.Duration.Round(time.Second)/time.Second))
	a := []string{"-t" + strconv.Itoa(l.Threads), "-c" + strconv.Itoa(l.Connections), "-d" + strconv.Itoa(secs) + "s",
		"--timeout", "2s", "--latency", "-s", script, l.URL, "--", l.Mode}
	switch l.Mode {
	case "fixed":
		a = append(a, l.Prefix, strconv.Itoa(l.Users))
	case "tokens":
		a = append(a, l.Tokens, strconv.Itoa(l.Threads))
	default:
		a = append(a, l.Prefix)
	}
	return a
}

// runWrk runs wrk for l and returns its result and the CPU seconds wrk used
// (it shares the cores with what it measures). It gives wrk 30 s beyond its
// duration, then interrupts it.
func runWrk(ctx context.Context, script string, l Load) (WrkResult, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.Duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wrk", l.args(script)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if l.Output != "" {
		if werr := os.WriteFile(l.Output, out.Bytes(), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	var cpu float64
	if ps := cmd.ProcessState; ps != nil {
		cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	if err != nil {
		return WrkResult{}, cpu, fmt.Errorf("wrk %s: %w: %s", l.URL, err, lastLines(out.String(), 3))
	}
	w, err := parseWrk(out.String())
	return w, cpu, err
}

// parseWrk finds the BENCH_JSON line in wrk's output.
func parseWrk(out string) (WrkResult, error) {
	var w WrkResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "BENCH_JSON "); ok {
			if err := json.Unmarshal([]byte(line), &w); err != nil {
				return w, fmt.Errorf("wrk: BENCH_JSON line: %w", err)
			}
			if w.DurationUS <= 0 {
				return w, errors.New("wrk: BENCH_JSON line without a duration")
			}
			return w, nil
		}
	}
	return w, fmt.Errorf("wrk printed no BENCH_JSON line: %s", lastLines(out, 3))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
