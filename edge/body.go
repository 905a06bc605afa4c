package edge

import (
	"github.com/redpacket/rain"
	"github.com/valyala/fastjson"
)

// openParsers are reused across opens: fastjson parses into the parser's own
// buffers, so a warm parser allocates nothing.
var openParsers fastjson.ParserPool

var (
	errOpenJSON    = rain.Errorf(rain.EINVALID, `body must be a JSON object {"user_id":"..."}`)
	errOpenFields  = rain.Errorf(rain.EINVALID, `body must have exactly one field, "user_id"`)
	errOpenUserID  = rain.Errorf(rain.EINVALID, "user_id must be a string of 1-128 bytes with no whitespace or control characters")
	errOpenTooBig  = rain.Errorf(rain.ETOOLARGE, "body is over 4 KiB")
	errCampaignID  = rain.Errorf(rain.EINVALID, "campaign id must be a positive integer")
	errNotFound    = rain.Errorf(rain.ENOTFOUND, "no such campaign")
	errUnknownPath = rain.Errorf(rain.ENOTFOUND, "no such route")
)

// parseOpenBody returns the user id of an open body, as a new string (it
// outlives the request: it goes to Redis and into the claim event). Strict:
// one JSON object with exactly the field "user_id", a valid user id.
func parseOpenBody(body []byte) (string, error) {
	if len(body) > rain.MaxOpenBody {
		return "", errOpenTooBig
	}
	p := openParsers.Get()
	defer openParsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return "", errOpenJSON
	}
	o, err := v.Object()
	if err != nil {
		return "", errOpenJSON
	}
	if o.Len() != 1 {
		return "", errOpenFields
	}
	u := o.Get("user_id")
	if u == nil {
		return "", errOpenFields
	}
	b, err := u.StringBytes()
	if err != nil || !rain.ValidUserID(b) {
		return "", errOpenUserID
	}
	return string(b), nil
}
