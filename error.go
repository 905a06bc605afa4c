package rain

import (
	"errors"
	"fmt"
)

// Application error codes. They are the "status" of an error body; edge maps
// each to one HTTP status in one place (edge/http.go).
const (
	EINVALID      = "INVALID_REQUEST" // bad input; nothing changed
	ETOOLARGE     = "BODY_TOO_LARGE"  // body over the route's limit (shown as INVALID_REQUEST, 413)
	EMETHOD       = "BAD_METHOD"      // a route without this method (shown as INVALID_REQUEST, 405)
	ETIMEOUT      = "TIMEOUT"         // a request not sent within the read timeout (shown as INVALID_REQUEST, 408)
	EHEADERS      = "HEADERS_TOO_BIG" // request headers over the server's buffer (shown as INVALID_REQUEST, 431)
	EURI          = "URI_TOO_LONG"    // a request line over the server's buffer (shown as INVALID_REQUEST, 414)
	EUNAUTHORIZED = "UNAUTHORIZED"    // missing or wrong merchant token
	EFORBIDDEN    = "FORBIDDEN"       // a valid token whose role may not do this (a read-only token, a merchant on an operator route)
	ECONFLICT     = "CONFLICT"        // the request is well formed but the state refuses it: a merchant name taken; stock of an amount the campaign lacks, over the limit, or a key reused
	EENDED        = "ENDED"           // the campaign has ended (stock added after its end; shown with 409; an open's ENDED is an outcome, 400)
	ENOTFOUND     = "NOT_FOUND"       // no such campaign or route
	EARCHIVED     = "ARCHIVED"        // the campaign's claims were archived: no longer served (consumer archive)
	EBUSY         = "BUSY"            // a dependency is down or the pipeline is full; retry later
	ERATELIMITED  = "RATE_LIMITED"    // a per-user or per-IP limit was exceeded; retry later
	EINTERNAL     = "INTERNAL"        // a bug or an unexpected failure
)

// Error is an application error: a code from the list above and a message
// fit for the caller. Cause, when set, is the internal failure behind it
// (a driver's error, an address): it is logged, never shown to the caller.
type Error struct {
	Code    string
	Message string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of an application error, or EINTERNAL for any
// other non-nil error.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	return appError(err).Code
}

// ErrorMessage returns the message of an application error, or a generic
// message for any other error (internal details stay in the logs).
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	return appError(err).Message
}

var errInternal = &Error{Code: EINTERNAL, Message: "internal error"}

// appError is the application error err is or wraps; any other error is
// answered as an internal one.
func appError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errInternal
}
