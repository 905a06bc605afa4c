package rediscluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/redis/rueidis"
)

// Move is one slot moved by hand from its master to another, the way a
// reshard does it (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE of its
// keys, SETSLOT NODE), in steps a test or the fault suite can interleave
// with traffic: while some of a slot's keys have moved and others not, a
// script on both gets TRYAGAIN, and a command on a moved key gets ASK.
type Move struct {
	Slot     uint16
	From, To Shard
	c        rueidis.Client
	shards   []Shard
	from, to rueidis.Client // clients of the two nodes
}

// StartMove marks slot as importing on the master at to and migrating on
// its present master.
func StartMove(ctx context.Context, c rueidis.Client, slot uint16, to string) (*Move, error) {
	shards, err := Shards(ctx, c)
	if err != nil {
		return nil, err
	}
	m := &Move{Slot: slot, c: c, shards: shards}
	for _, s := range shards {
		if s.Owns(slot) {
			m.From = s
		}
		if s.Addr == to {
			m.To = s
		}
	}
	switch {
	case m.From.Addr == "":
		return nil, fmt.Errorf("slot %d has no master", slot)
	case m.To.Addr == "":
		return nil, fmt.Errorf("%s is not a master", to)
	case m.From.Addr == m.To.Addr:
		return nil, fmt.Errorf("slot %d is already on %s", slot, to)
	}
	nodes := c.Nodes()
	if m.from, m.to = nodes[m.From.Addr], nodes[m.To.Addr]; m.from == nil || m.to == nil {
		return nil, fmt.Errorf("masters %s and %s not both known to the client", m.From.Addr, m.To.Addr)
	}
	s := int64(slot)
	if err := m.to.Do(ctx, m.to.B().ClusterSetslot().Slot(s).Importing().NodeId(m.From.ID).Build()).Error(); err != nil {
		return nil, fmt.Errorf("%s: SETSLOT %d IMPORTING: %w", m.To.Addr, slot, err)
	}
	if err := m.from.Do(ctx, m.from.B().ClusterSetslot().Slot(s).Migrating().NodeId(m.To.ID).Build()).Error(); err != nil {
		return nil, fmt.Errorf("%s: SETSLOT %d MIGRATING: %w", m.From.Addr, slot, err)
	}
	return m, nil
}

// Migrate moves keys (of the slot; those not on the source are skipped)
// to the destination.
func (m *Move) Migrate(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	host, port, err := net.SplitHostPort(m.To.Addr)
	if err != nil {
		return err
	}
	args := append([]string{host, port, "", "0", "10000", "KEYS"}, keys...)
	if err := m.from.Do(ctx, m.from.B().Arbitrary("MIGRATE").Args(args...).Build()).Error(); err != nil {
		return fmt.Errorf("%s: MIGRATE to %s: %w", m.From.Addr, m.To.Addr, err)
	}
	return nil
}

// Finish migrates the slot's remaining keys and gives the slot to the
// destination (SETSLOT NODE on it, on the source, then on every other
// master, as the cluster specification orders).
func (m *Move) Finish(ctx context.Context) error {
	for {
		keys, err := m.from.Do(ctx, m.from.B().ClusterGetkeysinslot().Slot(int64(m.Slot)).Count(1000).Build()).AsStrSlice()
		if err != nil {
			return fmt.Errorf("%s: GETKEYSINSLOT %d: %w", m.From.Addr, m.Slot, err)
		}
		if len(keys) == 0 {
			break
		}
		if err := m.Migrate(ctx, keys...); err != nil {
			return err
		}
	}
	nodes := m.c.Nodes()
	order := []Shard{m.To, m.From}
	for _, s := range m.shards {
		if s.Addr != m.To.Addr && s.Addr != m.From.Addr {
			order = append(order, s)
		}
	}
	for _, s := range order {
		n := nodes[s.Addr]
		if n == nil {
			return fmt.Errorf("master %s not known to the client", s.Addr)
		}
		if err := n.Do(ctx, n.B().ClusterSetslot().Slot(int64(m.Slot)).Node().NodeId(m.To.ID).Build()).Error(); err != nil {
			return fmt.Errorf("%s: SETSLOT %d NODE %s: %w", s.Addr, m.Slot, m.To.Addr, err)
		}
	}
	return nil
}

// MoveSlot moves slot to the master at to at once (StartMove, Finish).
func MoveSlot(ctx context.Context, c rueidis.Client, slot uint16, to string) error {
	m, err := StartMove(ctx, c, slot, to)
	if err != nil {
		return err
	}
	return m.Finish(ctx)
}

// OtherMaster is the address of a master that does not serve slot.
func OtherMaster(ctx context.Context, c rueidis.Client, slot uint16) (string, error) {
	shards, err := Shards(ctx, c)
	if err != nil {
		return "", err
	}
	for _, s := range shards {
		if !s.Owns(slot) {
			return s.Addr, nil
		}
	}
	return "", fmt.Errorf("every master serves slot %d (%d masters)", slot, len(shards))
}

// ErrorStats reads INFO errorstats of the node at addr: error prefix
// (MOVED, ASK, TRYAGAIN, ...) → count of error replies it sent.
func ErrorStats(ctx context.Context, c rueidis.Client, addr string) (map[string]int64, error) {
	n := c.Nodes()[addr]
	if n == nil {
		return nil, fmt.Errorf("node %s not known to the client", addr)
	}
	info, err := n.Do(ctx, n.B().Info().Section("errorstats").Build()).ToString()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		// errorstat_TRYAGAIN:count=3
		name, count, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "errorstat_"), ":count=")
		if !ok {
			continue
		}
		if v, err := strconv.ParseInt(count, 10, 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}
