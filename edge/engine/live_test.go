package engine

import (
	"testing"

	"github.com/redpacket/rain"
)

// TestAnswerCounters: each answer counted in its slot; the counts outlive
// the campaign's state (the memory bound's forget, a new layout) and are
// read by id.
func TestAnswerCounters(t *testing.T) {
	e := &Engine{}
	e.hot.maxClaims = 10
	c := e.hot.get(7)
	for _, x := range []struct {
		res rain.Result
		err error
	}{
		{rain.Result{Outcome: rain.OK}, nil}, {rain.Result{Outcome: rain.OK}, nil}, {rain.Result{Outcome: rain.AlreadyOpened}, nil},
		{rain.Result{Outcome: rain.SoldOut}, nil}, {rain.Result{Outcome: rain.Ended}, nil}, {rain.Result{Outcome: rain.NotStarted}, nil},
		{rain.Result{}, errRingFull}, {rain.Result{Outcome: rain.NotFound}, nil},
	} {
		c.live.record(x.res, x.err)
	}
	c.live.add(answerSoldOut)
	want := AnswerCounts{OK: 2, AlreadyOpened: 1, SoldOut: 2, Busy: 1, Closed: 2}
	if got := e.Answers(7); got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
	e.hot.forget()
	if e.hot.peek(7) != nil {
		t.Fatal("state kept after forget")
	}
	if got := e.Answers(7); got != want {
		t.Fatalf("after forget: %+v", got)
	}
	c2 := e.hot.get(7)
	c2.live.record(rain.Result{Outcome: rain.OK}, nil)
	if got := e.Answers(7); got.OK != 3 || c2 == c {
		t.Fatalf("a new state of the campaign counts on: %+v", got)
	}
	if got := e.Answers(8); got != (AnswerCounts{}) {
		t.Fatalf("a campaign never served: %+v", got)
	}
	var none *answerCounters
	none.record(rain.Result{Outcome: rain.OK}, nil) // an id Redis does not know: nothing to count
	none.add(answerOK)
}
