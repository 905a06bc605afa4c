package lua

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain/internal/rediscluster"
)

// ClearKeyspace deletes every key of every campaign in ks and returns how
// many there were (UNLINK: a large claims hash is freed in the background).
// It is for a tool that owns its namespace (the benchmark, the fault suite)
// and refuses the default one, which a deployment serves. On a Redis
// Cluster it scans every master.
func ClearKeyspace(ctx context.Context, c rueidis.Client, ks Keyspace) (int64, error) {
	if ks.Prefix() == DefaultPrefix {
		return 0, fmt.Errorf("refusing to clear the default keyspace %q", DefaultPrefix)
	}
	if !rediscluster.IsCluster(c) {
		return clearNode(ctx, c, c, ks)
	}
	shards, err := rediscluster.Shards(ctx, c)
	if err != nil {
		return 0, err
	}
	nodes := c.Nodes()
	var n int64
	for _, s := range shards {
		node, ok := nodes[s.Addr]
		if !ok {
			return n, fmt.Errorf("master %s: not yet known to the client", s.Addr)
		}
		m, err := clearNode(ctx, node, c, ks)
		if n += m; err != nil {
			return n, fmt.Errorf("master %s: %w", s.Addr, err)
		}
	}
	return n, nil
}

// clearNode SCANs node for the keys of ks and unlinks them through c, one
// command a key (on a cluster, keys of different slots cannot share one).
func clearNode(ctx context.Context, node, c rueidis.Client, ks Keyspace) (int64, error) {
	var n int64
	for cursor := uint64(0); ; {
		e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(ks.Match()).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return n, err
		}
		cmds := make(rueidis.Commands, len(e.Elements))
		for i, key := range e.Elements {
			cmds[i] = c.B().Unlink().Key(key).Build()
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			m, err := r.AsInt64()
			if err != nil {
				return n, err
			}
			n += m
		}
		if e.Cursor == 0 {
			return n, nil
		}
		cursor = e.Cursor
	}
}
