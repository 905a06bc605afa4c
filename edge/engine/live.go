package engine

import (
	"sync/atomic"

	"github.com/redpacket/rain"
)

// The answers of the opens of each campaign, counted for the merchant
// console's live view (edge's GET /campaign/{id}/live): one atomic add per
// open, on counters the campaign's in-process state points to, so the open
// path allocates nothing and takes no lock for them. They are this
// process's counts (each replica keeps its own) since it first saw the
// campaign; they survive the memory bound's forgetting of the campaign's
// state (hot.go), so a reader's differences never go backwards.

// Answer counters, by slot.
const (
	answerOK = iota
	answerAlreadyOpened
	answerSoldOut
	answerBusy   // 503: nothing claimed (or the outcome unknown)
	answerClosed // NOT_STARTED or ENDED
	answerSlots
)

// answerCounters counts one campaign's answers.
type answerCounters struct {
	n [answerSlots]atomicCount
}

// atomicCount is a counter alone on its cache line: the slots of a hot
// campaign are added to by every core at once.
type atomicCount struct {
	v atomic.Int64
	_ [56]byte
}

// record counts one answer: err (a 503) or res's outcome. c may be nil (an
// id Redis does not know: nothing to count).
func (c *answerCounters) record(res rain.Result, err error) {
	if c == nil {
		return
	}
	slot := answerBusy
	if err == nil {
		switch res.Outcome {
		case rain.OK:
			slot = answerOK
		case rain.AlreadyOpened:
			slot = answerAlreadyOpened
		case rain.SoldOut:
			slot = answerSoldOut
		case rain.NotStarted, rain.Ended:
			slot = answerClosed
		default:
			return
		}
	}
	c.n[slot].v.Add(1)
}

func (c *answerCounters) add(slot int) {
	if c != nil {
		c.n[slot].v.Add(1)
	}
}

// AnswerCounts are the answers this process gave to the opens of one
// campaign since it first saw the campaign.
type AnswerCounts struct {
	OK, AlreadyOpened, SoldOut, Busy, Closed int64
}

// Answers returns this process's answer counts for campaign id (zero for a
// campaign it has not served).
func (e *Engine) Answers(id int64) AnswerCounts {
	e.hot.mu.Lock()
	c := e.hot.counters[id]
	e.hot.mu.Unlock()
	if c == nil {
		return AnswerCounts{}
	}
	return AnswerCounts{OK: c.n[answerOK].v.Load(), AlreadyOpened: c.n[answerAlreadyOpened].v.Load(),
		SoldOut: c.n[answerSoldOut].v.Load(), Busy: c.n[answerBusy].v.Load(), Closed: c.n[answerClosed].v.Load()}
}

// countersFor returns campaign id's counters, made on first use; h.mu is
// held. Past 2*maxHot campaigns, those without state in next are dropped
// (their viewers see them start again from zero).
func (h *hotCampaigns) countersFor(id int64, next map[int64]*hotCampaign) *answerCounters {
	if c := h.counters[id]; c != nil {
		return c
	}
	if h.counters == nil || len(h.counters) >= 2*maxHot {
		kept := make(map[int64]*answerCounters, len(next)+1)
		for k, c := range h.counters {
			if _, ok := next[k]; ok {
				kept[k] = c
			}
		}
		h.counters = kept
	}
	c := &answerCounters{}
	h.counters[id] = c
	return c
}
