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

// wireEvent is the decoding shape; pointers tell a missing field from a zero.
type wireEvent struct {
	V          *int    `json:"v"`
	CampaignID *int64  `json:"campaign_id"`
	UserID     *string `json:"user_id"`
	Amount     *int64  `json:"amount"`
	ClaimedAt  *string `json:"claimed_at"`
}

// ErrBadEvent wraps every reason DecodeEvent rejects a record; such records
// go to the dead-letter topic.
var ErrBadEvent = errors.New("bad event")

// DecodeEvent parses and validates one event. Decoding is off the hot path,
// so it uses encoding/json, strictly: unknown fields, a missing field, a
// version other than EventVersion or an invalid value are errors wrapping
// ErrBadEvent.
func DecodeEvent(b []byte) (Event, error) {
	var w wireEvent
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&w); err != nil {
		return Event{}, fmt.Errorf("%w: json: %v", ErrBadEvent, err)
	}
	if d.More() {
		return Event{}, fmt.Errorf("%w: trailing data after the object", ErrBadEvent)
	}
	switch {
	case w.V == nil:
		return Event{}, fmt.Errorf("%w: missing v", ErrBadEvent)
	case *w.V != EventVersion:
		return Event{}, fmt.Errorf("%w: unsupported version %d", ErrBadEvent, *w.V)
	case w.CampaignID == nil || *w.CampaignID < 1:
		return Event{}, fmt.Errorf("%w: missing or bad campaign_id", ErrBadEvent)
	case w.UserID == nil || !rain.ValidUserID([]byte(*w.UserID)):
		return Event{}, fmt.Errorf("%w: missing or bad user_id", ErrBadEvent)
	case w.Amount == nil || *w.Amount < 1 || *w.Amount > rain.MaxAmount:
		return Event{}, fmt.Errorf("%w: missing or bad amount", ErrBadEvent)
	case w.ClaimedAt == nil:
		return Event{}, fmt.Errorf("%w: missing claimed_at", ErrBadEvent)
	}
	t, err := time.Parse(time.RFC3339Nano, *w.ClaimedAt)
	if err != nil {
		return Event{}, fmt.Errorf("%w: bad claimed_at: %v", ErrBadEvent, err)
	}
	return Event{CampaignID: *w.CampaignID, UserID: *w.UserID, Amount: *w.Amount, ClaimedAt: t.UnixMilli()}, nil
}
