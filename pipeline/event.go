// Package pipeline carries claims from the api to PostgreSQL. This package
// holds what both sides share: the claim event and its codec, the Kafka
// settings and topics. The sides are packages of their own, so each binary
// links only its own: producer (the api's ring buffer and Kafka producer),
// consumer (the consumer group and batch writer) and reconcile (the repair
// of what a crash left out).
package pipeline

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/strictjson"
	"github.com/valyala/fastjson"
)

// EventVersion is the "v" of the events this build writes and reads.
const EventVersion = 1

// claimedAtLayout is RFC 3339 in UTC with milliseconds, as docs/api.md documents.
const claimedAtLayout = "2006-01-02T15:04:05.000Z07:00"

// Event is one successful claim, as written to Kafka:
//
//	{"v":1,"campaign_id":1,"user_id":"user-123","amount":20,"claimed_at":"2025-01-01T00:00:01.234Z"}
type Event struct {
	CampaignID int64
	UserID     string
	Amount     int64
	ClaimedAt  int64 // unix ms, by Redis TIME (the same value the claims hash keeps)
}

// AppendJSON appends the event's JSON to b. Hand-written rather than
// encoding/json because it runs once per claim and allocates nothing.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"v":1,"campaign_id":`...)
	b = strconv.AppendInt(b, e.CampaignID, 10)
	b = append(b, `,"user_id":`...)
	b = appendJSONString(b, e.UserID)
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, e.Amount, 10)
	b = append(b, `,"claimed_at":"`...)
	b = time.UnixMilli(e.ClaimedAt).UTC().AppendFormat(b, claimedAtLayout)
	return append(b, '"', '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. User ids are validated to hold
// no control characters, but the codec stays correct for any input: quotes,
// backslashes and bytes below 0x20 are escaped, invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ErrBadEvent is wrapped by every error DecodeEvent returns; such records
// go to the dead-letter topic. errors.As with *BadEventError gives the
// reason.
var ErrBadEvent = errors.New("bad event")

// BadEventError is why DecodeEvent refused a record: Reason is one of
// ReasonMalformed, ReasonUnsupportedVersion or ReasonInvalid.
type BadEventError struct {
	Reason string
	Detail string
}

func (e *BadEventError) Error() string { return "bad event: " + e.Reason + ": " + e.Detail }

// Unwrap makes errors.Is(err, ErrBadEvent) hold.
func (e *BadEventError) Unwrap() error { return ErrBadEvent }

func badEvent(reason, format string, args ...any) error {
	return &BadEventError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// eventFields are an event's fields, in the order DecodeEvent's switch
// takes them.
var eventFields = []string{"v", "campaign_id", "user_id", "amount", "claimed_at"}

// eventParsers are reused across events (fastjson parses into the
// parser's own buffers).
var eventParsers fastjson.ParserPool

// DecodeEvent parses and validates one event, strictly
// (internal/strictjson). The value must be exactly one JSON object, nothing
// after it but white space (else ReasonMalformed); "v" must be
// EventVersion (else ReasonUnsupportedVersion, whatever the other fields);
// every field must be present once, named in exact case, with a value in
// range, and no other field may appear (else ReasonInvalid). Every error is
// a *BadEventError wrapping ErrBadEvent.
func DecodeEvent(b []byte) (Event, error) {
	p := eventParsers.Get()
	defer eventParsers.Put(p)
	o, err := strictjson.Parse(p, b)
	switch {
	case errors.Is(err, strictjson.ErrNotObject):
		return Event{}, badEvent(ReasonMalformed, "not a JSON object")
	case err != nil:
		return Event{}, badEvent(ReasonMalformed, "%v", err)
	}
	// The version decides first: a later one may have other fields.
	var vbuf [24]byte
	switch v := o.Get("v"); {
	case v == nil || v.Type() == fastjson.TypeNull:
		return Event{}, badEvent(ReasonInvalid, "missing v")
	case string(v.MarshalTo(vbuf[:0])) != strconv.Itoa(EventVersion):
		return Event{}, badEvent(ReasonUnsupportedVersion, "unsupported version %.32s", v.MarshalTo(vbuf[:0]))
	}
	var (
		e         Event
		claimedAt string
	)
	_, err = strictjson.Fields(o, eventFields, func(i int, v *fastjson.Value) error {
		var ok bool
		switch i {
		case 1:
			e.CampaignID, ok = strictjson.Int(v)
			ok = ok && e.CampaignID >= 1
		case 2:
			u, err := v.StringBytes()
			ok = err == nil && rain.ValidUserID(u)
			e.UserID = string(u)
		case 3:
			e.Amount, ok = strictjson.Int(v)
			ok = ok && e.Amount >= 1 && e.Amount <= rain.MaxAmount
		case 4:
			at, err := v.StringBytes()
			ok, claimedAt = err == nil, string(at)
		default:
			return nil
		}
		if !ok {
			return badEvent(ReasonInvalid, "missing or bad %s", eventFields[i])
		}
		return nil
	})
	var fe *strictjson.FieldError
	switch {
	case errors.As(err, &fe):
		return Event{}, badEvent(ReasonInvalid, "%v", fe)
	case err != nil:
		return Event{}, err
	case e.CampaignID == 0 || e.UserID == "" || e.Amount == 0:
		return Event{}, badEvent(ReasonInvalid, "missing campaign_id, user_id or amount")
	case claimedAt == "":
		return Event{}, badEvent(ReasonInvalid, "missing claimed_at")
	}
	t, err := time.Parse(time.RFC3339Nano, claimedAt)
	if err != nil {
		return Event{}, badEvent(ReasonInvalid, "bad claimed_at %.64q", claimedAt)
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return Event{}, badEvent(ReasonInvalid, "claimed_at offset out of range")
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return Event{}, badEvent(ReasonInvalid, "claimed_at out of years 1-9999 (UTC)")
	}
	e.ClaimedAt = t.UnixMilli()
	return e, nil
}
