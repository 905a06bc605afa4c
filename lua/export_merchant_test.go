package lua

// The merchant scripts' sources, for the tests that call them with raw
// arguments.
var (
	EndSrc     = endSrc
	RestockSrc = restockSrc
)
