package config

import (
	"strings"
	"testing"
	"time"
)

func setOf(m map[string]string) *Set {
	return New(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

func TestDefaultsAndValues(t *testing.T) {
	s := setOf(map[string]string{"N": "42", "ZERO": "0", "D": "250ms", "L": " a, ,b ", "A": "127.0.0.1:99", "EMPTY": " ", "B": "true"})
	var (
		n, missing, zero int
		d, dmiss         time.Duration
		l                []string
		a, empty         string
		b                bool
	)
	s.Int(&n, "N", 1, 0, 100, "")
	s.Int(&missing, "MISSING", 7, 0, 100, "")
	s.Int(&zero, "ZERO", 7, 0, 100, "zero is a value, not 'the default'")
	s.Duration(&d, "D", time.Second, 0, time.Minute, "")
	s.Duration(&dmiss, "DMISS", time.Second, 0, time.Minute, "")
	s.List(&l, "L", "x", "")
	s.Addr(&a, "A", ":1", "")
	s.String(&empty, "EMPTY", "def", "")
	s.Bool(&b, "B", false, "")
	if n != 42 || missing != 7 || zero != 0 || d != 250*time.Millisecond || dmiss != time.Second ||
		len(l) != 2 || l[0] != "a" || l[1] != "b" || a != "127.0.0.1:99" || empty != "def" || !b {
		t.Errorf("got n=%d missing=%d zero=%d d=%s dmiss=%s l=%q a=%q empty=%q b=%v", n, missing, zero, d, dmiss, l, a, empty, b)
	}
	if err := s.Err(); err != nil {
		t.Error(err)
	}
	if len(s.Vars()) != 9 {
		t.Errorf("vars: %d", len(s.Vars()))
	}
}

// TestErrorsNameTheVariable: every bad value is reported at once, each
// with its variable's name, and the field keeps its default.
func TestErrorsNameTheVariable(t *testing.T) {
	s := setOf(map[string]string{"RING_SIZE": "lots", "BATCH_WAIT": "-5s", "PORT_ADDR": "nohost", "BIG": "1000", "FLAG": "maybe", "LIST": ","})
	var n, big int
	var d time.Duration
	var a, tok string
	var f bool
	var l []string
	s.Int(&n, "RING_SIZE", 1, 1, 10, "")
	s.Int(&big, "BIG", 1, 1, 10, "")
	s.Duration(&d, "BATCH_WAIT", time.Second, 0, time.Minute, "")
	s.Addr(&a, "PORT_ADDR", ":1", "")
	s.Secret(&tok, "ADMIN_TOKEN", "merchant token")
	s.Bool(&f, "FLAG", false, "")
	s.List(&l, "LIST", "a", "")
	s.Errorf("KAFKA_DLQ_TOPIC", "want a topic other than KAFKA_TOPIC")
	err := s.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"RING_SIZE", "BIG", "BATCH_WAIT", "PORT_ADDR", "ADMIN_TOKEN", "FLAG", "LIST", "KAFKA_DLQ_TOPIC"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	if n != 1 || big != 1 || d != time.Second || a != ":1" {
		t.Errorf("bad values replaced the defaults: %d %d %s %q", n, big, d, a)
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	s := Defaults()
	var d time.Duration
	var n int
	var tok string
	s.Duration(&d, "RECONCILE_LOOKBACK", 24*time.Hour, time.Minute, 10000*time.Hour, "campaigns ended longer ago are not reconciled")
	s.Int(&n, "BATCH_SIZE", 5000, 1, 100_000, "most records per transaction")
	s.Secret(&tok, "ADMIN_TOKEN", "merchant tokens")
	var b strings.Builder
	s.Usage(&b)
	for _, want := range []string{"RECONCILE_LOOKBACK  24h", "BATCH_SIZE          5000", "most records per transaction", "ADMIN_TOKEN         -"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", time.Minute: "1m", 90 * time.Minute: "1h30m",
		50 * time.Millisecond: "50ms", 15 * time.Second: "15s", 0: "0s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
