package rain

import (
	"strings"
	"testing"
	"time"
)

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

func TestValidate(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ok := Campaign{Name: "ok", StartTime: at("2030-01-01T00:00:00Z"), EndTime: at("2030-01-01T00:00:00.001Z"),
		Inventory: []Stock{{Amount: 5, Total: 1}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("1 ms window: %v", err)
	}
	year1 := ok
	year1.StartTime, year1.EndTime = at("0001-01-01T00:00:00Z"), at("9999-12-31T23:59:59.999Z")
	if err := year1.Validate(); err != nil {
		t.Errorf("years 1 to 9999: %v", err)
	}
	for name, change := range map[string]func(*Campaign){
		"NUL in name":        func(c *Campaign) { c.Name = "a\x00b" },
		"C0 in name":         func(c *Campaign) { c.Name = "a\nb" },
		"DEL in name":        func(c *Campaign) { c.Name = "a\x7fb" },
		"C1 in name":         func(c *Campaign) { c.Name = "a\u0085b" },
		"invalid UTF-8 name": func(c *Campaign) { c.Name = "a\xffb" },
		"window under 1 ms":  func(c *Campaign) { c.EndTime = c.StartTime.Add(999 * time.Microsecond) },
		"empty window":       func(c *Campaign) { c.EndTime = c.StartTime },
		"UTC year 0":         func(c *Campaign) { c.StartTime = at("0000-12-31T23:00:00Z") },
		"UTC year 10000":     func(c *Campaign) { c.EndTime = at("9999-12-31T23:59:59-01:00") },
		"zero times":         func(c *Campaign) { c.StartTime, c.EndTime = time.Time{}, time.Time{} },
	} {
		c := ok
		change(&c)
		if err := c.Validate(); ErrorCode(err) != EINVALID {
			t.Errorf("%s: %v", name, err)
		}
	}
}
