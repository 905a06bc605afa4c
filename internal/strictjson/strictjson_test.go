package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

func TestParse(t *testing.T) {
	var p fastjson.Parser
	for _, ok := range []string{
		`{}`, ` {"a":1} `, "{\"a\":\t-0.5e+10,\n\"b\":[true,false,null,{}]}", `{"a":"\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t"}`,
		`{"红":"包"}`, `{"a":0}`, `{"a":-0}`, `{"a":1E5}`, `{"a":[1,2.5,"x"]}`,
	} {
		if _, err := Parse(&p, []byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for body, want := range map[string]error{
		``: ErrSyntax, `{`: ErrSyntax, `{"a":1}}`: ErrSyntax, `{"a":1} {}`: ErrSyntax, `{"a":1,}`: ErrSyntax,
		`{"a":01}`: ErrSyntax, `{"a":+1}`: ErrSyntax, `{"a":1.}`: ErrSyntax, `{"a":.5}`: ErrSyntax, `{"a":1e}`: ErrSyntax,
		`{"a":NaN}`: ErrSyntax, `{"a":inf}`: ErrSyntax, `{"a":-Inf}`: ErrSyntax, `{"a":1.2.3}`: ErrSyntax, `{"a":--1}`: ErrSyntax,
		`{"a":tru}`: ErrSyntax, `{"a":truex}`: ErrSyntax, `{"a":nul}`: ErrSyntax, `{a:1}`: ErrSyntax, `{'a':1}`: ErrSyntax,
		`{"a":"a\qb"}`: ErrSyntax, `{"a":"\ud800"}`: ErrSyntax, `{"a":"\udc00"}`: ErrSyntax, `{"a":"\ud800\u0041"}`: ErrSyntax,
		`{"a":"\u12g4"}`: ErrSyntax, `{"a":"\u12"}`: ErrSyntax, `{"a":"\x41"}`: ErrSyntax, "{\"a\":\"\x01\"}": ErrSyntax,
		"{\"a\":\"\xff\"}": ErrSyntax, "{\"a\":1}\x00": ErrSyntax, "\xef\xbb\xbf{}": ErrSyntax, `{"a":"x`: ErrSyntax,
		`[]`: ErrNotObject, `1`: ErrNotObject, `"x"`: ErrNotObject, `null`: ErrNotObject,
	} {
		if _, err := Parse(&p, []byte(body)); !errors.Is(err, want) {
			t.Errorf("%q: %v, want %v", body, err, want)
		}
	}
}

func TestFieldsAndInt(t *testing.T) {
	var p fastjson.Parser
	names := []string{"amount", "count"}
	o, err := Parse(&p, []byte(`{"count":3,"amount":20}`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]int64{}
	seen, err := Fields(o, names, func(i int, v *fastjson.Value) error {
		n, ok := Int(v)
		if !ok {
			t.Errorf("%s: not an integer", names[i])
		}
		got[i] = n
		return nil
	})
	if err != nil || seen != 3 || got[0] != 20 || got[1] != 3 {
		t.Errorf("seen %b %v %v", seen, got, err)
	}
	for body, want := range map[string]string{
		`{"amount":1,"amount":2}`: `field "amount" twice`,
		`{"Amount":1}`:            `unknown field "Amount"`,
		`{"amount":1,"x":1}`:      `unknown field "x"`,
	} {
		o, err := Parse(&p, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		_, err = Fields(o, names, func(int, *fastjson.Value) error { return nil })
		var fe *FieldError
		if !errors.As(err, &fe) || err.Error() != want {
			t.Errorf("%s: %v, want %s", body, err, want)
		}
	}
	stop := errors.New("stop")
	o, _ = Parse(&p, []byte(`{"amount":1,"count":2}`))
	calls := 0
	if _, err := Fields(o, names, func(int, *fastjson.Value) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("an error of fn: %v after %d calls", err, calls)
	}
	for in, want := range map[string]int64{`0`: 0, `7`: 7, `-3`: -3, `9223372036854775807`: 1<<63 - 1} {
		o, _ := Parse(&p, []byte(`{"n":`+in+`}`))
		if n, ok := Int(o.Get("n")); !ok || n != want {
			t.Errorf("%s: %d %v", in, n, ok)
		}
	}
	for _, in := range []string{`4.0`, `4e0`, `"4"`, `null`, `true`, `9223372036854775808`, `[4]`} {
		o, _ := Parse(&p, []byte(`{"n":`+in+`}`))
		if n, ok := Int(o.Get("n")); ok {
			t.Errorf("%s: accepted as %d", in, n)
		}
	}
	if _, ok := Int(nil); ok {
		t.Error("a missing value is an integer")
	}
}

// FuzzParse: what Parse accepts is valid UTF-8 JSON, one object, which
// encoding/json reads; what encoding/json calls a valid object of valid
// UTF-8 with no lone surrogate escape, Parse accepts.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":01}`, `{"a":"\ud800"}`, `{"a":[1,{"b":null}]}`, "{\"a\":\"\xff\"}", `{"a":NaN}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p fastjson.Parser
		_, err := Parse(&p, b)
		var m map[string]any
		std := json.Valid(b) && utf8.Valid(b) && json.Unmarshal(b, &m) == nil && m != nil
		switch {
		case err == nil && !std:
			t.Errorf("accepted %q, which encoding/json does not read as one object", b)
		case err != nil && std && !strings.Contains(string(b), `\u`) && len(b) < 1<<16:
			t.Errorf("refused %q (%v), a valid object", b, err)
		}
	})
}

var openBody = []byte(`{"user_id":"user-1234567890"}`)

// BenchmarkParse is an open's body through Parse; BenchmarkValid is what
// encoding/json's Valid alone costs on it.
func BenchmarkParse(b *testing.B) {
	var p fastjson.Parser
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(&p, openBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValid(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(openBody) {
			b.Fatal()
		}
	}
}

func BenchmarkLexical(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !valid(openBody) {
			b.Fatal()
		}
	}
}
