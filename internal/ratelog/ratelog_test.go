package ratelog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lines is a handler keeping what it is given, as text.
func newLogger(every time.Duration) (*Handler, *bytes.Buffer) {
	var buf bytes.Buffer
	next := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	return New(next, every), &buf
}

func emit(t *testing.T, h slog.Handler, at time.Time, level slog.Level, msg string, args ...any) {
	t.Helper()
	r := slog.NewRecord(at, level, msg, 0)
	r.Add(args...)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func TestOneLinePerIntervalPerMessage(t *testing.T) {
	h, buf := newLogger(10 * time.Second)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 { // 100 failures over 9.9 s: one line
		emit(t, h, t0.Add(time.Duration(i)*99*time.Millisecond), slog.LevelWarn, "fetch failed", "partition", i)
	}
	emit(t, h, t0.Add(time.Second), slog.LevelError, "write failed")   // another key
	emit(t, h, t0.Add(2*time.Second), slog.LevelError, "fetch failed") // another level: another key
	emit(t, h, t0.Add(3*time.Second), slog.LevelInfo, "batch committed")
	emit(t, h, t0.Add(4*time.Second), slog.LevelInfo, "batch committed") // below Warn: never limited
	emit(t, h, t0.Add(10*time.Second), slog.LevelWarn, "fetch failed", "partition", 100)
	emit(t, h, t0.Add(11*time.Second), slog.LevelWarn, "fetch failed", "partition", 101)
	emit(t, h, t0.Add(25*time.Second), slog.LevelWarn, "fetch failed", "partition", 102)

	want := []string{
		`level=WARN msg="fetch failed" partition=0`,
		`level=ERROR msg="write failed"`,
		`level=ERROR msg="fetch failed"`,
		`level=INFO msg="batch committed"`,
		`level=INFO msg="batch committed"`,
		`level=WARN msg="fetch failed" partition=100 suppressed=99`,
		`level=WARN msg="fetch failed" partition=102 suppressed=1`,
	}
	if got := strings.Split(strings.TrimSpace(buf.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDerivedLoggersShareLimits: With adds attributes, not a new budget.
func TestDerivedLoggersShareLimits(t *testing.T) {
	h, buf := newLogger(time.Hour)
	l := slog.New(h)
	l.With("component", "a").Warn("down")
	l.WithGroup("g").Warn("down")
	l.Warn("down")
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("%d lines, want 1:\n%s", n, buf)
	}
}

// TestKeysBounded: past maxKeys distinct messages, idle keys are forgotten,
// and records pass rather than being held back without a count.
func TestKeysBounded(t *testing.T) {
	h, buf := newLogger(time.Second)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 * maxKeys {
		emit(t, h, t0, slog.LevelWarn, fmt.Sprintf("m%d", i))
	}
	if n := strings.Count(buf.String(), "\n"); n != 3*maxKeys {
		t.Errorf("%d lines for %d distinct messages", n, 3*maxKeys)
	}
	if len(h.s.keys) > maxKeys {
		t.Errorf("%d keys tracked, want at most %d", len(h.s.keys), maxKeys)
	}
	// A second later the old keys are idle: they make room for new ones.
	emit(t, h, t0.Add(2*time.Second), slog.LevelWarn, "new")
	if _, ok := h.s.keys[slog.LevelWarn.String()+"\x00new"]; !ok {
		t.Error("a new key found no room after the others went idle")
	}
}

func TestConcurrent(t *testing.T) {
	h, buf := newLogger(time.Hour)
	l := slog.New(h)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				l.Error("same failure")
			}
		})
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("%d lines from 8000 identical errors, want 1", n)
	}
}
