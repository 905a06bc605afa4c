package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// Kinds of merchant action.
const (
	ActionRestock = "restock" // POST /campaign/{id}/stock with an Idempotency-Key
	ActionEnd     = "end"     // POST /campaign/{id}/end
)

// Action is one merchant request a runner made, with every attempt.
type Action struct {
	Kind     string `json:"kind"`
	Campaign int64  `json:"campaign"`
	Amount   int64  `json:"amount,omitempty"` // restock: the amount stocked
	Count    int64  `json:"count,omitempty"`  // restock: packets added
	Base     int64  `json:"base,omitempty"`   // restock: the amount's total before
	Key      string `json:"key,omitempty"`    // restock: its Idempotency-Key, the same on every attempt
	// StartUnixMs is the wall time (unix ms) of the driver's start: AtMs of
	// records and attempts plus this is a wall time, comparable with the
	// claimed_at of claims (Redis TIME, on the same host).
	StartUnixMs int64     `json:"start_unix_ms"`
	Attempts    []Attempt `json:"attempts"`
}

// Attempt is one request of an action.
type Attempt struct {
	AtMs     int64   `json:"at_ms"`  // when it was sent, ms since the driver started
	LatMs    float64 `json:"lat_ms"` // until the answer (or the error)
	API      int     `json:"api,omitempty"`
	Status   int     `json:"status"` // HTTP status; 0: no answer
	Code     string  `json:"code,omitempty"`
	Err      string  `json:"err,omitempty"`
	Replay   bool    `json:"replay,omitempty"`   // restock: sent again on purpose after the success
	Replayed bool    `json:"replayed,omitempty"` // answered with Idempotent-Replayed: true
	Total    int64   `json:"total,omitempty"`    // restock: the amount's total the answer names
}

// DoneMs is when the attempt's answer (or error) came, ms since the
// driver started.
func (a *Attempt) DoneMs() int64 { return a.AtMs + int64(math.Ceil(a.LatMs)) }

// Sent is when the action's first attempt was sent (false: none was).
func (a *Action) Sent() (int64, bool) {
	if len(a.Attempts) == 0 {
		return 0, false
	}
	return a.Attempts[0].AtMs, true
}

// Ack is the attempt that succeeded: the first 200 that is not a replay on
// purpose (nil: none).
func (a *Action) Ack() *Attempt {
	for i := range a.Attempts {
		if at := &a.Attempts[i]; at.Status == 200 && !at.Replay {
			return at
		}
	}
	return nil
}

// LastMs is when the last attempt's answer (or error) came.
func (a *Action) LastMs() int64 {
	if len(a.Attempts) == 0 {
		return 0
	}
	return a.Attempts[len(a.Attempts)-1].DoneMs()
}

// Wall turns ms since the driver started into unix ms.
func (a *Action) Wall(ms int64) int64 { return a.StartUnixMs + ms }

// Answer names the attempt's answer briefly: "none", "200", "200r" (a
// replay), "503 BUSY".
func (a *Attempt) Answer() string {
	s := "none"
	switch {
	case a.Status == 200:
		s = "200"
	case a.Status != 0:
		s = fmt.Sprintf("%d %s", a.Status, a.Code)
	}
	if a.Replayed {
		s += "r"
	}
	return s
}

// Answers lists the attempts' answers: "none 503 BUSY 200 200r".
func (a *Action) Answers() string { return a.AnswersFrom(0) }

// AnswersFrom lists the answers of the attempts from the from-th on.
func (a *Action) AnswersFrom(from int) string {
	var parts []string
	for _, at := range a.Attempts[min(from, len(a.Attempts)):] {
		parts = append(parts, at.Answer())
	}
	return strings.Join(parts, " ")
}

