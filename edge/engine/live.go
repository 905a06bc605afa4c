package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"github.com/redpacket/rain"
)

const (
	answerPublishEvery = time.Second // between two writes of a process's answer counts to Redis
	answersTTL         = time.Hour   // an answers hash outlives its last write by this
)

// The answers of the opens of each campaign, counted for the merchant
// console's live view (edge's GET /campaign/{id}/live): one atomic add per
// open, on counters the campaign's in-process state points to, so the open
// path allocates nothing and takes no lock for them. Each process counts
// the opens it answered since it first saw the campaign; the counts survive
// the memory bound's forgetting of the campaign's state (hot.go), so a
// reader's differences never go backwards.
//
// To make them global, every process writes its counts of each campaign
// whose counts moved to the campaign's answers hash in Redis, once every
// answerPublishEvery (one HSET per campaign, pipelined, off the open path);
// GlobalAnswers sums the hash's other replicas with this process's own.

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
	return c.counts()
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

func (c *answerCounters) counts() AnswerCounts {
	return AnswerCounts{OK: c.n[answerOK].v.Load(), AlreadyOpened: c.n[answerAlreadyOpened].v.Load(),
		SoldOut: c.n[answerSoldOut].v.Load(), Busy: c.n[answerBusy].v.Load(), Closed: c.n[answerClosed].v.Load()}
}

func (a AnswerCounts) add(b AnswerCounts) AnswerCounts {
	return AnswerCounts{OK: a.OK + b.OK, AlreadyOpened: a.AlreadyOpened + b.AlreadyOpened, SoldOut: a.SoldOut + b.SoldOut,
		Busy: a.Busy + b.Busy, Closed: a.Closed + b.Closed}
}

// text is the counts as the answers hash holds them.
func (a AnswerCounts) text() string {
	return fmt.Sprintf("%d,%d,%d,%d,%d", a.OK, a.AlreadyOpened, a.SoldOut, a.Busy, a.Closed)
}

// parseAnswers reads a value of the answers hash.
func parseAnswers(s string) (AnswerCounts, bool) {
	f := strings.Split(s, ",")
	if len(f) != answerSlots {
		return AnswerCounts{}, false
	}
	var n [answerSlots]int64
	for i, x := range f {
		v, err := strconv.ParseInt(x, 10, 64)
		if err != nil || v < 0 {
			return AnswerCounts{}, false
		}
		n[i] = v
	}
	return AnswerCounts{OK: n[0], AlreadyOpened: n[1], SoldOut: n[2], Busy: n[3], Closed: n[4]}, true
}

// answerPublisher writes this process's answer counts to Redis.
type answerPublisher struct {
	replica string
	sent    map[int64]AnswerCounts // last written, by campaign; the loop's only
	loop    Loop
}

// newReplicaID names this process in the answers hashes and live events:
// the host name and a random suffix (two processes of one host differ).
func newReplicaID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Replica is this process's name in the answers hashes.
func (e *Engine) Replica() string { return e.answers.replica }

func (e *Engine) startAnswers() {
	e.answers.loop.Start(answerPublishEvery, false, e.failLog, "answer counts", func() {
		ctx, cancel := context.WithTimeout(context.Background(), answerPublishEvery)
		defer cancel()
		if err := e.publishAnswers(ctx); err != nil {
			e.failLog.Warn("answer counts not written to Redis; the live view's answers miss this replica's latest", "err", err)
		}
	})
}

// publishAnswers writes the counts of every campaign whose counts moved
// since they were last written: one HSET and PEXPIRE each, in one round
// trip (per slot on a cluster).
func (e *Engine) publishAnswers(ctx context.Context) error {
	p := &e.answers
	if p.sent == nil {
		p.sent = make(map[int64]AnswerCounts)
	}
	e.hot.mu.Lock()
	ids := make([]int64, 0, len(e.hot.counters))
	ctrs := make([]*answerCounters, 0, len(e.hot.counters))
	for id, c := range e.hot.counters {
		ids, ctrs = append(ids, id), append(ctrs, c)
	}
	e.hot.mu.Unlock()
	var cmds rueidis.Commands
	var moved []int64
	var now []AnswerCounts
	for i, id := range ids {
		a := ctrs[i].counts()
		if a == p.sent[id] {
			continue
		}
		k := e.keys.Of(id).Answers()
		cmds = append(cmds, e.redis.B().Hset().Key(k).FieldValue().FieldValue(p.replica, a.text()).Build(),
			e.redis.B().Pexpire().Key(k).Milliseconds(answersTTL.Milliseconds()).Build())
		moved, now = append(moved, id), append(now, a)
	}
	if len(p.sent) > len(ids) { // campaigns whose counters were dropped
		keep := make(map[int64]bool, len(ids))
		for _, id := range ids {
			keep[id] = true
		}
		for id := range p.sent {
			if !keep[id] {
				delete(p.sent, id)
			}
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	var first error
	for i, r := range e.redis.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if i%2 == 0 {
			p.sent[moved[i/2]] = now[i/2]
		}
	}
	return first
}

// GlobalAnswers returns campaign id's answer counts across the api
// replicas: this process's own, plus what every other replica last wrote
// to the campaign's answers hash (at most answerPublishEvery old), and how
// many replicas that is (this one included).
func (e *Engine) GlobalAnswers(ctx context.Context, id int64) (AnswerCounts, int, error) {
	sum := e.Answers(id)
	m, err := e.redis.Do(ctx, e.redis.B().Hgetall().Key(e.keys.Of(id).Answers()).Build()).AsStrMap()
	if err != nil && !rueidis.IsRedisNil(err) {
		return sum, 1, busyIf(err)
	}
	n := 1
	for r, v := range m {
		if r == e.answers.replica {
			continue
		}
		if a, ok := parseAnswers(v); ok {
			sum, n = sum.add(a), n+1
		}
	}
	return sum, n, nil
}
