package producer

import (
	"sync"
	"testing"

	"github.com/redpacket/rain/pipeline"
)

func TestRingReserveBounds(t *testing.T) {
	r := NewRing(2)
	for i := 0; i < 2; i++ {
		if !r.Reserve() {
			t.Fatalf("a ring of 2 refused reservation %d", i+1)
		}
	}
	if r.Reserve() {
		t.Fatal("a full ring took a third reservation")
	}
	r.Release()
	if !r.Reserve() {
		t.Fatal("a released slot was not reusable")
	}
	r.Push(pipeline.Event{UserID: "a"})
	r.Push(pipeline.Event{UserID: "b"})
	if r.Len() != 2 || len(r.Events()) != 2 || r.Cap() != 2 {
		t.Errorf("len %d queued %d cap %d", r.Len(), len(r.Events()), r.Cap())
	}
	if e := <-r.Events(); e.UserID != "a" {
		t.Errorf("first out: %q", e.UserID)
	}
	r.Done()
	if r.Len() != 1 || !r.Reserve() {
		t.Errorf("after Done: len %d", r.Len())
	}
}

// TestRingConcurrent: producers and a consumer race; nothing is lost or
// duplicated and the count of slots comes back to zero.
func TestRingConcurrent(t *testing.T) {
	r := NewRing(64)
	const writers, each = 8, 2000
	got := make(chan int, 1)
	go func() {
		n := 0
		for range r.Events() {
			r.Done()
			if n++; n == writers*each {
				got <- n
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				if !r.Reserve() {
					continue // full: a real open would answer 503
				}
				if i%3 == 0 { // a claim that did not succeed
					r.Release()
					if !r.Reserve() {
						continue
					}
				}
				r.Push(pipeline.Event{Amount: int64(i)})
				i++
			}
		}()
	}
	wg.Wait()
	if n := <-got; n != writers*each {
		t.Errorf("received %d", n)
	}
	if r.Len() != 0 {
		t.Errorf("slots held at the end: %d", r.Len())
	}
}

func BenchmarkRing(b *testing.B) {
	r := NewRing(1 << 16)
	done := make(chan struct{})
	go func() {
		for range r.Events() {
			r.Done()
		}
		close(done)
	}()
	e := pipeline.Event{CampaignID: 1, UserID: "user-1", Amount: 20, ClaimedAt: 1}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for !r.Reserve() {
			}
			r.Push(e)
		}
	})
	close(r.ch)
	<-done
}
