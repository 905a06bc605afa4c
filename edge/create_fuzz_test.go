package edge

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/redpacket/rain"
)

// FuzzParseCreateBody: whatever the body, the create parser returns an
// error or a campaign that validates; what it accepts, a standard decoder
// reads the same (exact-case names, one of each, the same values), with
// times in UTC years 1-9999 at millisecond precision.
func FuzzParseCreateBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"n","start_time":"2025-01-01T00:00:00Z","end_time":"2025-01-02T00:00:00Z","inventory":{"20":1}}`,
		`{"name":"n","start_time":"2025-01-01T00:00:00.123456789+05:30","end_time":"2025-01-02T00:00:00Z","inventory":{"20":1,"5":100}}`,
		`{"Name":"n","start_time":"2025-01-01T00:00:00Z","end_time":"2025-01-02T00:00:00Z","inventory":{"20":1}}`,
		`{"name":"n","name":"m","start_time":"2025-01-01T00:00:00Z","end_time":"2025-01-02T00:00:00Z","inventory":{"20":1}}`,
		`{"name":"a\u0000b","start_time":"0000-01-01T00:00:00+01:00","end_time":"9999-12-31T23:59:59-01:00","inventory":{"20":1,"20":2}}`,
		`{"name":"\ud800","start_time":"2025-01-01T00:00:00+24:00","end_time":"x","inventory":{"1e1":1.5}}`,
		`{}`, `[`, `{"inventory":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := parseCreateBody(body)
		if err != nil {
			if c != nil || rain.ErrorCode(err) != rain.EINVALID && rain.ErrorCode(err) != rain.ETOOLARGE {
				t.Fatalf("%q: %v with %v", body, err, c)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("%q: accepted a campaign that does not validate: %v", body, err)
		}
		var m struct {
			Name      *string          `json:"name"`
			StartTime *time.Time       `json:"start_time"`
			EndTime   *time.Time       `json:"end_time"`
			Inventory map[string]int64 `json:"inventory"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.Name == nil || m.StartTime == nil || m.EndTime == nil {
			t.Fatalf("%q: accepted; encoding/json: %v", body, err)
		}
		var keys map[string]json.RawMessage
		_ = json.Unmarshal(body, &keys)
		if len(keys) != 4 || keys["name"] == nil || keys["start_time"] == nil || keys["end_time"] == nil || keys["inventory"] == nil {
			t.Fatalf("%q: accepted with fields %v", body, keys)
		}
		if *m.Name != c.Name || !m.StartTime.Truncate(time.Millisecond).Equal(c.StartTime) ||
			!m.EndTime.Truncate(time.Millisecond).Equal(c.EndTime) || len(m.Inventory) != len(c.Inventory) {
			t.Fatalf("%q: parsed %+v, encoding/json %+v", body, c, m)
		}
		for _, st := range c.Inventory {
			if m.Inventory[rainAmount(st.Amount)] != st.Total {
				t.Fatalf("%q: amount %d: %d, encoding/json %v", body, st.Amount, st.Total, m.Inventory)
			}
		}
		for _, tm := range []time.Time{c.StartTime, c.EndTime} {
			if tm.Nanosecond()%int(time.Millisecond) != 0 {
				t.Fatalf("%q: time %v below the millisecond", body, tm)
			}
			if _, err := json.Marshal(tm); err != nil {
				t.Fatalf("%q: time %v cannot be shown: %v", body, tm, err)
			}
		}
	})
}

func rainAmount(a int64) string {
	b, _ := json.Marshal(a)
	return string(b)
}
