package main

import "github.com/redpacket/rain/loadtest/harness"

// The parts the suite shares with make torture (loadtest/harness): the
// load driver and its records, the stores' state, verdicts, merchant
// actions. Named here as they were before they moved.
type (
	Record        = harness.Record
	Target        = harness.Target
	DriverConfig  = harness.DriverConfig
	DriverStats   = harness.DriverStats
	Stores        = harness.Stores
	Counts        = harness.Counts
	CampaignState = harness.CampaignState
	BucketClaim   = harness.BucketClaim
	Verdict       = harness.Verdict
	Liveness      = harness.Liveness
	Action        = harness.Action
	Attempt       = harness.Attempt
	tally         = harness.Tally
)

// Kinds of attempt.
const (
	KindFirst, KindRetry, KindRepeat, KindVerify = harness.KindFirst, harness.KindRetry, harness.KindRepeat, harness.KindVerify
)

// Kinds of merchant action, and the liveness verdict.
const (
	ActionRestock, ActionEnd = harness.ActionRestock, harness.ActionEnd
	InvAlive                 = harness.InvAlive
)
