package edge

import (
	"bytes"
	"encoding/json"
	"io"
	"sort"
	"time"

	"github.com/redpacket/rain"
)

// parseCreateBody decodes and validates a campaign to create. Strict:
// field names exactly as the SPEC spells them (encoding/json alone would
// take "Name" or "NAME"), no field or inventory amount twice (encoding/json
// would keep the last), no unknown field, no trailing data, valid string
// escapes, counts and amounts as canonical integers. Times are RFC 3339
// with an offset under 24 h, truncated to the millisecond (what Redis
// holds). Every failure is a rain.EINVALID error naming the problem.
func parseCreateBody(body []byte) (*rain.Campaign, error) {
	if len(body) > rain.MaxCreateBody {
		return nil, rain.Errorf(rain.ETOOLARGE, "body is over 64 KiB")
	}
	if bytes.IndexByte(body, '\\') >= 0 && !validEscapes(body) {
		return nil, rain.Errorf(rain.EINVALID, "bad JSON: invalid escape in a string")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := expectDelim(d, '{'); err != nil {
		return nil, err
	}
	c := &rain.Campaign{}
	var seen struct{ name, start, end, inventory, buckets bool }
	for d.More() {
		key, err := objectKey(d)
		if err != nil {
			return nil, err
		}
		var dup bool
		switch key {
		case "name":
			dup, seen.name = seen.name, true
			c.Name, err = stringValue(d, key)
		case "start_time":
			dup, seen.start = seen.start, true
			c.StartTime, err = timeValue(d, key)
		case "end_time":
			dup, seen.end = seen.end, true
			c.EndTime, err = timeValue(d, key)
		case "inventory":
			dup, seen.inventory = seen.inventory, true
			c.Inventory, err = inventoryValue(d)
		case "buckets":
			dup, seen.buckets = seen.buckets, true
			c.Buckets, err = bucketsValue(d)
		default:
			return nil, rain.Errorf(rain.EINVALID, "bad JSON: unknown field %q", key)
		}
		if dup {
			return nil, rain.Errorf(rain.EINVALID, "bad JSON: field %q twice", key)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := expectDelim(d, '}'); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, rain.Errorf(rain.EINVALID, "bad JSON: data after the object")
	}
	if !seen.name || !seen.start || !seen.end || !seen.inventory {
		return nil, rain.Errorf(rain.EINVALID, "name, start_time, end_time and inventory are required")
	}
	if !seen.buckets {
		c.Buckets = 1
	}
	sort.Slice(c.Inventory, func(i, j int) bool { return c.Inventory[i].Amount > c.Inventory[j].Amount })
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// badJSON is the error of a decoder failure.
func badJSON(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return rain.Errorf(rain.EINVALID, "bad JSON: %v", err)
}

// expectDelim reads the delimiter want ('{' or '}').
func expectDelim(d *json.Decoder, want json.Delim) error {
	t, err := d.Token()
	if err != nil {
		return badJSON(err)
	}
	if t != want {
		if want == '{' {
			return rain.Errorf(rain.EINVALID, "bad JSON: the body must be an object")
		}
		return rain.Errorf(rain.EINVALID, "bad JSON: %v where the object should end", t)
	}
	return nil
}

// objectKey reads the key of the next member of an object.
func objectKey(d *json.Decoder) (string, error) {
	t, err := d.Token()
	if err != nil {
		return "", badJSON(err)
	}
	key, ok := t.(string)
	if !ok {
		return "", rain.Errorf(rain.EINVALID, "bad JSON: %v where a field name should be", t)
	}
	return key, nil
}

// stringValue reads a member's value that must be a JSON string.
func stringValue(d *json.Decoder, field string) (string, error) {
	t, err := d.Token()
	if err != nil {
		return "", badJSON(err)
	}
	v, ok := t.(string)
	if !ok {
		return "", rain.Errorf(rain.EINVALID, "%s must be a string", field)
	}
	return v, nil
}

// timeValue reads an RFC 3339 time, truncated to the millisecond.
func timeValue(d *json.Decoder, field string) (time.Time, error) {
	v, err := stringValue(d, field)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if !rfc3339Shape(v) || t.UnmarshalText([]byte(v)) != nil {
		return time.Time{}, rain.Errorf(rain.EINVALID,
			"%s must be an RFC 3339 time (YYYY-MM-DDTHH:MM:SS[.fraction] and Z or an offset ±HH:MM under 24 h)", field)
	}
	return t.Truncate(time.Millisecond), nil
}

// rfc3339Shape reports whether s has the shape of an RFC 3339 date-time
// (section 5.6): Go also takes a one-digit hour, a comma before the
// fraction and offsets up to 99 h, which RFC 3339 does not. Ranges of the
// fields other than the offset's are left to the parser.
func rfc3339Shape(s string) bool {
	const shape = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(shape)+1 {
		return false
	}
	for i := 0; i < len(shape); i++ {
		if c := s[i]; shape[i] == 'd' && (c < '0' || c > '9') || shape[i] != 'd' && c != shape[i] {
			return false
		}
	}
	s = s[len(shape):]
	if s[0] == '.' {
		n := 1
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		if n == 1 {
			return false
		}
		s = s[n:]
	}
	if s == "Z" {
		return true
	}
	// ±HH:MM with HH 00-23 and MM 00-59
	return len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':' &&
		(s[1] >= '0' && s[1] <= '1' && s[2] >= '0' && s[2] <= '9' || s[1] == '2' && s[2] >= '0' && s[2] <= '3') &&
		s[4] >= '0' && s[4] <= '5' && s[5] >= '0' && s[5] <= '9'
}

// inventoryValue reads the inventory object: canonical integer amounts,
// each once, to canonical integer counts.
func inventoryValue(d *json.Decoder) ([]rain.Stock, error) {
	if t, err := d.Token(); err != nil {
		return nil, badJSON(err)
	} else if t != json.Delim('{') {
		return nil, rain.Errorf(rain.EINVALID, "inventory must be an object of amount to count")
	}
	var inv []rain.Stock
	for d.More() {
		key, err := objectKey(d)
		if err != nil {
			return nil, err
		}
		if len(inv) == rain.MaxInventory {
			return nil, rain.Errorf(rain.EINVALID, "inventory must have 1-%d amounts", rain.MaxInventory)
		}
		amount, err := rain.ParseAmount(key)
		if err != nil {
			return nil, err
		}
		for _, st := range inv {
			if st.Amount == amount {
				return nil, rain.Errorf(rain.EINVALID, "bad JSON: inventory amount %s twice", key)
			}
		}
		t, err := d.Token()
		if err != nil {
			return nil, badJSON(err)
		}
		n, ok := t.(json.Number)
		count, err := rain.ParseAmount(string(n)) // same canonical-integer rule
		if !ok || err != nil || count > rain.MaxCount {
			return nil, rain.Errorf(rain.EINVALID, "inventory count for amount %s must be an integer 1-%d", key, rain.MaxCount)
		}
		inv = append(inv, rain.Stock{Amount: amount, Total: count})
	}
	if err := expectDelim(d, '}'); err != nil {
		return nil, err
	}
	return inv, nil
}

// bucketsValue reads the number of buckets: a canonical JSON integer 1-64
// (not 4.0, 4e0, "4" or 04).
func bucketsValue(d *json.Decoder) (int, error) {
	t, err := d.Token()
	if err != nil {
		return 0, badJSON(err)
	}
	n, ok := t.(json.Number)
	v, perr := rain.ParseAmount(string(n)) // the canonical-integer rule
	if !ok || perr != nil || v > rain.MaxBuckets {
		return 0, rain.Errorf(rain.EINVALID, "buckets must be an integer 1-%d", rain.MaxBuckets)
	}
	return int(v), nil
}
