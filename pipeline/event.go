// Package pipeline carries claims from the api to PostgreSQL. This package
// holds what both sides share: the claim event and its codec, the Kafka
// settings and topics. The sides are packages of their own, so each binary
// links only its own: producer (the api's ring buffer and Kafka producer),
// consumer (the consumer group and batch writer) and reconcile (the repair
// of what a crash left out).
package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/redpacket/rain"
)

// EventVersion is the "v" of the events this build writes and reads.
const EventVersion = 1

// claimedAtLayout is RFC 3339 in UTC with milliseconds, as the README documents.
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

// Event fields, as bits of the set of those seen.
const (
	fieldV = 1 << iota
	fieldCampaignID
	fieldUserID
	fieldAmount
	fieldClaimedAt
)

// DecodeEvent parses and validates one event, strictly. The value must be
// exactly one JSON object, nothing after it but white space (else
// ReasonMalformed); "v" must be EventVersion (else ReasonUnsupportedVersion,
// whatever the other fields); every field must be present once, named in
// exact case, with a value in range, and no other field may appear (else
// ReasonInvalid). Every error is a *BadEventError wrapping ErrBadEvent.
//
// Decoding is off the hot path, so it uses encoding/json's tokenizer: its
// struct decoding would match names case-insensitively, keep the last of
// duplicate keys and stop at the end of the first value.
func DecodeEvent(b []byte) (Event, error) {
	var (
		v                  json.RawMessage
		campaignID, amount int64
		userID, claimedAt  string
		named, seen        int   // fields named; fields with a value other than null
		invalid            error // the first field error; the version decides first
		skip               json.RawMessage
	)
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return Event{}, badEvent(ReasonMalformed, "not a JSON object")
	}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return Event{}, badEvent(ReasonMalformed, "json: %v", err)
		}
		name, _ := tok.(string)
		var bit int
		var dst any // nil: an unknown field, checked for syntax only
		switch name {
		case "v":
			bit = fieldV
		case "campaign_id":
			bit, dst = fieldCampaignID, &campaignID
		case "user_id":
			bit, dst = fieldUserID, &userID
		case "amount":
			bit, dst = fieldAmount, &amount
		case "claimed_at":
			bit, dst = fieldClaimedAt, &claimedAt
		default:
			if invalid == nil {
				invalid = badEvent(ReasonInvalid, "unknown field %.64q", name)
			}
		}
		if named&bit != 0 && invalid == nil {
			invalid = badEvent(ReasonInvalid, "duplicate field %q", name)
		}
		named |= bit
		if bit == fieldV {
			dst = &v
		} else if dst == nil {
			dst = &skip
		}
		// A value of the wrong type is a field error (invalid); the
		// decoder has read past it. Anything else is broken JSON.
		if err := d.Decode(dst); err != nil {
			var typ *json.UnmarshalTypeError
			if !errors.As(err, &typ) {
				return Event{}, badEvent(ReasonMalformed, "json: %v", err)
			}
			if invalid == nil {
				invalid = badEvent(ReasonInvalid, "field %s: %v", name, err)
			}
			continue
		}
		if bit == fieldV && string(v) == "null" {
			continue
		}
		seen |= bit
	}
	if tok, err := d.Token(); err != nil || tok != json.Delim('}') {
		return Event{}, badEvent(ReasonMalformed, "not a JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return Event{}, badEvent(ReasonMalformed, "trailing data after the object")
	}

	switch {
	case seen&fieldV == 0:
		return Event{}, badEvent(ReasonInvalid, "missing v")
	case string(v) != strconv.Itoa(EventVersion):
		return Event{}, badEvent(ReasonUnsupportedVersion, "unsupported version %.32s", v)
	case invalid != nil:
		return Event{}, invalid
	case seen&fieldCampaignID == 0 || campaignID < 1:
		return Event{}, badEvent(ReasonInvalid, "missing or bad campaign_id")
	case seen&fieldUserID == 0 || !rain.ValidUserID([]byte(userID)):
		return Event{}, badEvent(ReasonInvalid, "missing or bad user_id")
	case seen&fieldAmount == 0 || amount < 1 || amount > rain.MaxAmount:
		return Event{}, badEvent(ReasonInvalid, "missing or bad amount")
	case seen&fieldClaimedAt == 0:
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
	return Event{CampaignID: campaignID, UserID: userID, Amount: amount, ClaimedAt: t.UnixMilli()}, nil
}
