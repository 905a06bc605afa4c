package edge

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/redpacket/rain"
	"github.com/valyala/fasthttp"
)

// This file is the one place that turns results and errors into HTTP
// statuses and JSON bodies.

var (
	contentTypeJSON = []byte("application/json")
	headerRetry     = []byte("Retry-After")
	// retryAfterSecs are the Retry-After values of 503 and 429, one drawn
	// per answer: clients told to come back spread over 1-3 s instead of
	// returning in lockstep.
	retryAfterSecs = [...][]byte{[]byte("1"), []byte("2"), []byte("3")}
)

// outcomeStatus maps a claim outcome to its HTTP status (docs/api.md, "POST /campaign/{id}/open").
var outcomeStatus = [...]int{
	rain.NotFound:      fasthttp.StatusNotFound,
	rain.NotStarted:    fasthttp.StatusBadRequest,
	rain.Ended:         fasthttp.StatusBadRequest,
	rain.AlreadyOpened: fasthttp.StatusConflict,
	rain.SoldOut:       fasthttp.StatusGone,
	rain.OK:            fasthttp.StatusOK,
}

// errorStatus maps an application error code to its HTTP status and to the
// "status" shown in the body.
func errorStatus(code string) (int, string) {
	switch code {
	case rain.EINVALID:
		return fasthttp.StatusBadRequest, code
	case rain.ETOOLARGE:
		return fasthttp.StatusRequestEntityTooLarge, rain.EINVALID
	case rain.EMETHOD:
		return fasthttp.StatusMethodNotAllowed, rain.EINVALID
	case rain.ETIMEOUT:
		return fasthttp.StatusRequestTimeout, rain.EINVALID
	case rain.EHEADERS:
		return fasthttp.StatusRequestHeaderFieldsTooLarge, rain.EINVALID
	case rain.EURI:
		return fasthttp.StatusRequestURITooLong, rain.EINVALID
	case rain.EUNAUTHORIZED:
		return fasthttp.StatusUnauthorized, code
	case rain.EFORBIDDEN:
		return fasthttp.StatusForbidden, code
	case rain.ECONFLICT, rain.EENDED:
		return fasthttp.StatusConflict, code
	case rain.ENOTFOUND:
		return fasthttp.StatusNotFound, code
	case rain.EBUSY:
		return fasthttp.StatusServiceUnavailable, code
	case rain.ERATELIMITED:
		return fasthttp.StatusTooManyRequests, code
	}
	return fasthttp.StatusInternalServerError, rain.EINTERNAL
}

// writeError writes an error body: {"status":"<CODE>","error":"<message>"}.
// The message is the application error's own, never the text of its cause
// (addresses, driver messages): those go to the logs. 503s and 429s carry
// Retry-After.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	status, code := errorStatus(rain.ErrorCode(err))
	var buf [256]byte
	b := append(buf[:0], `{"status":"`...)
	b = append(b, code...)
	b = append(b, `","error":`...)
	b = strconv.AppendQuote(b, rain.ErrorMessage(err))
	b = append(b, '}')
	if status == fasthttp.StatusServiceUnavailable || status == fasthttp.StatusTooManyRequests {
		ctx.Response.Header.SetBytesKV(headerRetry, retryAfterSecs[rand.N(len(retryAfterSecs))])
	}
	writeJSON(ctx, status, b)
}

// writeOutcome writes the answer to an open. It allocates nothing.
func writeOutcome(ctx *fasthttp.RequestCtx, r rain.Result) {
	var buf [64]byte
	b := append(buf[:0], `{"status":"`...)
	b = append(b, r.Outcome.String()...)
	b = append(b, '"')
	if r.Outcome == rain.OK || r.Outcome == rain.AlreadyOpened {
		b = append(b, `,"amount":`...)
		b = strconv.AppendInt(b, r.Amount, 10)
	}
	b = append(b, '}')
	writeJSON(ctx, outcomeStatus[r.Outcome], b)
}

// writeBusy answers 503 BUSY: nothing was claimed, try again shortly.
func writeBusy(ctx *fasthttp.RequestCtx, why string) {
	writeError(ctx, &rain.Error{Code: rain.EBUSY, Message: why})
}

// writeValue answers 200 with v as JSON. A value that cannot be encoded is
// a bug: 500 with the API's error body, never an empty 200.
func writeValue(ctx *fasthttp.RequestCtx, v any) { writeValueAs(ctx, fasthttp.StatusOK, v) }

// writeValueAs is writeValue with another status (201).
func writeValueAs(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, fmt.Errorf("encode %T: %w", v, err))
		return
	}
	writeJSON(ctx, status, b)
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentTypeBytes(contentTypeJSON)
	ctx.SetBody(body) // copies
}
