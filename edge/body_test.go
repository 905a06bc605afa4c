package edge

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/redpacket/rain"
)

// parse runs parseOpenBody with a pooled parser, as the open path does.
func parse(body []byte) (string, error) {
	p := openParsers.Get()
	defer openParsers.Put(p)
	u, err := parseOpenBody(p, body)
	return string(u), err
}

func TestParseOpenBody(t *testing.T) {
	good := map[string]string{
		`{"user_id":"user-123"}`:      "user-123",
		` { "user_id" : "a" } `:       "a",
		`{"user_id":"\u00e9t\u00e9"}`: "été",
		`{"user_id":"quote\"back\\"}`: `quote"back\`,
		`{"user_id":"红包"}`:            "红包",
		`{"user_id":"\ud83d\ude00"}`:  "😀",
		`{"user_id":"a\/b"}`:          "a/b",
		`{"user\u005fid":"a"}`:        "a",
	}
	for body, want := range good {
		got, err := parse([]byte(body))
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", body, got, err, want)
		}
	}
	for _, body := range []string{``, `{}`, `{"user_id":"a b"}`, `{"user":"a"}`, "{\"user_id\":\"\xff\"}",
		// Invalid escapes and lone surrogates: fastjson alone keeps them as text.
		`{"user_id":"a\qb"}`, `{"user_id":"a\u12"}`, `{"user_id":"a\u12g4"}`, `{"user_id":"\ud800"}`,
		`{"user_id":"\udc00"}`, `{"user_id":"\ud800\u0041"}`, `{"user_id":"\ud83d\ud83d"}`, `{"user_id":"a\`,
		`{"user_id":"a\x41"}`, `{"user_id":"a\'"}`, `{"user_id":"\ud83d"}`, `{"user_id":"\ud83dx"}`} {
		if got, err := parse([]byte(body)); err == nil {
			t.Errorf("%s: accepted as %q", body, got)
		}
	}
	if _, err := parse([]byte(`{"user_id":"` + strings.Repeat("a", 4100) + `"}`)); rain.ErrorCode(err) != rain.ETOOLARGE {
		t.Errorf("large body: %v", err)
	}
}

// FuzzParseOpenBody: whatever the body, the parser returns either an error
// or a valid user id, and never panics. The seed corpus runs in go test.
func FuzzParseOpenBody(f *testing.F) {
	for _, s := range []string{`{"user_id":"user-123"}`, `{"user_id":""}`, `{"user_id":"\u0000"}`, `{}`, `[`,
		`{"user_id":"a","x":1}`, `{"user_id":"\ud83d\ude00"}`, "{\"user_id\":\"\xc3\"}",
		`{"user_id":"a\qb"}`, `{"user_id":"\ud800"}`, `{"user_id":"\u0041\"\\"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		u, err := parse(body)
		if err != nil {
			if u != "" {
				t.Errorf("error with a user id %q", u)
			}
			return
		}
		if !rain.ValidUserID([]byte(u)) || !utf8.ValidString(u) {
			t.Errorf("accepted invalid user id %q from %q", u, body)
		}
		// What it accepts, a standard decoder reads the same: one field
		// "user_id" holding the same string.
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || len(m) != 1 || m["user_id"] != u {
			t.Errorf("accepted %q as %q; encoding/json: %v %v", body, u, m, err)
		}
	})
}

func TestIsOpenPath(t *testing.T) {
	for path, want := range map[string]bool{
		"/campaign/1/open": true, "/campaign/abc/open": true, "/campaign/open": false,
		"/campaign//open": false, "/campaign/1/2/open": false, "/campaign/1/open/": false,
		"/campaign/1": false, "/x/campaign/1/open": false, "/campaign/1/opens": false,
	} {
		if got := isOpenPath([]byte(path)); got != want {
			t.Errorf("%s: %v, want %v", path, got, want)
		}
	}
}
