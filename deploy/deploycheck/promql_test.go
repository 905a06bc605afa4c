package deploycheck

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// readString reads a quoted string starting at s[i] and returns its value
// and the index past its closing quote.
func readString(s string, i int) (string, int, error) {
	q := s[i]
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '\\' && q != '`' && j+1 < len(s):
			j++
			switch s[j] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			default:
				b.WriteByte(s[j])
			}
		case c == q:
			return b.String(), j + 1, nil
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated string")
}

// matcher is a label matcher of a selector.
type matcher struct {
	label, op, value string
}

func (m matcher) matches(v string) bool {
	switch m.op {
	case "=":
		return v == m.value
	case "!=":
		return v != m.value
	case "=~", "!~":
		re, err := regexp.Compile("^(?:" + m.value + ")$")
		if err != nil {
			return false
		}
		return re.MatchString(v) == (m.op == "=~")
	}
	return false
}

// selector is a metric name with its matchers, as found in an expression.
type selector struct {
	name     string
	matchers []matcher
}

// parsedQuery is what the checks need of a PromQL expression: the
// selectors of our metrics (rain_* and up) and the labels named by
// by/without/on/ignoring/group_left/group_right.
type parsedQuery struct {
	selectors []selector
	grouping  []string
}

var promqlKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// parsePromQL is a small lexer over the PromQL the dashboards and alerts
// use: it finds metric selectors (an identifier not followed by "(") with
// their {matchers}, and grouping label lists. Strings, durations in [...]
// and numbers are skipped. It is not a full parser: an expression it
// cannot read is reported, never passed.
func parsePromQL(expr string) (parsedQuery, error) {
	var q parsedQuery
	s := expr
	i := 0
	skipSpace := func() {
		for i < len(s) && unicode.IsSpace(rune(s[i])) {
			i++
		}
	}
	ident := func() string {
		j := i
		for i < len(s) && (s[i] == '_' || s[i] == ':' || unicode.IsLetter(rune(s[i])) || unicode.IsDigit(rune(s[i]))) {
			i++
		}
		return s[j:i]
	}
	for i < len(s) {
		c := s[i]
		switch {
		case unicode.IsSpace(rune(c)):
			i++
		case c == '"' || c == '\'' || c == '`':
			_, end, err := readString(s, i)
			if err != nil {
				return q, err
			}
			i = end
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return q, fmt.Errorf("unterminated [")
			}
			i += end + 1
		case c == '{':
			return q, fmt.Errorf("selector without a metric name at %d (not checkable)", i)
		case unicode.IsDigit(rune(c)) || (c == '.' && i+1 < len(s) && unicode.IsDigit(rune(s[i+1]))):
			for i < len(s) && (unicode.IsDigit(rune(s[i])) || strings.IndexByte(".eE+-xXabcdefABCDEFsmhdwy", s[i]) >= 0) {
				i++
			}
		case c == '_' || unicode.IsLetter(rune(c)):
			name := ident()
			skipSpace()
			if promqlKeywords[name] {
				if i < len(s) && s[i] == '(' {
					end := strings.IndexByte(s[i:], ')')
					if end < 0 {
						return q, fmt.Errorf("unterminated %s (", name)
					}
					for _, l := range strings.Split(s[i+1:i+end], ",") {
						if l = strings.TrimSpace(l); l != "" {
							q.grouping = append(q.grouping, l)
						}
					}
					i += end + 1
				}
				continue
			}
			if i < len(s) && s[i] == '(' {
				continue // a function or an aggregation
			}
			if next := regexp.MustCompile(`^(by|without)\s*\(`); next.MatchString(s[i:]) {
				continue // an aggregation with its grouping first: sum by (x) (...)
			}
			sel := selector{name: name}
			if i < len(s) && s[i] == '{' {
				i++
				for {
					skipSpace()
					if i < len(s) && s[i] == '}' {
						i++
						break
					}
					if i < len(s) && s[i] == ',' {
						i++
						continue
					}
					l := ident()
					if l == "" {
						return q, fmt.Errorf("bad matcher in %s{...} at %d", name, i)
					}
					skipSpace()
					op := ""
					for _, o := range []string{"=~", "!~", "!=", "="} {
						if strings.HasPrefix(s[i:], o) {
							op = o
							break
						}
					}
					if op == "" {
						return q, fmt.Errorf("bad operator in %s{%s...}", name, l)
					}
					i += len(op)
					skipSpace()
					if i >= len(s) {
						return q, fmt.Errorf("unterminated %s{", name)
					}
					v, end, err := readString(s, i)
					if err != nil {
						return q, err
					}
					i = end
					sel.matchers = append(sel.matchers, matcher{l, op, v})
				}
			}
			if strings.HasPrefix(name, "rain_") || name == "up" {
				q.selectors = append(q.selectors, sel)
			} else if !promqlWords[name] {
				return q, fmt.Errorf("identifier %q is neither one of our metrics (rain_*, up) nor a PromQL keyword", name)
			}
		default:
			i++ // operators, parentheses, commas
		}
	}
	return q, nil
}

// promqlWords are identifiers that are not metric names.
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "Inf": true, "nan": true, "NaN": true,
}
