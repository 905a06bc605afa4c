package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"strconv"
	"strings"
	"sync"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/postgres"
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

// principal is who a request's token lets in: the operator (an
// ADMIN_TOKEN entry: every campaign, every merchant, the operator routes)
// or a merchant (a token of merchant_token: its own campaigns only).
type principal struct {
	name     string // the ADMIN_TOKEN entry's name, or the merchant's
	merchant int64  // the merchant's id; 0: the operator
	token    int64  // the merchant token's id; 0: the operator's
	readOnly bool   // a read-only merchant token: no create, end or stock
}

func (p *principal) operator() bool { return p.merchant == 0 }

var (
	errForbiddenRead     = rain.Errorf(rain.EFORBIDDEN, "this token is read-only: it may list, read and export, not create, end or add stock")
	errForbiddenOperator = rain.Errorf(rain.EFORBIDDEN, "an operator token (ADMIN_TOKEN) is required")
	errTokensStale       = rain.Errorf(rain.EBUSY, "merchant tokens cannot be checked now; retry shortly")
)

// principalOf returns who the request's bearer token lets in, or an error
// (rain.EUNAUTHORIZED; rain.EBUSY when the merchant tokens in memory are
// too old to trust, tokens.go). The token is hashed once (SHA-256); the
// digest is compared with every ADMIN_TOKEN digest in constant time (the
// time taken says nothing about which entry nearly matched, nor about any
// entry's length), then looked up among the merchant tokens in memory:
// neither touches PostgreSQL, so a flood of bad tokens costs a hash and a
// map lookup each.
func (s *Server) principalOf(ctx *fasthttp.RequestCtx) (*principal, error) {
	got, ok := bearer(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if !ok {
		return nil, errUnauthorized
	}
	return s.principalOfToken(got)
}

// principalOfToken is principalOf for a bearer token's credentials (a live
// stream checks its token again while it runs).
func (s *Server) principalOfToken(got []byte) (*principal, error) {
	if len(got) == 0 {
		return nil, errUnauthorized
	}
	d := sha256.Sum256(got)
	match := -1
	for i := range s.tokens {
		match = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(d[:], s.tokens[i][:]), i, match)
	}
	if match >= 0 {
		return &principal{name: s.tokenName(match)}, nil
	}
	t, err := s.merchants.lookup(d)
	if err != nil {
		return nil, err
	}
	return &principal{name: t.Name, merchant: t.Merchant, token: t.ID, readOnly: t.Role == postgres.RoleRead}, nil
}

// merchantOf returns the name of the token the request carries.
func (s *Server) merchantOf(ctx *fasthttp.RequestCtx) (string, bool) {
	p, err := s.principalOf(ctx)
	if err != nil {
		return "", false
	}
	return p.name, true
}

// authorized reports whether the request carries a token that lets it in.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	_, ok := s.merchantOf(ctx)
	return ok
}

// principalKey is the user value that holds the request's principal.
const principalKey = "rain.principal"

// Who may call a route: the wrappers below check the token before the
// handler runs, and refuse with the same answer whatever the path's
// campaign id, so a refusal tells nothing about a campaign.
type access int

const (
	readAccess     access = iota // any token: the operator, a merchant's full or read-only token
	writeAccess                  // the operator or a merchant's full token (create, end, stock)
	operatorAccess               // the operator only (the merchants' routes)
)

// guarded wraps h with the token check of a: 401 without a token that lets
// the request in, 403 for a token whose role may not call the route. The
// handler finds the principal with principalFor.
func (s *Server) guarded(a access, h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		p, err := s.principalOf(ctx)
		switch {
		case err != nil:
			authRefused[rain.ErrorCode(err)].Inc()
		case a == operatorAccess && !p.operator():
			err = errForbiddenOperator
		case a == writeAccess && p.readOnly:
			err = errForbiddenRead
		}
		if err != nil {
			if rain.ErrorCode(err) == rain.EFORBIDDEN {
				authRefused[rain.EFORBIDDEN].Inc()
			}
			writeError(ctx, err)
			return
		}
		ctx.SetUserValue(principalKey, p)
		h(ctx)
	}
}

// merchant wraps a route any token may call (reads).
func (s *Server) merchant(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return s.guarded(readAccess, h)
}

// merchantWrite wraps a route that changes a campaign.
func (s *Server) merchantWrite(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return s.guarded(writeAccess, h)
}

// operator wraps an operator route.
func (s *Server) operator(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return s.guarded(operatorAccess, h)
}

// noone is the principal of a request no wrapper let in: a merchant that
// does not exist, so its scope holds no campaign.
var noone = &principal{merchant: -1, readOnly: true}

// principalFor is the principal a guarded request was let in with.
func principalFor(ctx *fasthttp.RequestCtx) *principal {
	if p, ok := ctx.UserValue(principalKey).(*principal); ok {
		return p
	}
	return noone
}

// merchantName is the name of the token a request was let in with.
func merchantName(ctx *fasthttp.RequestCtx) string { return principalFor(ctx).name }
