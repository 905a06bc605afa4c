package rain

import "github.com/redpacket/rain/internal/enum"

// Outcome is what the claim script (lua/claim.lua) decided for one open.
// The values are the codes the script returns.
type Outcome int8

// Outcomes, in the order of the script's checks.
const (
	NotFound      Outcome = 0
	NotStarted    Outcome = 1
	Ended         Outcome = 2
	AlreadyOpened Outcome = 3
	SoldOut       Outcome = 4
	OK            Outcome = 5
	// Empty and Busy come from the buckets of a bucketed campaign only
	// (claim.lua's bucket copy): this bucket has no stock but the campaign may
	// (nothing claimed; move stock in and ask again), and a frozen
	// campaign (nothing claimed; answer 503).
	Empty Outcome = 6
	Busy  Outcome = 7
	// Bucketed comes from the home of a bucketed campaign (claim.lua on
	// the campaign's own keys, whose stock is in its buckets): nothing
	// claimed; Result.Buckets says how many buckets to ask instead.
	Bucketed Outcome = 8
)

var outcomeNames = [...]string{"NOT_FOUND", "NOT_STARTED", "ENDED", "ALREADY_OPENED", "SOLD_OUT", "OK", "EMPTY", "BUSY", "BUCKETED"}

// String returns the outcome's name as the API shows it ("SOLD_OUT").
func (o Outcome) String() string { return enum.Name(outcomeNames[:], o, "UNKNOWN") }

// Result is claim.lua's answer to one user.
type Result struct {
	Outcome   Outcome
	Amount    int64 // OK and AlreadyOpened: the user's amount
	ClaimedAt int64 // OK and AlreadyOpened: unix ms of the claim, by Redis TIME
	EndMs     int64 // OK, AlreadyOpened and SoldOut: the campaign's end_time, unix ms
	Claims    int64 // SoldOut: how many users hold a packet
	Buckets   int64 // Bucketed: the campaign's bucket count
}
