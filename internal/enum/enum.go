// Package enum names the values of the small integer enums whose names
// stand in a table indexed by value (rain.Outcome, lua.MoveKind).
package enum

// Name is names[v], or unknown for a value the table does not name (a
// negative one, or one past its end), so that a String method never panics.
func Name[T ~int | ~int8 | ~int16 | ~int32 | ~int64](names []string, v T, unknown string) string {
	if v < 0 || int64(v) >= int64(len(names)) {
		return unknown
	}
	return names[v]
}
