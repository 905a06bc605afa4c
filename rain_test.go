package rain

import (
	"strings"
	"testing"
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
