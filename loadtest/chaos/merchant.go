package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A scenario's merchant step (unless Scenario.NoMerchant): while the load
// runs and the fault is in effect, the runner ends one campaign and adds
// stock to another that has sold out, each retried on 503 or no answer, so
// the fault may hit them. Check (checkmerchant.go) then holds them to
// their contract.

// Kinds of merchant action.
const (
	ActionRestock = "restock" // POST /campaign/{id}/stock with an Idempotency-Key
	ActionEnd     = "end"     // POST /campaign/{id}/end
)

// Action is one merchant request the runner made, with every attempt.
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
	Status   int     `json:"status"` // HTTP status; 0: no answer
	Code     string  `json:"code,omitempty"`
	Err      string  `json:"err,omitempty"`
	Replay   bool    `json:"replay,omitempty"`   // restock: sent again on purpose after the success
	Replayed bool    `json:"replayed,omitempty"` // answered with Idempotent-Replayed: true
	Total    int64   `json:"total,omitempty"`    // restock: the amount's total the answer names
}

// doneMs is when the attempt's answer (or error) came, ms since the
// driver started.
func (a *Attempt) doneMs() int64 { return a.AtMs + int64(math.Ceil(a.LatMs)) }

// done is when a record's answer came, ms since the driver started.
func done(r *Record) int64 { return r.AtMs + int64(math.Ceil(r.LatMs)) }

// sent is when the action's first attempt was sent (false: none was).
func (a *Action) sent() (int64, bool) {
	if len(a.Attempts) == 0 {
		return 0, false
	}
	return a.Attempts[0].AtMs, true
}

// ack is the attempt that succeeded: the first 200 that is not a replay on
// purpose (nil: none).
func (a *Action) ack() *Attempt {
	for i := range a.Attempts {
		if at := &a.Attempts[i]; at.Status == 200 && !at.Replay {
			return at
		}
	}
	return nil
}

// wall turns ms since the driver started into unix ms.
func (a *Action) wall(ms int64) int64 { return a.StartUnixMs + ms }

