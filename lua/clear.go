package lua

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"
)

// ClearKeyspace deletes every key of every campaign in ks and returns how
// many there were (UNLINK: a large claims hash is freed in the background).
// It is for a tool that owns its namespace (the benchmark, the fault suite)
// and refuses the default one, which a deployment serves.
func ClearKeyspace(ctx context.Context, c rueidis.Client, ks Keyspace) (int64, error) {
	if ks.Prefix() == DefaultPrefix {
		return 0, fmt.Errorf("refusing to clear the default keyspace %q", DefaultPrefix)
	}
	var n int64
	for cursor := uint64(0); ; {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(ks.Match()).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return n, err
		}
		if len(e.Elements) > 0 {
			if err := c.Do(ctx, c.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				return n, err
			}
			n += int64(len(e.Elements))
		}
		if e.Cursor == 0 {
			return n, nil
		}
		cursor = e.Cursor
	}
}
