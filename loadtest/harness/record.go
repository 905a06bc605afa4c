package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// Kinds of attempt the driver makes.
const (
	KindFirst  = "first"  // a new user's first open
	KindRetry  = "retry"  // the same user again after no answer or 503
	KindRepeat = "repeat" // a user who got 200 opens again during the run
	KindVerify = "verify" // a user who got 200 opens again after the run
	KindProbe  = "probe"  // a new user's first open once the faults healed (make torture)
)

// Record is one attempt of the driver, one line of its JSONL file.
// Status 0 means no answer: the connection was refused or reset, or the
// request timed out; the open may or may not have been claimed.
type Record struct {
	Campaign int64   `json:"campaign"`
	User     string  `json:"user"`
	Kind     string  `json:"kind"`
	Attempt  int     `json:"attempt"`          // 1 for the first open of the user, then counting
	API      int     `json:"api,omitempty"`    // which api it was sent to (index into the driver's BaseURLs)
	AtMs     int64   `json:"at_ms"`            // when it was sent, ms since the driver started
	LatMs    float64 `json:"lat_ms"`           // how long until the answer (or the error)
	Status   int     `json:"status"`           // HTTP status; 0: no answer
	Code     string  `json:"code,omitempty"`   // the body's "status" (OK, ALREADY_OPENED, BUSY, ...)
	Amount   int64   `json:"amount,omitempty"` // 200 and 409
	Err      string  `json:"err,omitempty"`    // why there was no answer
}

// Answered reports whether the api answered the attempt.
func (r *Record) Answered() bool { return r.Status != 0 }

// Busy reports whether the answer was the designed 503 BUSY.
func (r *Record) Busy() bool { return r.Status == 503 && r.Code == "BUSY" }

// Done is when the answer (or the error) came, ms since the driver started.
func (r *Record) Done() int64 { return r.AtMs + int64(math.Ceil(r.LatMs)) }

// WriteRecords writes records as JSON lines.
func WriteRecords(w io.Writer, recs []Record) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadRecords reads a JSONL file written by the driver.
func ReadRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		recs = append(recs, r)
	}
	return recs, sc.Err()
}

// Histories groups the records by campaign and user, each in attempt order.
func Histories(recs []Record) [][]*Record {
	type key struct {
		c int64
		u string
	}
	idx := make(map[key]int)
	var out [][]*Record
	for i := range recs {
		k := key{recs[i].Campaign, recs[i].User}
		j, ok := idx[k]
		if !ok {
			j = len(out)
			idx[k] = j
			out = append(out, nil)
		}
		out[j] = append(out[j], &recs[i])
	}
	for _, h := range out {
		sort.SliceStable(h, func(a, b int) bool { return h[a].Attempt < h[b].Attempt })
	}
	return out
}

// FirstClaim is the first 200 of a history, else its first 409, else nil:
// the claim the api told the user of.
func FirstClaim(h []*Record) *Record {
	var first409 *Record
	for _, r := range h {
		switch {
		case r.Status == 200:
			return r
		case r.Status == 409 && first409 == nil:
			first409 = r
		}
	}
	return first409
}

// HasNoAnswer reports whether an attempt of h got no answer.
func HasNoAnswer(h []*Record) bool {
	return slices.ContainsFunc(h, func(r *Record) bool { return !r.Answered() })
}

// AnswersOf lists the answers of a history briefly: "503 503 410".
func AnswersOf(h []*Record) string {
	keys := make([]string, len(h))
	for i, r := range h {
		keys[i] = StatusKey(r)
	}
	return strings.Join(keys, " ")
}

// FirstResolution looks at a history up to its first definitive answer
// (anything but no answer and 503). unknown and busy report whether an
// attempt with no answer, or a 503, came before it; r is that answer (nil
// if there is none).
func FirstResolution(h []*Record) (r *Record, unknown, busy bool) {
	for _, r := range h {
		switch {
		case !r.Answered():
			unknown = true
		case r.Busy():
			busy = true
		default:
			return r, unknown, busy
		}
	}
	return nil, unknown, busy
}

// AmountsOf are the amounts of rs, in order.
func AmountsOf(rs []*Record) []int64 {
	out := make([]int64, len(rs))
	for i, r := range rs {
		out[i] = r.Amount
	}
	return out
}

// CountBy counts claims (user → amount) per amount.
func CountBy(claims map[string]int64) map[int64]int64 {
	out := make(map[int64]int64)
	for _, a := range claims {
		out[a]++
	}
	return out
}

// StatusKey names an answer for the counts: "200", "503", "none", or the
// status with its code when it is not the usual one ("500 INTERNAL").
func StatusKey(r *Record) string {
	switch {
	case !r.Answered():
		return "none"
	case r.Status == 200 && r.Code == "OK", r.Status == 409 && r.Code == "ALREADY_OPENED",
		r.Status == 410 && r.Code == "SOLD_OUT", r.Busy():
		return fmt.Sprint(r.Status)
	}
	return fmt.Sprintf("%d %s", r.Status, r.Code)
}

// FormatStatuses prints answer counts in a stable order: 200 409 410 503,
// then the rest, then none.
func FormatStatuses(m map[string]int) string {
	order := func(k string) string {
		switch k {
		case "200", "409", "410", "503":
			return "0" + k
		case "none":
			return "2"
		}
		return "1" + k
	}
	keys := slices.Collect(maps.Keys(m))
	sort.Slice(keys, func(i, j int) bool { return order(keys[i]) < order(keys[j]) })
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	if b.Len() == 0 {
		return "no requests"
	}
	return b.String()
}
