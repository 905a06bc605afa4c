package edge

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/edge/engine"
	"github.com/valyala/fasthttp"
)

// What a connection may cost the server, bounded before a handler runs:
// bodies by route as soon as the headers arrive, Expect: 100-continue
// refused, and connections by number.

var (
	connsRefused = metrics.NewCounter(`rain_http_conns_refused_total`)
	connsOpen    = metrics.NewCounter(`rain_http_conns_opened_total`)
)

// Body limits per route. fasthttp allocates a declared Content-Length
// whole before reading a byte, so the limit is applied to the header: a
// declared body over it is answered 413 at once, with nothing allocated.
const (
	smallBody = 4 << 10 // every route but create (rain.MaxOpenBody for opens)
	// maxReadBody is the server-wide limit behind the per-route ones.
	maxReadBody = rain.MaxCreateBody
	// readBuffer is a connection's read buffer (fasthttp's default): the
	// request line and the headers must fit in it (else 414 or 431).
	readBuffer = 4 << 10
)

var pathCampaign = []byte("/campaign")

// bodyLimit is the most body a request may have, from its headers: 64 KiB
// for POST /campaign, 4 KiB for anything else. The path is taken from the
// request line as sent (origin form, or absolute form with a scheme and
// host), before the query.
func bodyLimit(h *fasthttp.RequestHeader) int {
	if !h.IsPost() {
		return smallBody
	}
	uri := h.RequestURI()
	if i := bytes.Index(uri, []byte("://")); i >= 0 && bytes.IndexByte(uri[:i], '/') < 0 {
		uri = uri[i+3:]
		j := bytes.IndexByte(uri, '/')
		if j < 0 {
			return smallBody
		}
		uri = uri[j:]
	}
	if i := bytes.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	if bytes.Equal(uri, pathCampaign) {
		return rain.MaxCreateBody
	}
	return smallBody
}

// headerReceived sets the request's body limit once its headers are read.
func headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{MaxRequestBodySize: bodyLimit(h)}
}

var bodyExpect = []byte(`{"status":"INVALID_REQUEST","error":"Expect: 100-continue is not supported; send the body with the request"}`)

// expectRefused answers Expect: 100-continue with 417 and closes the
// connection: the server does not promise to read a body it has not seen
// (clients such as curl then send it without the expectation).
func expectRefused(ctx *fasthttp.RequestCtx) int {
	lingerOnClose(ctx)
	writeJSON(ctx, fasthttp.StatusExpectationFailed, bodyExpect)
	return fasthttp.StatusExpectationFailed
}

// tooLarge is the 413 of a request whose body is over its route's limit.
func tooLarge(h *fasthttp.RequestHeader) error {
	return rain.Errorf(rain.ETOOLARGE, "body is over %d KiB", bodyLimit(h)>>10)
}

// connLimit caps the open connections of a listener. A connection past the
// cap gets a JSON 503 and is closed, by a small number of goroutines (the
// rest are closed at once), so a flood of connections costs the server
// neither memory nor goroutines beyond the cap.
type connLimit struct {
	max       int64
	open      atomic.Int64
	rejecting atomic.Int64
}

// maxRejecting bounds the goroutines answering refused connections.
const maxRejecting = 64

var busyConn = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 2\r\n" +
	"Connection: close\r\nContent-Length: " + strconv.Itoa(len(busyConnBody)) + "\r\n\r\n" + busyConnBody)

const busyConnBody = `{"status":"BUSY","error":"too many connections; retry shortly"}`

// listener wraps ln with the cap.
func (l *connLimit) listener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, l: l}
}

type limitedListener struct {
	net.Listener
	l *connLimit
}

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ll.l.open.Add(1) <= ll.l.max {
			connsOpen.Inc()
			return &limitedConn{Conn: c, l: ll.l}, nil
		}
		ll.l.open.Add(-1)
		connsRefused.Inc()
		ll.l.refuse(c)
	}
}

// refuse answers c with the JSON 503 and closes it.
func (l *connLimit) refuse(c net.Conn) {
	if l.rejecting.Add(1) > maxRejecting {
		l.rejecting.Add(-1)
		_ = c.Close()
		return
	}
	go func() {
		defer l.rejecting.Add(-1)
		defer engine.RecoverGoroutine(nil, "refuse connection")
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(busyConn)
		// Read what the client sent before closing, so that the close
		// does not reset the connection under the answer.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
		_ = c.Close()
	}()
}

// limitedConn is a connection of the capped listener. It also keeps what
// a refusal before the handler needs: how far back the last line feed
// read is (sinceLF: a request line that does not fit the read buffer is
// 414, other headers that do not are 431), and whether the server answered
// while the client may still be sending (linger).
type limitedConn struct {
	net.Conn
	l       *connLimit
	once    sync.Once
	sinceLF int         // bytes read since the last '\n'; the serving goroutine's only
	linger  atomic.Bool // read and discard what the client sends before closing
}

func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if i := bytes.LastIndexByte(p[:n], '\n'); i >= 0 {
		c.sinceLF = n - 1 - i
	} else {
		c.sinceLF += n
	}
	return n, err
}

// Bounds of a lingering close: what the server reads and throws away of a
// request it refused before closing, at most, and for how long.
const (
	lingerBytes = 256 << 10
	lingerTime  = 2 * time.Second
)

// Close closes the connection. After an answer the server gave before
// reading the whole request (a body over its limit, headers over the read
// buffer, Expect refused), it first stops writing and reads and discards
// what the client still sends, up to lingerBytes for up to lingerTime:
// closing a socket with unread data resets the connection, and a client
// that writes its whole request before reading (most do) gets a broken
// pipe or a reset instead of the answer (TestRefusalReadableByClient). The
// connection counts against MAX_CONNS until it is closed.
func (c *limitedConn) Close() error {
	if c.linger.CompareAndSwap(true, false) {
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, lingerBytes))
		}
	}
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// lingerOnClose makes the request's connection close lingering (see
// limitedConn.Close); it reports the connection, nil when it is not one of
// the capped listener's.
func lingerOnClose(ctx *fasthttp.RequestCtx) *limitedConn {
	c, ok := ctx.Conn().(*limitedConn)
	if ok {
		c.linger.Store(true)
	}
	return c
}

var (
	methodGet  = []byte(fasthttp.MethodGet)
	methodHead = []byte(fasthttp.MethodHead)
)

// headAsGet serves HEAD as the GET of the same path: the GET route's
// status and headers, with no body (fasthttp drops the body of an answer
// to HEAD).
func headAsGet(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler) {
	ctx.Request.Header.SetMethodBytes(methodGet)
	h(ctx)
	ctx.Request.Header.SetMethodBytes(methodHead)
}

// options answers OPTIONS on a known route: the router sets Allow.
func options(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusOK, []byte(`{"status":"OK"}`))
}

// connLogger takes fasthttp's own log lines (a connection it could not
// serve: a malformed request, a body over its limit, a timeout) into the
// rate-limited failure log: one line every interval, with the count of
// those held back, however many clients misbehave.
type connLogger struct{ log *slog.Logger }

func (l connLogger) Printf(format string, args ...any) {
	l.log.Warn("http connection error", "detail", fmt.Sprintf(format, args...))
}
