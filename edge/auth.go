package edge

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/redpacket/rain"
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

// tokenDigests returns the SHA-256 digests of the merchant tokens.
func tokenDigests(tokens []string) [][sha256.Size]byte {
	d := make([][sha256.Size]byte, 0, len(tokens))
	for _, t := range tokens {
		if t != "" {
			d = append(d, sha256.Sum256([]byte(t)))
		}
	}
	return d
}

// authorized reports whether the request carries one of the merchant
// tokens. The digests of the presented and the configured tokens are
// compared, every one, in constant time: the time taken says nothing about
// which token nearly matched, nor about any token's length.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	got, ok := bearer(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if !ok {
		return false
	}
	d := sha256.Sum256(got)
	match := 0
	for i := range s.tokens {
		match |= subtle.ConstantTimeCompare(d[:], s.tokens[i][:])
	}
	return match == 1
}

// merchant wraps a merchant-only handler with the token check.
func (s *Server) merchant(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if !s.authorized(ctx) {
			writeError(ctx, errUnauthorized)
			return
		}
		h(ctx)
	}
}
