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

// clearNode SCANs node for the keys of ks and unlinks them through c.
func clearNode(ctx context.Context, node, c rueidis.Client, ks Keyspace) (int64, error) {
	var n int64
	for cursor := uint64(0); ; {
		e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(ks.Match()).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return n, err
		}
		m, err := unlink(ctx, c, e.Elements)
		if n += m; err != nil {
			return n, err
		}
		if e.Cursor == 0 {
			return n, nil
		}
		cursor = e.Cursor
	}
}

// unlink deletes keys in one round trip and returns how many there were,
// one UNLINK a key: on a cluster, keys of different slots cannot share one.
func unlink(ctx context.Context, c rueidis.Client, keys []string) (int64, error) {
	cmds := make(rueidis.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = c.B().Unlink().Key(k).Build()
	}
	var n int64
	for _, r := range c.DoMulti(ctx, cmds...) {
		m, err := r.AsInt64()
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}
