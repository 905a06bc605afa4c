package edge

import (
	"bytes"

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
	errUnknownPath = rain.Errorf(rain.ENOTFOUND, "no such route")
	errMethod      = rain.Errorf(rain.EMETHOD, "method not allowed")
	errTimeout     = rain.Errorf(rain.ETIMEOUT, "request timeout")
	errHeaders     = rain.Errorf(rain.EHEADERS, "request headers too large")
)

// parseOpenBody returns the user id of an open body. Strict: one JSON
// object with exactly the field "user_id", a valid user id. The id is a
// slice of p's buffer, valid until p is reused: the open path looks it up
// in memory first and makes a string of it only when it goes to Redis.
func parseOpenBody(p *fastjson.Parser, body []byte) ([]byte, error) {
	if len(body) > rain.MaxOpenBody {
		return nil, errOpenTooBig
	}
	// fastjson unescapes "best effort": it keeps an invalid escape as
	// text. Bodies with a backslash are rare, so they alone are checked.
	if bytes.IndexByte(body, '\\') >= 0 && !validEscapes(body) {
		return nil, errOpenJSON
	}
	v, err := p.ParseBytes(body)
	if err != nil {
		return nil, errOpenJSON
	}
	o, err := v.Object()
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

// validEscapes reports whether every escape inside the JSON strings of b
// is valid JSON (RFC 8259, 7): a backslash followed by one of "\/bfnrt, or
// by u and four hex digits, where a high surrogate is followed at once by
// an escaped low one and a low one never stands alone. It checks escapes
// only; the parser checks the rest.
func validEscapes(b []byte) bool {
	in := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			in = !in
		case c == '\\' && in:
			if i+1 >= len(b) {
				return false
			}
			i++
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				r, ok := hex4(b[i+1:])
				if !ok {
					return false
				}
				i += 4
				switch {
				case r >= 0xdc00 && r <= 0xdfff:
					return false // a low surrogate with no high one before it
				case r >= 0xd800 && r <= 0xdbff:
					if i+2 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
						return false
					}
					lo, ok := hex4(b[i+3:])
					if !ok || lo < 0xdc00 || lo > 0xdfff {
						return false
					}
					i += 6
				}
			default:
				return false
			}
		}
	}
	return true
}

// hex4 decodes four hex digits at the start of b.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
