package producer

import (
	"sync/atomic"

	"github.com/redpacket/rain/pipeline"
)

// Ring is the bounded buffer between the open handler and the Kafka
// producer. Room is reserved before a claim is attempted, so an open that
// cannot be carried gets 503 before anything is claimed, and a claim that
// was made always has a slot:
//
//	if !ring.Reserve() { 503 }   // nothing claimed
//	res := claim()
//	if res.OK { ring.Push(ev) } else { ring.Release() }
//
// The slots are a buffered channel (a mutex-guarded ring in the runtime,
// ~50 ns a push here); the reservation count keeps every Push non-blocking.
type Ring struct {
	ch       chan pipeline.Event
	reserved atomic.Int64 // slots held: reserved but not pushed, plus queued
	size     int64
}

// NewRing returns a ring with room for size events.
func NewRing(size int) *Ring {
	return &Ring{ch: make(chan pipeline.Event, size), size: int64(size)}
}

// Reserve takes a slot, or reports false when the ring is full.
func (r *Ring) Reserve() bool {
	if r.reserved.Add(1) > r.size {
		r.reserved.Add(-1)
		return false
	}
	return true
}

// Release gives back a reserved slot that will not be pushed.
func (r *Ring) Release() { r.reserved.Add(-1) }

// Push puts an event into a slot taken by Reserve. It never blocks.
func (r *Ring) Push(e pipeline.Event) { r.ch <- e }

// Events is the consumer side: each event received from it must be followed
// by one call to Done, which frees its slot.
func (r *Ring) Events() <-chan pipeline.Event { return r.ch }

// Done frees the slot of an event taken from Events.
func (r *Ring) Done() { r.reserved.Add(-1) }

// Len is the number of slots in use (reserved or queued).
func (r *Ring) Len() int { return int(r.reserved.Load()) }

// Cap is the ring's size.
func (r *Ring) Cap() int { return int(r.size) }
