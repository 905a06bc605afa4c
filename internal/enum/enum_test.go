package enum

import "testing"

func TestName(t *testing.T) {
	type kind int8
	names := []string{"a", "b"}
	for _, c := range []struct {
		v    kind
		want string
	}{{0, "a"}, {1, "b"}, {2, "?"}, {-1, "?"}} {
		if got := Name(names, c.v, "?"); got != c.want {
			t.Errorf("Name(%d) = %q, want %q", c.v, got, c.want)
		}
	}
}
