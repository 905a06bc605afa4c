package rain

import (
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) *Env {
	return &Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func TestEnvDefaultsAndValues(t *testing.T) {
	e := envOf(map[string]string{"N": "42", "D": "250ms", "L": " a, ,b ", "A": "127.0.0.1:99", "EMPTY": " "})
	if e.Int("N", 1, 0, 100) != 42 || e.Int("MISSING", 7, 0, 100) != 7 {
		t.Error("Int")
	}
	if e.Duration("D", time.Second, 0, time.Minute) != 250*time.Millisecond || e.Duration("MISSING", time.Second, 0, time.Minute) != time.Second {
		t.Error("Duration")
	}
	if l := e.List("L", ""); len(l) != 2 || l[0] != "a" || l[1] != "b" {
		t.Errorf("List: %q", l)
	}
	if e.Addr("A", ":1") != "127.0.0.1:99" || e.String("EMPTY", "def") != "def" {
		t.Error("Addr/String")
	}
	if err := e.Err(); err != nil {
		t.Error(err)
	}
}

// TestEnvErrorsNameTheVariable: every bad value is reported at once, each
// with its variable's name.
func TestEnvErrorsNameTheVariable(t *testing.T) {
	e := envOf(map[string]string{"RING_SIZE": "lots", "BATCH_WAIT": "-5s", "PORT_ADDR": "nohost", "BIG": "1000"})
	e.Int("RING_SIZE", 1, 1, 10)
	e.Int("BIG", 1, 1, 10)
	e.Duration("BATCH_WAIT", time.Second, 0, time.Minute)
	e.Addr("PORT_ADDR", ":1")
	e.Required("ADMIN_TOKEN", "merchant token")
	err := e.Err()
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"RING_SIZE", "BIG", "BATCH_WAIT", "PORT_ADDR", "ADMIN_TOKEN"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestParsers(t *testing.T) {
	for s, ok := range map[string]bool{"1": true, "20": true, "1000000000": true, "0": false, "05": false,
		"-1": false, "+1": false, "1000000001": false, "1.0": false, "": false, "99999999999": false} {
		if _, err := ParseAmount(s); (err == nil) != ok {
			t.Errorf("ParseAmount(%q): %v", s, err)
		}
	}
	for s, want := range map[string]int64{"1": 1, "9223372036854775807": 1<<63 - 1, "9223372036854775808": 0, "0": 0, "01": 0, "x": 0, "": 0} {
		if got, ok := ParseCampaignID([]byte(s)); got != want || ok != (want != 0) {
			t.Errorf("ParseCampaignID(%q): %d %v", s, got, ok)
		}
	}
	for s, ok := range map[string]bool{"user-123": true, "红包": true, "a b": false, "a\tb": false, "\x7f": false,
		"a\u00a0b": false, "a\u2028": false, "\xff": false, "": false, strings.Repeat("x", 128): true, strings.Repeat("x", 129): false} {
		if ValidUserID([]byte(s)) != ok {
			t.Errorf("ValidUserID(%q) != %v", s, ok)
		}
	}
}
