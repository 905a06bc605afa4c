package edge

import (
	"errors"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/strictjson"
	"github.com/valyala/fastjson"
)

// openParsers are reused across opens: fastjson parses into the parser's own
// buffers, so a warm parser allocates nothing. bodyParsers parse the
// merchant routes' bodies.
var openParsers, bodyParsers fastjson.ParserPool

// badJSON is the API's error for a body strictjson refused; an error that
// is already the API's passes as it is.
func badJSON(err error) error {
	var fe *strictjson.FieldError
	switch {
	case rain.ErrorCode(err) != rain.EINTERNAL:
		return err
	case errors.Is(err, strictjson.ErrNotObject):
		return rain.Errorf(rain.EINVALID, "bad JSON: the body must be an object")
	case errors.As(err, &fe):
		return rain.Errorf(rain.EINVALID, "bad JSON: %v", fe)
	}
	return rain.Errorf(rain.EINVALID, "bad JSON: not valid JSON (RFC 8259) in UTF-8")
}

var (
	errOpenJSON    = rain.Errorf(rain.EINVALID, `body must be a JSON object {"user_id":"..."}`)
	errOpenFields  = rain.Errorf(rain.EINVALID, `body must have exactly one field, "user_id"`)
	errOpenUserID  = rain.Errorf(rain.EINVALID, "user_id must be a string of 1-128 bytes with no whitespace or control characters")
	errOpenTooBig  = rain.Errorf(rain.ETOOLARGE, "body is over 4 KiB")
	errCampaignID  = rain.Errorf(rain.EINVALID, "campaign id must be a positive integer")
	errUnknownPath = rain.Errorf(rain.ENOTFOUND, "no such route")
	errMethod      = rain.Errorf(rain.EMETHOD, "method not allowed")
	errTimeout     = rain.Errorf(rain.ETIMEOUT, "request timeout")
	errHeaders     = rain.Errorf(rain.EHEADERS, "request headers too large (the request line and headers must fit in 4 KiB)")
	errURI         = rain.Errorf(rain.EURI, "request line too long (it must fit in 4 KiB with the headers)")
)

// parseOpenBody returns the user id of an open body. Strict
// (internal/strictjson): one JSON object with exactly the field "user_id",
// a valid user id. The id is a slice of p's buffer, valid until p is
// reused: the open path looks it up in memory first and makes a string of
// it only when it goes to Redis.
func parseOpenBody(p *fastjson.Parser, body []byte) ([]byte, error) {
	if len(body) > rain.MaxOpenBody {
		return nil, errOpenTooBig
	}
	o, err := strictjson.Parse(p, body)
	if err != nil {
		return nil, errOpenJSON
	}
	if o.Len() != 1 {
		return nil, errOpenFields
	}
	u := o.Get("user_id")
	if u == nil {
		return nil, errOpenFields
	}
	b, err := u.StringBytes()
	if err != nil || !rain.ValidUserID(b) {
		return nil, errOpenUserID
	}
	return b, nil
}