func (a *Action) String() string {
	s := fmt.Sprintf("%s of campaign %d", a.Kind, a.Campaign)
	if a.Kind == ActionRestock {
		s += fmt.Sprintf(" (amount %d: %d + %d, key %s)", a.Amount, a.Base, a.Count, a.Key)
	}
	s += ": " + a.Answers()
	if at := a.Ack(); at != nil {
		s += fmt.Sprintf(", sent at %.1fs, answered 200 at %.1fs", float64(a.Attempts[0].AtMs)/1000, float64(at.DoneMs())/1000)
	}
	return s
}

// Merchant sends merchant actions to the api replicas, each attempt on a
// new connection (on a reused one net/http would resend a request with an
// Idempotency-Key by itself after a lost answer, and the attempt would not
// be seen), attempt i to BaseURLs[i mod n].
type Merchant struct {
	BaseURLs []string  // the api replicas, http://127.0.0.1:PORT
	Token    string    // the admin token
	Start    time.Time // what attempts' AtMs count from
	// Event notes what happened (nil: nothing is noted).
	Event func(format string, args ...any)
	// BackoffMax bounds the wait between attempts (default 2 s).
	BackoffMax time.Duration
}

var merchantClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (m *Merchant) event(format string, args ...any) {
	if m.Event != nil {
		m.Event(format, args...)
	}
}

// Act sends a until it is answered other than 503, backing off (250 ms
// doubling to BackoffMax) after a 503 or no answer (refused, reset, timed
// out: the request may or may not have taken effect), until deadline.
// Every attempt of a restock carries the same Idempotency-Key. replay
// marks the attempts as a repeat on purpose.
func (m *Merchant) Act(ctx context.Context, a *Action, replay bool, deadline time.Time) {
	wait, most := 250*time.Millisecond, m.BackoffMax
	if most <= 0 {
		most = 2 * time.Second
	}
	n := len(a.Attempts)
	what := a.Kind
	if replay {
		what += " (replay)"
	}
	for {
		at := m.Send(ctx, a, replay, len(a.Attempts))
		a.Attempts = append(a.Attempts, at)
		if at.Status != 0 && at.Status != http.StatusServiceUnavailable {
			m.event("%s of campaign %d: %s after %d attempts (%s)", what, a.Campaign, at.Answer(), len(a.Attempts)-n, a.AnswersFrom(n))
			return
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			m.event("%s of campaign %d: given up after %d attempts (%s)", what, a.Campaign, len(a.Attempts)-n, a.AnswersFrom(n))
			return
		}
		Sleep(ctx, wait)
		wait = min(2*wait, most)
	}
}

// Send makes one attempt of a, the i-th.
func (m *Merchant) Send(ctx context.Context, a *Action, replay bool, i int) (at Attempt) {
	api := i % len(m.BaseURLs)
	path := fmt.Sprintf("/campaign/%d/%s", a.Campaign, map[string]string{ActionEnd: "end", ActionRestock: "stock"}[a.Kind])
	var body []byte
	if a.Kind == ActionRestock {
		body, _ = json.Marshal(map[string]int64{"amount": a.Amount, "count": a.Count})
	}
	sent := time.Now()
	at = Attempt{AtMs: sent.Sub(m.Start).Milliseconds(), Replay: replay, API: api}
	defer func() { at.LatMs = float64(time.Since(sent).Microseconds()) / 1000 }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(m.BaseURLs[api], "/")+path, bytes.NewReader(body))
	if err != nil {
		at.Err = "request: " + err.Error()
		return at
	}
	req.Header.Set("Authorization", "Bearer "+m.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Key != "" {
		req.Header.Set("Idempotency-Key", a.Key)
	}
	resp, b, fail := exchange(merchantClient, req, 1<<20)
	if fail != "" {
		at.Err = fail
		return at
	}
	at.Status = resp.StatusCode
	at.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	var ans answer
	if err := json.Unmarshal(b, &ans); err != nil {
		at.Code = "UNPARSABLE"
		return at
	}
	at.Total = ans.Total
	if at.Status != http.StatusOK {
		at.Code = ans.Status
	}
	return at
}
