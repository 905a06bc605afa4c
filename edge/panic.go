package edge

import (
	"runtime/debug"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/valyala/fasthttp"
)

// A panic in a request is a bug: it is answered (a JSON 500), counted,
// logged with its stack, and the process goes on serving everyone else.
// Background goroutines recover with engine.RecoverGoroutine.

var (
	panicsHandler = metrics.NewCounter(`rain_panics_total{where="handler"}`)
	errPanic      = rain.Errorf(rain.EINTERNAL, "internal error")
)

// recoverRequest, deferred by the server's outermost handler, turns a
// panic of any route into a JSON 500 and closes the connection (the
// request's state is unknown).
func (s *Server) recoverRequest(ctx *fasthttp.RequestCtx) {
	if v := recover(); v != nil {
		s.requestPanicked(ctx, v)
	}
}

func (s *Server) requestPanicked(ctx *fasthttp.RequestCtx, v any) {
	panicsHandler.Inc()
	s.guard.failLog.Error("panic in a handler", "method", string(ctx.Method()), "path", string(ctx.Path()),
		"panic", v, "stack", string(debug.Stack()))
	ctx.Response.Reset()
	ctx.SetConnectionClose()
	writeError(ctx, errPanic)
}
