//go:build !race

package edge

// raceOn: the race detector is on (it allocates on its own).
const raceOn = false
