package edge

import (
	"sort"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/strictjson"
	"github.com/valyala/fastjson"
)

// createFields are the fields of a create body, in the order
// parseCreateBody's switch takes them; the first four are required.
var createFields = []string{"name", "start_time", "end_time", "inventory", "buckets"}

const createRequired = 1<<4 - 1

// parseCreateBody decodes and validates a campaign to create. Strict
// (internal/strictjson): field names exactly as the API spells them, none
// twice, no unknown field, no trailing data, valid JSON strings and
// numbers, counts and amounts as canonical integers, no inventory amount
// twice. Times are RFC 3339 with an offset under 24 h, truncated to the
// millisecond (what Redis holds). Every failure is a rain.EINVALID error
// naming the problem.
func parseCreateBody(body []byte) (*rain.Campaign, error) {
	if len(body) > rain.MaxCreateBody {
		return nil, rain.Errorf(rain.ETOOLARGE, "body is over 64 KiB")
	}
	p := bodyParsers.Get()
	defer bodyParsers.Put(p)
	o, err := strictjson.Parse(p, body)
	if err != nil {
		return nil, badJSON(err)
	}
	c := &rain.Campaign{Buckets: 1}
	seen, err := strictjson.Fields(o, createFields, func(i int, v *fastjson.Value) (err error) {
		switch i {
		case 0:
			c.Name, err = stringValue(v, "name")
		case 1:
			c.StartTime, err = timeValue(v, "start_time")
		case 2:
			c.EndTime, err = timeValue(v, "end_time")
		case 3:
			c.Inventory, err = inventoryValue(v)
		case 4:
			c.Buckets, err = bucketsValue(v)
		}
		return err
	})
	if err != nil {
		return nil, badJSON(err)
	}
	if seen&createRequired != createRequired {
		return nil, rain.Errorf(rain.EINVALID, "name, start_time, end_time and inventory are required")
	}
	sort.Slice(c.Inventory, func(i, j int) bool { return c.Inventory[i].Amount > c.Inventory[j].Amount })
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// stringValue reads a member's value that must be a JSON string.
func stringValue(v *fastjson.Value, field string) (string, error) {
	b, err := v.StringBytes()
	if err != nil {
		return "", rain.Errorf(rain.EINVALID, "%s must be a string", field)
	}
	return string(b), nil
}

// timeValue reads an RFC 3339 time, truncated to the millisecond.
func timeValue(v *fastjson.Value, field string) (time.Time, error) {
	s, err := stringValue(v, field)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if !rfc3339Shape(s) || t.UnmarshalText([]byte(s)) != nil {
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
func inventoryValue(v *fastjson.Value) ([]rain.Stock, error) {
	o, err := v.Object()
	if err != nil {
		return nil, rain.Errorf(rain.EINVALID, "inventory must be an object of amount to count")
	}
	var inv []rain.Stock
	o.Visit(func(key []byte, n *fastjson.Value) {
		if err != nil {
			return
		}
		if len(inv) == rain.MaxInventory {
			err = rain.Errorf(rain.EINVALID, "inventory must have 1-%d amounts", rain.MaxInventory)
			return
		}
		var amount int64
		if amount, err = rain.ParseAmount(string(key)); err != nil {
			return
		}
		for _, st := range inv {
			if st.Amount == amount {
				err = rain.Errorf(rain.EINVALID, "bad JSON: inventory amount %s twice", key)
				return
			}
		}
		count, ok := strictjson.Int(n)
		if !ok || count < 1 || count > rain.MaxCount {
			err = rain.Errorf(rain.EINVALID, "inventory count for amount %s must be an integer 1-%d", key, rain.MaxCount)
			return
		}
		inv = append(inv, rain.Stock{Amount: amount, Total: count})
	})
	return inv, err
}

// bucketsValue reads the number of buckets: a canonical JSON integer 1-64
// (not 4.0, 4e0, "4" or 04).
func bucketsValue(v *fastjson.Value) (int, error) {
	n, ok := strictjson.Int(v)
	if !ok || n < 1 || n > rain.MaxBuckets {
		return 0, rain.Errorf(rain.EINVALID, "buckets must be an integer 1-%d", rain.MaxBuckets)
	}
	return int(n), nil
}
