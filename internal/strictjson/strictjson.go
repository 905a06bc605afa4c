// Package strictjson reads a body that must be one JSON object, strictly:
// the one way the api reads the open, create and add-stock bodies and the
// consumer reads claim events. fastjson parses (a pooled parser allocates
// nothing, which the open path needs); this package adds what fastjson
// leaves out of RFC 8259 and what the API promises on top of it:
//
//   - the text is valid JSON: fastjson accepts numbers such as 01, +1, 1e,
//     NaN or Inf, keeps invalid string escapes (a\qb, a lone \ud800) as
//     text, and takes control characters inside strings;
//   - the text is UTF-8;
//   - it is exactly one object (nothing after it but white space);
//   - field names are matched exactly (encoding/json would take "NAME" for
//     "name"), each at most once (encoding/json keeps the last), and no
//     other field appears (Fields);
//   - integers are canonical where a count or an id is asked (Int): 4,
//     not 4.0, 4e0 or "4".
//
// The lexical check is written here rather than taken from encoding/json's
// Valid because it is on the open path: on an open's body it costs about
// a sixth of what Valid does (BenchmarkLexical against BenchmarkValid).
package strictjson

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

var (
	// ErrSyntax: the text is not valid JSON (or not UTF-8).
	ErrSyntax = errors.New("not valid JSON")
	// ErrNotObject: the text is valid JSON but not one object.
	ErrNotObject = errors.New("not a JSON object")
)

// FieldError is a field name the object must not have: one not asked
// for, or one given twice.
type FieldError struct {
	Name  string
	Twice bool
}

func (e *FieldError) Error() string {
	if e.Twice {
		return fmt.Sprintf("field %.64q twice", e.Name)
	}
	return fmt.Sprintf("unknown field %.64q", e.Name)
}

// Parse returns the object b holds, parsed by p: valid until p parses
// again. Errors are ErrSyntax or ErrNotObject.
func Parse(p *fastjson.Parser, b []byte) (*fastjson.Object, error) {
	if !valid(b) {
		return nil, ErrSyntax
	}
	v, err := p.ParseBytes(b)
	if err != nil {
		return nil, ErrSyntax
	}
	o, err := v.Object()
	if err != nil {
		return nil, ErrNotObject
	}
	return o, nil
}

// Fields calls fn with each field of o in order and the index of its name
// in names (at most 64 names). A name not in names, or one given twice, is
// a *FieldError; an error of fn stops the walk and is returned. It reports
// which names were seen (bit i for names[i]).
func Fields(o *fastjson.Object, names []string, fn func(i int, v *fastjson.Value) error) (seen uint64, err error) {
	o.Visit(func(key []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		i := 0
		for i < len(names) && names[i] != string(key) {
			i++
		}
		switch {
		case i == len(names):
			err = &FieldError{Name: string(key)}
		case seen&(1<<i) != 0:
			err = &FieldError{Name: names[i], Twice: true}
		default:
			seen |= 1 << i
			err = fn(i, v)
		}
	})
	return seen, err
}

// Int returns v as an integer written canonically: a JSON number with no
// fraction, no exponent and no leading zero, within int64. ok is false for
// anything else (4.0, 4e0, "4", null, 9223372036854775808).
func Int(v *fastjson.Value) (n int64, ok bool) {
	if v == nil || v.Type() != fastjson.TypeNumber {
		return 0, false
	}
	var buf [24]byte
	raw := v.MarshalTo(buf[:0]) // a number's text as sent
	for i, c := range raw {
		if (c < '0' || c > '9') && !(i == 0 && c == '-') {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// valid reports whether b is JSON text as RFC 8259 spells it, as far as
// fastjson does not check it: strings (escapes, no control characters),
// numbers, the literals, and UTF-8 throughout. Structure (brackets,
// commas, colons, one value) is fastjson's.
func valid(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			n := stringLen(b[i:])
			if n < 0 {
				return false
			}
			i += n
		case c == '-' || c >= '0' && c <= '9':
			n := numberLen(b[i:])
			if n < 0 {
				return false
			}
			i += n
		case c == 't' || c == 'f' || c == 'n':
			n := literalLen(b[i:])
			if n < 0 {
				return false
			}
			i += n
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '{' || c == '}' || c == '[' || c == ']' || c == ':' || c == ',':
			i++ // white space and structure (whose order fastjson checks)
		default:
			return false // a byte that starts no token outside a string
		}
	}
	return true
}

// stringLen is the length of the JSON string at the start of b (b[0] is
// the opening quote), or -1 when it is not valid: an unclosed string, a
// control character, invalid UTF-8, an invalid escape, or a surrogate
// escape that is not a high one followed at once by a low one.
func stringLen(b []byte) int {
	for i := 1; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			return i + 1
		case c < ' ':
			return -1
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return -1
			}
			i += size
		case c != '\\':
			i++
		case i+1 >= len(b):
			return -1
		default:
			n := escapeLen(b[i:])
			if n < 0 {
				return -1
			}
			i += n
		}
	}
	return -1
}

// escapeLen is the length of the escape at the start of b (b[0] is the
// backslash), a surrogate pair's two escapes together, or -1.
func escapeLen(b []byte) int {
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2
	case 'u':
	default:
		return -1
	}
	r, ok := hex4(b[2:])
	switch {
	case !ok || r >= 0xdc00 && r <= 0xdfff: // a low surrogate with no high one before it
		return -1
	case r < 0xd800 || r > 0xdbff:
		return 6
	}
	if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
		return -1
	}
	if lo, ok := hex4(b[8:]); !ok || lo < 0xdc00 || lo > 0xdfff {
		return -1
	}
	return 12
}

// hex4 decodes four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// numberLen is the length of the JSON number at the start of b, or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, followed by no other
// number character.
func numberLen(b []byte) int {
	i := 0
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := digits(b, i); j > i {
			i = j
		} else {
			return -1
		}
	}
	if i < len(b) && (b[i] >= '0' && b[i] <= '9' || b[i] == '.' || b[i] == '-' || b[i] == '+' || b[i] == 'e' || b[i] == 'E') {
		return -1 // 01, 1.2.3, 1e5e5
	}
	return i
}

// digits is the index after the run of digits that starts at i.
func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// literalLen is the length of true, false or null at the start of b, or -1.
func literalLen(b []byte) int {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(b) >= len(lit) && string(b[:len(lit)]) == lit {
			if len(b) > len(lit) && isWord(b[len(lit)]) {
				return -1
			}
			return len(lit)
		}
	}
	return -1
}

func isWord(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
