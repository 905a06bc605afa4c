package rediscluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// IsCluster reports whether c talks to a Redis Cluster.
func IsCluster(c rueidis.Client) bool { return c.Mode() == rueidis.ClientModeCluster }

// Shard is one master of a cluster and the slot ranges it serves.
type Shard struct {
	Addr   string      // host:port of the master
	ID     string      // its node id
	Ranges [][2]uint16 // first and last slot of each range
	// Replicas are the host:port of its replicas.
	Replicas []string
}

// Owns reports whether the shard serves slot.
func (s Shard) Owns(slot uint16) bool {
	for _, r := range s.Ranges {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// Shards asks one node of the cluster (any; CLUSTER SLOTS) which master
// serves which slots, ordered by address. A master with no slot is not
// listed.
func Shards(ctx context.Context, c rueidis.Client) ([]Shard, error) {
	ranges, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	byAddr := map[string]*Shard{}
	for _, r := range ranges {
		f, err := r.ToArray()
		if err != nil || len(f) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS: malformed range %v", r)
		}
		first, err1 := f[0].AsInt64()
		last, err2 := f[1].AsInt64()
		addr, id, err3 := slotNode(f[2])
		if err := errors.Join(err1, err2, err3); err != nil || first < 0 || last >= Slots || first > last {
			return nil, fmt.Errorf("CLUSTER SLOTS: malformed range %v: %v", r, err)
		}
		s := byAddr[addr]
		if s == nil {
			s = &Shard{Addr: addr, ID: id}
			byAddr[addr] = s
		}
		s.Ranges = append(s.Ranges, [2]uint16{uint16(first), uint16(last)})
		for _, rep := range f[3:] {
			if a, _, err := slotNode(rep); err == nil && !slices.Contains(s.Replicas, a) {
				s.Replicas = append(s.Replicas, a)
			}
		}
	}
	out := make([]Shard, 0, len(byAddr))
	for _, s := range byAddr {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Shard) int { return strings.Compare(a.Addr, b.Addr) })
	return out, nil
}

// slotNode reads a node of a CLUSTER SLOTS range: ip, port, id, ...
func slotNode(m rueidis.RedisMessage) (addr, id string, err error) {
	f, err := m.ToArray()
	if err != nil || len(f) < 2 {
		return "", "", fmt.Errorf("malformed node %v", m)
	}
	host, err := f[0].ToString()
	if err != nil {
		return "", "", err
	}
	port, err := f[1].AsInt64()
	if err != nil {
		return "", "", err
	}
	if len(f) > 2 {
		id, _ = f[2].ToString()
	}
	return net.JoinHostPort(host, strconv.FormatInt(port, 10)), id, nil
}

// ShardOf is the shard of shards that serves key's slot.
func ShardOf(shards []Shard, key string) (Shard, bool) {
	slot := Slot(key)
	for _, s := range shards {
		if s.Owns(slot) {
			return s, true
		}
	}
	return Shard{}, false
}

// Ready says whether Redis can serve every campaign: on one Redis, that it
// answers PING; on a cluster, that every master answers PING and sees the
// cluster state ok (CLUSTER INFO), and that every slot has a master.
func Ready(ctx context.Context, c rueidis.Client) error {
	if !IsCluster(c) {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	}
	shards, err := Shards(ctx, c)
	if err != nil {
		return err
	}
	covered := 0
	nodes := c.Nodes()
	for _, s := range shards {
		for _, r := range s.Ranges {
			covered += int(r[1]) - int(r[0]) + 1
		}
		n, ok := nodes[s.Addr]
		if !ok {
			return fmt.Errorf("master %s: not yet known to the client", s.Addr)
		}
		rs := n.DoMulti(ctx, n.B().Ping().Build(), n.B().ClusterInfo().Build())
		if err := rs[0].Error(); err != nil {
			return fmt.Errorf("master %s: PING: %w", s.Addr, err)
		}
		info, err := rs[1].ToString()
		if err != nil {
			return fmt.Errorf("master %s: CLUSTER INFO: %w", s.Addr, err)
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("master %s: cluster_state:%s", s.Addr, st)
		}
	}
	if covered != Slots {
		return fmt.Errorf("%d of %d slots have a master", covered, Slots)
	}
	return nil
}

// infoField is the value of name in an INFO-style "name:value" text (RESP3
// sends CLUSTER INFO as a verbatim string, whose "txt:" format comes first).
func infoField(info, name string) string {
	info = strings.TrimPrefix(info, "txt:")
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// Replicated reports whether every master c writes to has at least one
// replica connected: on a cluster every master serving slots lists one
// (CLUSTER SLOTS), on one Redis INFO replication counts connected_slaves.
func Replicated(ctx context.Context, c rueidis.Client) (bool, error) {
	if IsCluster(c) {
		shards, err := Shards(ctx, c)
		if err != nil {
			return false, err
		}
		for _, s := range shards {
			if len(s.Replicas) == 0 {
				return false, nil
			}
		}
		return len(shards) > 0, nil
	}
	info, err := c.Do(ctx, c.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return false, fmt.Errorf("INFO replication: %w", err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "connected_slaves:"); ok {
			n, err := strconv.Atoi(v)
			return err == nil && n > 0, err
		}
	}
	return false, errors.New("INFO replication: no connected_slaves")
}
