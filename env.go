package rain

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Env reads configuration from environment variables. Each getter takes the
// variable's name and its default; a value that does not parse or is out of
// range is recorded, and Err reports all of them at once, each naming its
// variable, so a misconfigured process fails fast at start-up.
type Env struct {
	Lookup func(string) (string, bool) // os.LookupEnv unless set (tests)
	errs   []error
}

func (e *Env) get(name string) (string, bool) {
	lookup := e.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (e *Env) fail(name, v, want string) {
	e.errs = append(e.errs, fmt.Errorf("%s=%q: want %s", name, v, want))
}

// String returns the variable's value, or def when unset or empty.
func (e *Env) String(name, def string) string {
	if v, ok := e.get(name); ok {
		return v
	}
	return def
}

// Required returns the variable's value and records an error when unset.
func (e *Env) Required(name, what string) string {
	v, ok := e.get(name)
	if !ok {
		e.errs = append(e.errs, fmt.Errorf("%s is required: %s", name, what))
	}
	return v
}

// List returns the comma-separated values of the variable, empty items dropped.
func (e *Env) List(name, def string) []string {
	var out []string
	for _, s := range strings.Split(e.String(name, def), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Int returns the variable as an integer in [min, max], or def when unset.
func (e *Env) Int(name string, def, min, max int) int {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		e.fail(name, v, fmt.Sprintf("an integer in [%d, %d]", min, max))
		return def
	}
	return n
}

// Duration returns the variable as a Go duration ("250ms", "30s") in
// [min, max], or def when unset.
func (e *Env) Duration(name string, def, min, max time.Duration) time.Duration {
	v, ok := e.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min || d > max {
		e.fail(name, v, fmt.Sprintf("a duration in [%s, %s]", min, max))
		return def
	}
	return d
}

// Addr returns the variable as a host:port listen or dial address.
func (e *Env) Addr(name, def string) string {
	v := e.String(name, def)
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		e.fail(name, v, "host:port")
		return def
	}
	if p, err := strconv.Atoi(v[i+1:]); err != nil || p < 0 || p > 65535 {
		e.fail(name, v, "host:port with a port in [0, 65535]")
		return def
	}
	return v
}

// Err returns every configuration error recorded so far, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }
