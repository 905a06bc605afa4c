package edge

import (
	"log/slog"
	"runtime/debug"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/valyala/fasthttp"
)

// A panic in a request or in a background goroutine of the api is a bug:
// it is answered (a JSON 500), counted, logged with its stack, and the
// process goes on serving everyone else.

var (
	panicsHandler    = metrics.NewCounter(`rain_panics_total{where="handler"}`)
	panicsBackground = metrics.NewCounter(`rain_panics_total{where="background"}`)
	errPanic         = rain.Errorf(rain.EINTERNAL, "internal error")
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

// recoverGoroutine, deferred first in a background goroutine, stops a panic
// there from ending the process: counted and logged (log nil: the default
// logger), and the goroutine returns.
func recoverGoroutine(log *slog.Logger, where string) {
	if v := recover(); v != nil {
		panicsBackground.Inc()
		if log == nil {
			log = slog.Default()
		}
		log.Error("panic in a background goroutine", "where", where, "panic", v, "stack", string(debug.Stack()))
	}
}

// goSafe runs fn in a goroutine that recovers from a panic.
func (s *Server) goSafe(where string, fn func()) {
	go func() {
		defer recoverGoroutine(s.guard.failLog, where)
		fn()
	}()
}
