package pipeline

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/redpacket/rain"
)

func TestEventJSON(t *testing.T) {
	e := Event{CampaignID: 1, UserID: "user-123", Amount: 20, ClaimedAt: 1735689601234}
	want := `{"v":1,"campaign_id":1,"user_id":"user-123","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`
	if got := string(e.AppendJSON(nil)); got != want {
		t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
	}
	back, err := DecodeEvent([]byte(want))
	if err != nil || back != e {
		t.Errorf("DecodeEvent: %+v %v", back, err)
	}
}

// TestEventJSONEscapes: the hand-written encoder agrees with encoding/json
// on strings that need escaping.
func TestEventJSONEscapes(t *testing.T) {
	for _, u := range []string{`q"uote`, `back\slash`, "ctl\x01\x1f", "红包", "bad\xffutf8", "</script>"} {
		e := Event{CampaignID: 9, UserID: u, Amount: 1, ClaimedAt: 0}
		var m map[string]any
		if err := json.Unmarshal(e.AppendJSON(nil), &m); err != nil {
			t.Errorf("%q: %s is not JSON: %v", u, e.AppendJSON(nil), err)
			continue
		}
		want, _ := json.Marshal(u)
		var wantS string
		json.Unmarshal(want, &wantS)
		if m["user_id"] != wantS {
			t.Errorf("%q: decoded %q, want %q", u, m["user_id"], wantS)
		}
	}
}

const goodEvent = `{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`

func TestDecodeEventRejects(t *testing.T) {
	for _, c := range []struct{ in, reason string }{
		{``, ReasonMalformed},
		{`{`, ReasonMalformed},
		{`[]`, ReasonMalformed},
		{`null`, ReasonMalformed},
		{`"x"`, ReasonMalformed},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"`, ReasonMalformed},
		// trailing data of any kind after the object
		{goodEvent + ` {}`, ReasonMalformed},
		{goodEvent + `}`, ReasonMalformed},
		{goodEvent + `]`, ReasonMalformed},
		{goodEvent + `x`, ReasonMalformed},
		{goodEvent + goodEvent, ReasonMalformed},
		{goodEvent + "\n1", ReasonMalformed},
		{`{"v":1,"campaign_id":1,"user_id":"a\qb","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonMalformed},
		{`{"v":1,"campaign_id":01,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonMalformed},
		{`{"v":2,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonUnsupportedVersion},
		{`{"v":"1","campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonUnsupportedVersion},
		{`{"v":1.0,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonUnsupportedVersion},
		// a later version decides even with fields this one does not know, in any order
		{`{"next":true,"v":2}`, ReasonUnsupportedVersion},
		{`{"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":null,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":0,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":-1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":9223372036854775808,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":"1","user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"a b","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":1,"amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":0,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":1000000001,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20.5,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":2e1,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":null,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"yesterday"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234+24:00"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"0000-01-01T00:00:00+01:00"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"9999-12-31T23:59:59-01:00"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z","x":1}`, ReasonInvalid},
		// names in exact case, each once
		{`{"V":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"Campaign_ID":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"amount":5,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
		{`{"v":1,"campaign_id":1,"user_id":"u","amount":null,"amount":5,"claimed_at":"2025-01-01T00:00:01.234Z"}`, ReasonInvalid},
	} {
		_, err := DecodeEvent([]byte(c.in))
		var bad *BadEventError
		if !errors.Is(err, ErrBadEvent) || !errors.As(err, &bad) || bad.Reason != c.reason {
			t.Errorf("%s: %v, want %s", c.in, err, c.reason)
		}
	}
}

// TestDecodeEventAccepts: white space around and inside, field order and
// time offsets are free.
func TestDecodeEventAccepts(t *testing.T) {
	want := Event{CampaignID: 1, UserID: "u", Amount: 20, ClaimedAt: 1735689601234}
	for _, in := range []string{
		goodEvent,
		" \t\r\n" + goodEvent + " \n",
		`{ "claimed_at" : "2025-01-01T08:00:01.234+08:00" , "amount":20,"user_id":"\u0075","campaign_id":1,"v":1}`,
		`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234999Z"}`,
	} {
		if got, err := DecodeEvent([]byte(in)); err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", in, got, err, want)
		}
	}
}

// TestDecodeEventBoundsDetail: the error text carries none of a long input.
func TestDecodeEventBoundsDetail(t *testing.T) {
	long := strings.Repeat("x", 1<<20)
	for _, in := range []string{
		`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"` + long + `"}`,
		`{"v":1,"` + long + `":1}`,
		`{"v":"` + long + `"}`,
	} {
		if _, err := DecodeEvent([]byte(in)); err == nil || len(err.Error()) > 256 {
			t.Errorf("%d-byte error for a %d-byte input", len(err.Error()), len(in))
		}
	}
}

// FuzzDecodeEvent: whatever the input, DecodeEvent does not panic; what it
// accepts is valid JSON, in range, and survives AppendJSON and DecodeEvent
// again unchanged.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(goodEvent))
	f.Add([]byte(`{"v":1,"campaign_id":9223372036854775807,"user_id":"\u7ea2\u5305","amount":1000000000,"claimed_at":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"} {}`))
	f.Add([]byte(`{"v":2,"x":[1,{"y":null}]}`))
	f.Add([]byte(`{"v":1,"V":1}`))
	f.Add([]byte(`{"v":1,"campaign_id":1,"user_id":"\ud800","amount":20,"claimed_at":"9999-12-31T23:59:59.999Z"}`))
	f.Add([]byte(`[{"v":1}]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := DecodeEvent(in)
		if err != nil {
			var bad *BadEventError
			if !errors.As(err, &bad) || !errors.Is(err, ErrBadEvent) || bad.Reason == "" {
				t.Fatalf("%q: error %v is not a *BadEventError", in, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("%q: accepted, but not valid JSON", in)
		}
		if e.CampaignID < 1 || e.Amount < 1 || e.Amount > rain.MaxAmount || !rain.ValidUserID([]byte(e.UserID)) {
			t.Fatalf("%q: accepted out of range: %+v", in, e)
		}
		back, err := DecodeEvent(e.AppendJSON(nil))
		if err != nil || back != e {
			t.Fatalf("%q: %+v encodes to %s, which decodes to %+v %v", in, e, e.AppendJSON(nil), back, err)
		}
	})
}

func BenchmarkEventAppendJSON(b *testing.B) {
	e := Event{CampaignID: 123456, UserID: "user-1234567890", Amount: 20, ClaimedAt: 1735689601234}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
}

func BenchmarkDecodeEvent(b *testing.B) {
	in := []byte(`{"v":1,"campaign_id":123456,"user_id":"user-1234567890","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEvent(in); err != nil {
			b.Fatal(err)
		}
	}
}
