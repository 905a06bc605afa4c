package edge

import (
	"bytes"
	"crypto/subtle"

	"github.com/redpacket/rain"
	"github.com/valyala/fasthttp"
)

var (
	bearerPrefix    = []byte("Bearer ")
	errUnauthorized = rain.Errorf(rain.EUNAUTHORIZED, "missing or wrong bearer token")
)

// authorized reports whether the request carries one of the merchant
// tokens. Every token is compared, in constant time, so the time taken says
// nothing about which one nearly matched.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	h := ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)
	if !bytes.HasPrefix(h, bearerPrefix) {
		return false
	}
	got := h[len(bearerPrefix):]
	ok := 0
	for _, t := range s.tokens {
		ok |= subtle.ConstantTimeCompare(got, t)
	}
	return ok == 1 && len(got) > 0
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
