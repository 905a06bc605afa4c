package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Kinds of attempt the driver makes.
const (
	KindFirst  = "first"  // a new user's first open
	KindRetry  = "retry"  // the same user again after no answer or 503
	KindRepeat = "repeat" // a user who got 200 opens again during the run
	KindVerify = "verify" // a user who got 200 opens again after the run
)

// Record is one attempt of the driver, one line of its JSONL file.
// Status 0 means no answer: the connection was refused or reset, or the
// request timed out; the open may or may not have been claimed.
type Record struct {
	Campaign int64   `json:"campaign"`
	User     string  `json:"user"`
	Kind     string  `json:"kind"`
	Attempt  int     `json:"attempt"`          // 1 for the first open of the user, then counting
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

// writeRecords writes records as JSON lines.
func writeRecords(w io.Writer, recs []Record) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range recs {
		if err := enc.Encode(&recs[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// readRecords reads a JSONL file written by the driver.
func readRecords(path string) ([]Record, error) {
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
