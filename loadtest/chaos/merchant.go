package main

import (
	"context"
	"sync"
	"time"

	"github.com/redpacket/rain/loadtest/harness"
)

// A scenario's merchant step (unless Scenario.NoMerchant): while the load
// runs and the fault is in effect, the runner ends one campaign and adds
// stock to another that has sold out, each retried on 503 or no answer, so
// the fault may hit them. Check (checkmerchant.go) then holds them to
// their contract.

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
func (m *merchantPlan) observe(r *harness.Record) {
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

// merchant runs the merchant step: once the fault is in effect (faulted
// closed; a fault that does not tell: 2 s after it was due) it ends
// m.ended, and restocks m.refill once that sold out (at the latest half
// way through the load), then sends the restock again with the same key
// on purpose. Each action is retried until the load and its tail are over.
func (r *run) merchant(ctx context.Context, m *merchantPlan, faulted <-chan struct{}) []*harness.Action {
	p := r.Profile
	deadline := r.start.Add(p.Duration + p.Tail)
	select {
	case <-faulted:
	case <-time.After(time.Until(r.start.Add(p.FaultAt + 2*time.Second))):
	case <-ctx.Done():
	}
	end := &harness.Action{Kind: harness.ActionEnd, Campaign: m.ended, StartUnixMs: r.start.UnixMilli()}
	restock := &harness.Action{Kind: harness.ActionRestock, Campaign: m.refill, Amount: m.amount, Count: m.count, Base: m.base,
		Key: m.key, StartUnixMs: r.start.UnixMilli()}
	var wg sync.WaitGroup
	wg.Go(func() {
		harness.Sleep(ctx, endAfterFault)
		r.act(ctx, end, false, deadline)
	})
	wg.Go(func() {
		harness.Sleep(ctx, restockAfterFault)
		select {
		case <-m.soldOut:
		case <-time.After(time.Until(r.start.Add(p.Duration / 2))):
			r.event("campaign %d not sold out yet: restocking it anyway", m.refill)
		case <-ctx.Done():
		}
		r.act(ctx, restock, false, deadline)
		if restock.Ack() != nil {
			r.act(ctx, restock, true, deadline)
		}
	})
	wg.Wait()
	return []*harness.Action{restock, end}
}

// act sends a until it is answered other than 503, backing off after a
// 503 or no answer, until deadline (harness.Merchant.Act); replay marks the
// attempts as the repeat on purpose.
func (r *run) act(ctx context.Context, a *harness.Action, replay bool, deadline time.Time) {
	m := &harness.Merchant{BaseURLs: []string{"http://" + r.APIAddr}, Token: r.Token, Start: r.start,
		Event: r.event, BackoffMax: actionBackoffMax}
	m.Act(ctx, a, replay, deadline)
}
