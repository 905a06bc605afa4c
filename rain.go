// Package rain holds the domain of the red packet rain service: campaigns,
// their inventory, and the application errors every other package returns.
//
// Sub-packages implement the parts: lua (the Redis scripts and key scheme),
// edge (HTTP), pipeline (ring buffer, Kafka, PostgreSQL batch writer,
// reconciler) and migrations (the SQL schema).
package rain

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of the public API (docs/api.md).
const (
	MaxNameLen       = 200           // characters in a campaign name
	MaxInventory     = 64            // distinct amounts per campaign
	MaxAmount        = 1_000_000_000 // largest packet amount, in minor units
	MaxCount         = 100_000_000   // most packets of one amount
	MaxUserIDLen     = 128           // bytes in a user id
	MaxCreateBody    = 64 << 10      // bytes in a POST /campaign body
	MaxOpenBody      = 4 << 10       // bytes in a POST /campaign/{id}/open body
	MaxCampaignIDLen = 19            // decimal digits of an int64 id
	MaxBuckets       = 64            // buckets a campaign's stock may be split over
)

// Campaign is a merchant's packet rain: a time window and an inventory.
type Campaign struct {
	ID        int64
	Name      string
	StartTime time.Time
	EndTime   time.Time
	CreatedAt time.Time
	Inventory []Stock // sorted by Amount, descending
	// Buckets is how many Redis hash tags the stock is split over, 1 to
	// MaxBuckets; 0 reads as 1.
	Buckets int
}

// K is the campaign's number of buckets (at least 1).
func (c *Campaign) K() int { return max(c.Buckets, 1) }

// Stock is the inventory of one packet amount.
type Stock struct {
	Amount int64 // integer minor units
	Total  int64 // packets of this amount the campaign started with
	Opened int64 // claims of this amount persisted in PostgreSQL
}

// Validate checks a campaign to be created against the API limits: a
// name of 1-200 characters with no control characters (PostgreSQL refuses
// NUL in text), times within the years 1-9999 in UTC (what JSON, RFC 3339
// and PostgreSQL all hold), and a window of at least a millisecond (the
// unit Redis keeps; times are truncated to it before they get here).
func (c *Campaign) Validate() error {
	if n := utf8.RuneCountInString(c.Name); n < 1 || n > MaxNameLen || !utf8.ValidString(c.Name) ||
		strings.IndexFunc(c.Name, unicode.IsControl) >= 0 {
		return Errorf(EINVALID, "name must be 1-%d characters, none of them a control character", MaxNameLen)
	}
	for _, t := range []time.Time{c.StartTime, c.EndTime} {
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return Errorf(EINVALID, "start_time and end_time must be within the years 1-9999 in UTC")
		}
	}
	if c.EndTime.Sub(c.StartTime) < time.Millisecond {
		return Errorf(EINVALID, "end_time must be at least 1 ms after start_time")
	}
	if c.Buckets < 0 || c.Buckets > MaxBuckets {
		return Errorf(EINVALID, "buckets must be an integer 1-%d", MaxBuckets)
	}
	if len(c.Inventory) < 1 || len(c.Inventory) > MaxInventory {
		return Errorf(EINVALID, "inventory must have 1-%d amounts", MaxInventory)
	}
	for _, s := range c.Inventory {
		if s.Amount < 1 || s.Amount > MaxAmount {
			return Errorf(EINVALID, "inventory amount %d out of range 1-%d", s.Amount, MaxAmount)
		}
		if s.Total < 1 || s.Total > MaxCount {
			return Errorf(EINVALID, "inventory count for amount %d out of range 1-%d", s.Amount, MaxCount)
		}
	}
	return nil
}

// ParseAmount parses an inventory key: the canonical decimal text of an
// integer amount in 1..MaxAmount ("20", never "020", "+20", "2e1" or "20.0").
func ParseAmount(s string) (int64, error) {
	if s == "" || len(s) > 10 || s[0] == '0' {
		return 0, Errorf(EINVALID, "inventory key %q is not an integer amount 1-%d", s, MaxAmount)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, Errorf(EINVALID, "inventory key %q is not an integer amount 1-%d", s, MaxAmount)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > MaxAmount {
		return 0, Errorf(EINVALID, "inventory key %q is not an integer amount 1-%d", s, MaxAmount)
	}
	return n, nil
}

// ParseCampaignID parses the {id} path segment: a positive decimal int64.
func ParseCampaignID(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > MaxCampaignIDLen || b[0] == '0' {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// ValidUserID reports whether b is an acceptable user id: 1-128 bytes of
// valid UTF-8 with no control characters and no whitespace.
func ValidUserID(b []byte) bool {
	if len(b) == 0 || len(b) > MaxUserIDLen {
		return false
	}
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf { // ASCII fast path
			if c <= ' ' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError || isSpaceOrControl(r) {
			return false
		}
		i += size
	}
	return true
}

// isSpaceOrControl covers the non-ASCII Unicode white space (Zs, U+0085,
// U+2028/9) and the C1 control characters.
func isSpaceOrControl(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f, r == 0xa0, r == 0x1680, r >= 0x2000 && r <= 0x200a,
		r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000, r == 0xfeff:
		return true
	}
	return false
}
