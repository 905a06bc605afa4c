package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"strconv"
	"strings"
	"sync"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/config"
	"github.com/valyala/fasthttp"
)

var errUnauthorized = rain.Errorf(rain.EUNAUTHORIZED, "missing or wrong bearer token")

// bearer returns the credentials of an Authorization header of the Bearer
// scheme. The scheme name is matched case-insensitively and may be followed
// by more than one space (RFC 9110, 11.1 and 11.4).
func bearer(h []byte) ([]byte, bool) {
	const scheme = "bearer"
	if len(h) <= len(scheme) || h[len(scheme)] != ' ' {
		return nil, false
	}
	for i := 0; i < len(scheme); i++ {
		if h[i]|0x20 != scheme[i] { // ASCII lower case; scheme has letters only
			return nil, false
		}
	}
	h = h[len(scheme):]
	for len(h) > 0 && h[0] == ' ' {
		h = h[1:]
	}
	return h, len(h) > 0
}

// Merchant tokens have names, which the audit records: ADMIN_TOKEN is a
// comma-separated list of `name:secret` entries. An entry without a valid
// name before a colon is a bare secret (as before names), named by its
// place among the tokens: token-1, token-2, …

// namedToken is one ADMIN_TOKEN entry.
type namedToken struct {
	name, secret string
}

// maxTokenName is the longest token name (the audit's actor column).
const maxTokenName = 64

// validTokenName reports whether s is a token name: 1-64 of A-Z a-z 0-9 . _ -
func validTokenName(s string) bool {
	if len(s) == 0 || len(s) > maxTokenName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseTokens splits the ADMIN_TOKEN entries into names and secrets;
// entries with an empty secret are no tokens.
func parseTokens(entries []string) []namedToken {
	var out []namedToken
	for _, e := range entries {
		t := namedToken{secret: e}
		if name, secret, ok := strings.Cut(e, ":"); ok && validTokenName(name) {
			t = namedToken{name: name, secret: secret}
		}
		if t.secret == "" {
			continue
		}
		if t.name == "" {
			t.name = "token-" + strconv.Itoa(len(out)+1)
		}
		out = append(out, t)
	}
	return out
}

// checkTokens records in s what is wrong with the ADMIN_TOKEN entries: a
// name without a secret, or a name given twice.
func checkTokens(s *config.Set, entries []string) {
	for _, e := range entries {
		if name, secret, ok := strings.Cut(e, ":"); ok && validTokenName(name) && secret == "" {
			s.Errorf("ADMIN_TOKEN", "token %q has an empty secret", name)
		}
	}
	seen := make(map[string]bool)
	for _, t := range parseTokens(entries) {
		if seen[t.name] {
			s.Errorf("ADMIN_TOKEN", "token name %q is given twice", t.name)
		}
		seen[t.name] = true
	}
}

// tokenDigests returns the SHA-256 digests of the merchant tokens' secrets,
// in the order of their names (tokenNames).
func tokenDigests(entries []string) [][sha256.Size]byte {
	ts := parseTokens(entries)
	d := make([][sha256.Size]byte, 0, len(ts))
	for _, t := range ts {
		d = append(d, sha256.Sum256([]byte(t.secret)))
	}
	return d
}

// tokenNames are the merchant tokens' names, parsed once.
type tokenNames struct {
	once  sync.Once
	names []string
}

// tokenName is the name of the i-th token of s.tokens.
func (s *Server) tokenName(i int) string {
	s.names.once.Do(func() {
		for _, t := range parseTokens(s.cfg.AdminTokens) {
			s.names.names = append(s.names.names, t.name)
		}
	})
	if i < len(s.names.names) {
		return s.names.names[i]
	}
	return "token-" + strconv.Itoa(i+1)
}

// merchantOf returns the name of the merchant token the request carries.
// The digests of the presented and the configured tokens are compared,
// every one, in constant time: the time taken says nothing about which
// token nearly matched, nor about any token's length.
func (s *Server) merchantOf(ctx *fasthttp.RequestCtx) (string, bool) {
	got, ok := bearer(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if !ok {
		return "", false
	}
	d := sha256.Sum256(got)
	match := -1
	for i := range s.tokens {
		match = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(d[:], s.tokens[i][:]), i, match)
	}
	if match < 0 {
		return "", false
	}
	return s.tokenName(match), true
}

// authorized reports whether the request carries one of the merchant tokens.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	_, ok := s.merchantOf(ctx)
	return ok
}

// merchantKey is the user value that holds the request's token name.
const merchantKey = "rain.merchant"

// merchant wraps a merchant-only handler with the token check; the handler
// finds the token's name with merchantName.
func (s *Server) merchant(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		name, ok := s.merchantOf(ctx)
		if !ok {
			writeError(ctx, errUnauthorized)
			return
		}
		ctx.SetUserValue(merchantKey, name)
		h(ctx)
	}
}

// merchantName is the name of the token a merchant request was let in with.
func merchantName(ctx *fasthttp.RequestCtx) string {
	name, _ := ctx.UserValue(merchantKey).(string)
	return name
}
