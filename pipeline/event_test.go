package pipeline

import (
	"encoding/json"
	"errors"
	"testing"
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

func TestDecodeEventRejects(t *testing.T) {
	for _, b := range []string{
		``, `{`, `[]`, `null`,
		`{"v":2,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`,
		`{"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`,
		`{"v":1,"campaign_id":0,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`,
		`{"v":1,"campaign_id":1,"user_id":"","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`,
		`{"v":1,"campaign_id":1,"user_id":"a b","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}`,
		`{"v":1,"campaign_id":1,"user_id":"u","amount":0,"claimed_at":"2025-01-01T00:00:01.234Z"}`,
		`{"v":1,"campaign_id":1,"user_id":"u","amount":20.5,"claimed_at":"2025-01-01T00:00:01.234Z"}`,
		`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"yesterday"}`,
		`{"v":1,"campaign_id":1,"user_id":"u","amount":20}`,
		`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z","x":1}`,
		`{"v":1,"campaign_id":1,"user_id":"u","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"} {}`,
	} {
		if _, err := DecodeEvent([]byte(b)); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%s: %v, want ErrBadEvent", b, err)
		}
	}
}

func BenchmarkEventAppendJSON(b *testing.B) {
	e := Event{CampaignID: 123456, UserID: "user-1234567890", Amount: 20, ClaimedAt: 1735689601234}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.AppendJSON(buf[:0])
	}
}
