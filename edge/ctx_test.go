package edge

import "github.com/valyala/fasthttp"

// newCtx returns a request context as the server would hand a handler,
// for the pure tests that call a handler directly.
func newCtx(method, uri, body string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(uri)
	ctx.Request.SetBodyString(body)
	return &ctx
}
