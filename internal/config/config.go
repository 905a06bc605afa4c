// Package config reads a process's configuration from environment
// variables. Each knob is declared once, in one statement that names its
// variable, its default, its range and its meaning (in the spirit of a
// VictoriaMetrics flag); the same declarations give the defaults (Defaults),
// the values (New with os.LookupEnv), the -help text (Usage) and the
// configuration tables of docs/configuration.md (a test compares them).
//
// An unset or empty variable keeps the default; a value that does not parse
// or is out of range is recorded, and Err reports all of them at once, each
// naming its variable, so a misconfigured process fails fast at start-up.
// Zero is an ordinary value: where 0 means "off", the help says so.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Var is one declared variable, as -help and the docs show it.
type Var struct {
	Name    string
	Default string // as written in the environment; "" for none
	Help    string
}

// Set is the variables of one process.
type Set struct {
	lookup func(string) (string, bool)
	vars   []Var
	errs   []error
}

// New returns a set reading the environment through lookup (os.LookupEnv
// when nil).
func New(lookup func(string) (string, bool)) *Set {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &Set{lookup: lookup}
}

// Defaults returns a set that sees no variable: binding a configuration to
// it yields the defaults.
func Defaults() *Set {
	return New(func(string) (string, bool) { return "", false })
}

// Vars lists the variables declared so far, in declaration order.
func (s *Set) Vars() []Var { return s.vars }

// Err returns every configuration error recorded so far, or nil.
func (s *Set) Err() error { return errors.Join(s.errs...) }

// Errorf records a configuration error found by a check across variables.
func (s *Set) Errorf(name, format string, args ...any) {
	s.errs = append(s.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// Usage writes every variable with its default and meaning.
func (s *Set) Usage(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range s.vars {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Help)
	}
	_ = tw.Flush()
}

func (s *Set) declare(name, def, help string) (string, bool) {
	s.vars = append(s.vars, Var{Name: name, Default: def, Help: help})
	v, ok := s.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (s *Set) fail(name, v, want string) {
	s.errs = append(s.errs, fmt.Errorf("%s=%q: want %s", name, v, want))
}

// String binds *p to the variable, def when unset.
func (s *Set) String(p *string, name, def, help string) {
	*p = def
	if v, ok := s.declare(name, def, help); ok {
		*p = v
	}
}

// Secret is String for a value that must be set (no default) and is never
// printed.
func (s *Set) Secret(p *string, name, help string) {
	v, ok := s.declare(name, "", help+" (required)")
	if !ok {
		s.errs = append(s.errs, fmt.Errorf("%s is required: %s", name, help))
	}
	*p = v
}

// List binds *p to the comma-separated items of the variable (empty items
// dropped), def when unset.
func (s *Set) List(p *[]string, name, def, help string) {
	v, ok := s.declare(name, def, help)
	if !ok {
		v = def
	}
	*p = nil
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*p = append(*p, item)
		}
	}
	if len(*p) == 0 && def != "" {
		s.fail(name, v, "a comma-separated list")
	}
}

// Int binds *p to the variable as an integer in [min, max], def when unset.
func (s *Set) Int(p *int, name string, def, min, max int, help string) {
	*p = def
	v, ok := s.declare(name, strconv.Itoa(def), help)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		s.fail(name, v, fmt.Sprintf("an integer in [%d, %d]", min, max))
		return
	}
	*p = n
}

// Bool binds *p to the variable (true/false, 1/0), def when unset.
func (s *Set) Bool(p *bool, name string, def bool, help string) {
	*p = def
	v, ok := s.declare(name, strconv.FormatBool(def), help)
	if !ok {
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		s.fail(name, v, "true or false")
		return
	}
	*p = b
}

// Duration binds *p to the variable as a Go duration ("250ms", "30s") in
// [min, max], def when unset.
func (s *Set) Duration(p *time.Duration, name string, def, min, max time.Duration, help string) {
	*p = def
	v, ok := s.declare(name, formatDuration(def), help)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min || d > max {
		s.fail(name, v, fmt.Sprintf("a duration in [%s, %s]", formatDuration(min), formatDuration(max)))
		return
	}
	*p = d
}

// Addr binds *p to the variable as a host:port address, def when unset;
// with def "" the variable is optional and unset means none.
func (s *Set) Addr(p *string, name, def, help string) {
	*p = def
	v, ok := s.declare(name, def, help)
	if !ok {
		return
	}
	if err := checkAddr(v); err != nil {
		s.fail(name, v, err.Error())
		return
	}
	*p = v
}

func checkAddr(v string) error {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return errors.New("host:port")
	}
	if p, err := strconv.Atoi(v[i+1:]); err != nil || p < 0 || p > 65535 {
		return errors.New("host:port with a port in [0, 65535]")
	}
	return nil
}

// formatDuration writes "24h" rather than "24h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	switch {
	case strings.HasSuffix(s, "h0m0s"):
		return s[:len(s)-4]
	case strings.HasSuffix(s, "m0s"):
		return s[:len(s)-2]
	}
	return s
}

// Markdown writes the variables as a configuration table of the docs.
func (s *Set) Markdown(w io.Writer) {
	fmt.Fprintln(w, "| variable | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, v := range s.vars {
		def := "—"
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s |\n", v.Name, def, strings.ReplaceAll(v.Help, "|", `\|`))
	}
}

// CheckDoc reports, as an error holding the table the doc should have,
// when the Markdown table under the line heading in the Markdown text
// doc differs from the variables s declared (Markdown): a test of each
// binary keeps its table true.
func (s *Set) CheckDoc(doc, heading string) error {
	got, err := docTable(doc, heading)
	if err != nil {
		return err
	}
	var want strings.Builder
	s.Markdown(&want)
	if got != want.String() {
		return fmt.Errorf("the table under %q differs from the declared variables; want:\n%s", heading, want.String())
	}
	return nil
}

// docTable returns the Markdown table that follows the line heading in
// the Markdown text doc (the lines from "| variable" to the first line
// that is not a table row).
func docTable(doc, heading string) (string, error) {
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		return "", fmt.Errorf("no heading %q", heading)
	}
	var b strings.Builder
	for _, line := range strings.Split(doc[i+len(heading)+2:], "\n") {
		if strings.HasPrefix(line, "|") {
			b.WriteString(line + "\n")
		} else if b.Len() > 0 {
			break
		}
	}
	return b.String(), nil
}

// Default returns the configuration a Bind method declares, with no
// variable set: its defaults.
func Default[T any, PT interface {
	*T
	Bind(*Set)
}]() T {
	var c T
	PT(&c).Bind(Defaults())
	return c
}
