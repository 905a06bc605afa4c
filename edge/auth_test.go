package edge

import "testing"

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER abc": "abc", "bEaReR  abc": "abc",
		"Bearer": "", "Bearer ": "", "Bearer    ": "", "Bearerabc": "", "Basic abc": "", "": "",
		"Bearer\tabc": "", "Bearex abc": "", "Bearer a b": "a b",
	} {
		got, ok := bearer([]byte(h))
		if string(got) != want || ok != (want != "") {
			t.Errorf("%q: %q %v, want %q", h, got, ok, want)
		}
	}
}

func TestAuthorizedComparesDigests(t *testing.T) {
	s := &Server{tokens: tokenDigests([]string{"one", "", "two-token"})}
	for h, want := range map[string]bool{
		"Bearer one": true, "bearer two-token": true, "Bearer two": false, "Bearer on": false,
		"Bearer one ": false, "Bearer ": false, "": false, "Bearer two-tokenX": false,
	} {
		var ctx = newCtx("GET", "/campaign/1", "")
		if h != "" {
			ctx.Request.Header.Set("Authorization", h)
		}
		if got := s.authorized(ctx); got != want {
			t.Errorf("%q: %v, want %v", h, got, want)
		}
	}
	if len(s.tokens) != 2 {
		t.Errorf("an empty token is no token: %d digests", len(s.tokens))
	}
}
