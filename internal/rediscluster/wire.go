package rediscluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"

	"github.com/VictoriaMetrics/metrics"
)

// The client follows MOVED and ASK redirects by itself, so the process
// never sees them. Dial wraps each connection in a reader that counts the
// error replies of the cluster's kinds as they arrive, redirects included:
// rain_redis_errors_total{kind}. It follows the RESP framing (bulk strings
// are skipped by their length), so data that merely looks like an error
// is not counted, and costs a scan for the line ends of what is read.

var replyErrors = map[string]*metrics.Counter{}

// errorPrefixes are the first bytes of the error replies counted.
var errorPrefixes = []struct{ prefix, kind string }{
	{"MOVED ", KindMoved},
	{"ASK ", KindAsk},
	{"TRYAGAIN", KindTryAgain},
	{"CLUSTERDOWN", KindClusterDown},
	{"LOADING", KindLoading},
}

func init() {
	for _, p := range errorPrefixes {
		replyErrors[p.kind] = metrics.NewCounter(`rain_redis_errors_total{kind="` + p.kind + `"}`)
	}
}

// ErrorReplies is how many error replies of kind the connections Dial made
// have read so far.
func ErrorReplies(kind string) uint64 {
	if c := replyErrors[kind]; c != nil {
		return c.Get()
	}
	return 0
}

// Dial is a rueidis ClientOption.DialCtxFn: it connects as rueidis does by
// default (TLS when tlsConfig is set) and counts the error replies read.
func Dial(ctx context.Context, addr string, d *net.Dialer, tlsConfig *tls.Config) (net.Conn, error) {
	var (
		conn net.Conn
		err  error
	)
	if tlsConfig != nil {
		conn, err = (&tls.Dialer{NetDialer: d, Config: tlsConfig}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn}, nil
}

// countingConn is a connection whose replies are scanned by a replyScanner.
type countingConn struct {
	net.Conn
	scan replyScanner
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.scan.feed(p[:n])
	return n, err
}

// replyScanner follows a stream of RESP2/RESP3 replies, read in pieces of
// any size, and counts the error replies of errorPrefixes.
type replyScanner struct {
	state scanState
	skip  int64 // stPayload: bytes left of a bulk payload and its CRLF
	n     int64 // stLength: the length read so far
	neg   bool  // stLength: a negative length (null)
	bad   bool  // stLength: not a plain length (a streamed string)
	head  [12]byte
	hl    int // stError: bytes of head filled
}

type scanState uint8

const (
	stType    scanState = iota // the next byte starts a value
	stLine                     // skipping to the end of the line
	stError                    // reading the start of an error line
	stLength                   // reading the length of a bulk value
	stPayload                  // skipping a bulk value's payload
)

func (s *replyScanner) feed(b []byte) {
	for len(b) > 0 {
		switch s.state {
		case stType:
			switch b[0] {
			case '-':
				s.state, s.hl = stError, 0
			case '$', '=', '!': // bulk string, verbatim string, blob error
				s.state, s.n, s.neg, s.bad = stLength, 0, false, false
			default: // simple values and the headers of aggregates
				s.state = stLine
			}
			b = b[1:]
		case stLine:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return
			}
			b, s.state = b[i+1:], stType
		case stError:
			c := b[0]
			b = b[1:]
			if c != '\n' && s.hl < len(s.head) {
				s.head[s.hl] = c
				s.hl++
				if s.hl < len(s.head) {
					continue
				}
			}
			s.count()
			if s.state = stLine; c == '\n' {
				s.state = stType
			}
		case stLength:
			c := b[0]
			b = b[1:]
			switch {
			case c >= '0' && c <= '9':
				s.n = s.n*10 + int64(c-'0')
				if s.n > 1<<40 {
					s.bad = true
				}
			case c == '-':
				s.neg = true
			case c == '\n':
				s.state = stType
				if !s.neg && !s.bad {
					s.state, s.skip = stPayload, s.n+2
				}
			case c != '\r':
				s.bad = true
			}
		case stPayload:
			if int64(len(b)) < s.skip {
				s.skip -= int64(len(b))
				return
			}
			b, s.state = b[s.skip:], stType
		}
	}
}

// count counts the error line whose first bytes are in head.
func (s *replyScanner) count() {
	line := s.head[:s.hl]
	for _, p := range errorPrefixes {
		if bytes.HasPrefix(line, []byte(p.prefix)) {
			replyErrors[p.kind].Inc()
			return
		}
	}
}