// answer names the attempt's answer briefly: "none", "200", "200r" (a
// replay), "503 BUSY".
func (a *Attempt) answer() string {
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

// answers lists the attempts' answers: "none 503 BUSY 200 200r".
func (a *Action) answers() string { return a.answersFrom(0) }

// answersFrom lists the answers of the attempts from the from-th on.
func (a *Action) answersFrom(from int) string {
	var b strings.Builder
	for _, at := range a.Attempts[min(from, len(a.Attempts)):] {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(at.answer())
	}
	return b.String()
}

func (a *Action) String() string {
	s := fmt.Sprintf("%s of campaign %d", a.Kind, a.Campaign)
	if a.Kind == ActionRestock {
		s += fmt.Sprintf(" (amount %d: %d + %d, key %s)", a.Amount, a.Base, a.Count, a.Key)
	}
	s += ": " + a.answers()
	if at := a.ack(); at != nil {
		s += fmt.Sprintf(", sent at %.1fs, answered 200 at %.1fs", float64(a.Attempts[0].AtMs)/1000, float64(at.doneMs())/1000)
	}
	return s
}

// merchantPlan is the merchant step of a scenario: which campaigns, and
// what to add.
type merchantPlan struct {
	refill, ended int64 // the campaign restocked, the one ended
	amount, count int64 // the stock added to refill
	base          int64 // refill's total of amount before
	key           string
	soldOut       chan struct{} // closed at refill's first 410
	once          sync.Once
}

// observe watches the driver's records for refill's first 410.
func (m *merchantPlan) observe(r *Record) {
	if r.Campaign == m.refill && r.Status == 410 {
		m.once.Do(func() { close(m.soldOut) })
	}
}

// Timing of the merchant step, from the moment the fault is in effect.
const (
	endAfterFault     = 250 * time.Millisecond
	restockAfterFault = 500 * time.Millisecond
	actionBackoffMax  = 2 * time.Second
)

// merchantClient sends every attempt on a new connection: on a reused one
// net/http would resend a request with an Idempotency-Key by itself after
// a lost answer, and the attempt would not be seen.
var merchantClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// merchant runs the merchant step: once the fault is in effect (faulted
// closed; a fault that does not tell: 2 s after it was due) it ends
// m.ended, and restocks m.refill once that sold out (at the latest half
// way through the load), then sends the restock again with the same key
// on purpose. Each action is retried until the load and its tail are over.
func (r *run) merchant(ctx context.Context, m *merchantPlan, faulted <-chan struct{}) []*Action {
	p := r.Profile
	deadline := r.start.Add(p.Duration + p.Tail)
	select {
	case <-faulted:
	case <-time.After(time.Until(r.start.Add(p.FaultAt + 2*time.Second))):
	case <-ctx.Done():
	}
	end := &Action{Kind: ActionEnd, Campaign: m.ended, StartUnixMs: r.start.UnixMilli()}
	restock := &Action{Kind: ActionRestock, Campaign: m.refill, Amount: m.amount, Count: m.count, Base: m.base,
		Key: m.key, StartUnixMs: r.start.UnixMilli()}
	var wg sync.WaitGroup
	wg.Go(func() {
		sleep(ctx, endAfterFault)
		r.act(ctx, end, false, deadline)
	})
	wg.Go(func() {
		sleep(ctx, restockAfterFault)
		select {
		case <-m.soldOut:
		case <-time.After(time.Until(r.start.Add(p.Duration / 2))):
			r.event("campaign %d not sold out yet: restocking it anyway", m.refill)
		case <-ctx.Done():
		}
		r.act(ctx, restock, false, deadline)
		if restock.ack() != nil {
			r.act(ctx, restock, true, deadline)
		}
	})
	wg.Wait()
	return []*Action{restock, end}
}

// act sends a until it is answered other than 503, backing off (250 ms
// doubling to 2 s) after a 503 or no answer (refused, reset, timed out: the
// request may or may not have taken effect), until deadline. Every attempt
// of a restock carries the same Idempotency-Key. replay marks the attempts
// as the repeat on purpose.
func (r *run) act(ctx context.Context, a *Action, replay bool, deadline time.Time) {
	wait := 250 * time.Millisecond
	n := len(a.Attempts)
	for {
		at := r.send(ctx, a, replay)
		a.Attempts = append(a.Attempts, at)
		what := a.Kind
		if replay {
			what += " (replay)"
		}
		if at.Status != 0 && at.Status != http.StatusServiceUnavailable {
			r.event("%s of campaign %d: %s after %d attempts (%s)", what, a.Campaign, at.answer(), len(a.Attempts)-n, a.answersFrom(n))
			return
		}
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			r.event("%s of campaign %d: given up after %d attempts (%s)", what, a.Campaign, len(a.Attempts)-n, a.answersFrom(n))
			return
		}
		sleep(ctx, wait)
		wait = min(2*wait, actionBackoffMax)
	}
}

// send makes one attempt of a.
func (r *run) send(ctx context.Context, a *Action, replay bool) (at Attempt) {
	path := fmt.Sprintf("/campaign/%d/%s", a.Campaign, map[string]string{ActionEnd: "end", ActionRestock: "stock"}[a.Kind])
	var body []byte
	if a.Kind == ActionRestock {
		body, _ = json.Marshal(map[string]int64{"amount": a.Amount, "count": a.Count})
	}
	sent := time.Now()
	at = Attempt{AtMs: sent.Sub(r.start).Milliseconds(), Replay: replay}
	defer func() { at.LatMs = float64(time.Since(sent).Microseconds()) / 1000 }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.APIAddr+path, bytes.NewReader(body))
	if err != nil {
		at.Err = "request: " + err.Error()
		return at
	}
	req.Header.Set("Authorization", "Bearer "+r.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Key != "" {
		req.Header.Set("Idempotency-Key", a.Key)
	}
	resp, err := merchantClient.Do(req)
	if err != nil {
		at.Err = errClass(err)
		return at
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		at.Err = errClass(err)
		return at
	}
	at.Status = resp.StatusCode
	at.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	var ans struct {
		Status string `json:"status"`
		Total  int64  `json:"total"`
	}
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
