// Package ratelog keeps a failure that repeats from flooding the logs: a
// slog.Handler that passes at most one warning or error per message every
// interval, and adds to the next one passed how many it held back.
//
//	failLog := ratelog.Logger(log, 10*time.Second)
//	failLog.Warn("kafka fetch error", "err", err) // once per 10 s, then suppressed=N
//
// Records below Warn pass unchanged. The key is the level and the message,
// not the attributes, so a failure that names a different partition or
// campaign on each line still counts as one. Lines held back are counted,
// never stored: the count goes out with the next line of the same key, and
// the metrics of the failure stay exact.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Every is the interval of the loggers the pipeline makes.
const Every = 10 * time.Second

// maxKeys bounds the keys tracked. Keys are messages, written in the code,
// so a process has a few dozen; past the bound, keys idle for an interval
// are forgotten, and a record that still finds no room passes.
const maxKeys = 1024

// SuppressedKey is the attribute counting the lines held back since the
// last one of the same key.
const SuppressedKey = "suppressed"

// Handler limits the records of next; see the package comment.
type Handler struct {
	next slog.Handler
	s    *state
}

type state struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*entry
}

type entry struct {
	last       time.Time // when a record of the key last passed
	suppressed int       // held back since
}

// New returns a handler passing at most one record at Warn or above per
// level and message every interval to next.
func New(next slog.Handler, every time.Duration) *Handler {
	return &Handler{next: next, s: &state{every: every, keys: make(map[string]*entry)}}
}

// Logger is l with its warnings and errors limited to one per message
// every interval.
func Logger(l *slog.Logger, every time.Duration) *slog.Logger {
	return slog.New(New(l.Handler(), every))
}

// Enabled reports whether next handles records at level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle passes r to next unless a record of the same level and message
// passed less than the interval ago.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	n, ok := h.s.allow(r.Level.String()+"\x00"+r.Message, now)
	if !ok {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(SuppressedKey, n))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a handler with attrs that shares h's limits.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(attrs), s: h.s}
}

// WithGroup returns a handler with the group that shares h's limits.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), s: h.s}
}

// allow reports whether a record of key at now passes, and if so how many
// were held back before it.
func (s *state) allow(key string, now time.Time) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.keys[key]
	if !ok {
		if len(s.keys) >= maxKeys {
			s.prune(now)
		}
		if len(s.keys) >= maxKeys {
			return 0, true
		}
		s.keys[key] = &entry{last: now}
		return 0, true
	}
	if now.Sub(e.last) < s.every {
		e.suppressed++
		return 0, false
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return n, true
}

// prune forgets the keys that held nothing back in the last interval.
func (s *state) prune(now time.Time) {
	for k, e := range s.keys {
		if e.suppressed == 0 && now.Sub(e.last) >= s.every {
			delete(s.keys, k)
		}
	}
}
