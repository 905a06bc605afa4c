package lua

// For the tests of package lua_test: claim.lua called with raw arguments,
// and the Go side's halves of the call.
var (
	ClaimScript = claimScript
	ParseClaims = parseClaims
	ClaimArgs   = func(users []string, rnds []uint64) []string { return appendClaimArgs(nil, users, rnds) }
)
