package edge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/edge/engine"
	"github.com/valyala/fasthttp"
)

// GET /campaign/{id}/live: the merchant console's live view of a campaign,
// as server-sent events (text/event-stream), one event every liveEvery.
//
// It costs the open path nothing: the answers by kind are the engine's
// per-campaign atomic counters (edge/engine/live.go), read here; the stock,
// the claims made (Redis) and the claims persisted (PostgreSQL) are read by
// one poller per campaign that has viewers on this process, whatever their
// number, liveEvery apart, and every viewer gets the poller's latest event.
// The poller stops when the campaign's last viewer goes.
//
// The answers by kind are global: this process's own counts plus those
// every other replica writes to Redis each second (engine.GlobalAnswers);
// per_second is taken over the last two seconds or so, so a replica's
// writes a second apart show as a steady rate. Stock, claims and persisted
// come from Redis and PostgreSQL. Every event names the replica serving it
// and how many replicas its answers sum.
//
// A browser's EventSource cannot send an Authorization header, so the
// console reads the stream with fetch() and parses the events itself; the
// token never goes into a URL. The stream re-checks its token every
// liveRecheck and ends (event "end") when the token was revoked, when the
// server shuts down, and after LIVE_STREAM_MAX (the console reconnects).

const (
	liveEvery   = 500 * time.Millisecond // between two reads of a campaign's state, and two events
	liveRecheck = 5 * time.Second        // between two checks of a stream's token
	maxLive     = 1024                   // streams open at once on one process; past it 503
)

var (
	liveStreams  = metrics.NewCounter(`rain_live_streams_total`)
	livePolls    = metrics.NewCounter(`rain_live_polls_total`)
	errLiveFull  = rain.Errorf(rain.EBUSY, "too many live views open; retry shortly")
	eventLive    = []byte("event: live\ndata: ")
	eventEnd     = []byte("event: end\ndata: ")
	eventClose   = []byte("\n\n")
	streamPrefix = []byte("retry: 2000\n\n")
)

// liveHub holds the pollers of the campaigns with viewers on this process.
type liveHub struct {
	mu      sync.Mutex
	feeds   map[int64]*liveFeed
	streams int
	stop    chan struct{} // closed by Shutdown: every stream ends
	once    sync.Once
	gauge   *metrics.Set
}

func (h *liveHub) init() {
	h.feeds = make(map[int64]*liveFeed)
	h.stop = make(chan struct{})
	h.gauge = metrics.NewSet()
	h.gauge.NewGauge(`rain_live_streams_open`, func() float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return float64(h.streams)
	})
}

func (h *liveHub) shutdown() {
	h.once.Do(func() {
		if h.stop != nil {
			close(h.stop)
		}
	})
}

// liveFeed is one campaign's poller and its latest event.
type liveFeed struct {
	id      int64
	viewers int           // under the hub's mu
	quit    chan struct{} // closed when the last viewer goes
	mu      sync.Mutex
	event   []byte        // the latest event's JSON; nil before the first
	changed chan struct{} // closed (and replaced) when event changes
}

// subscribe counts a viewer of campaign id, starting its poller; false
// when maxLive streams are open.
func (s *Server) subscribe(id int64) (*liveFeed, bool) {
	h := &s.live
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams >= maxLive {
		return nil, false
	}
	h.streams++
	f := h.feeds[id]
	if f == nil {
		f = &liveFeed{id: id, quit: make(chan struct{}), changed: make(chan struct{})}
		h.feeds[id] = f
		go s.poll(f)
	}
	f.viewers++
	return f, true
}

// unsubscribe lets a viewer go; the last one stops the poller.
func (s *Server) unsubscribe(f *liveFeed) {
	h := &s.live
	h.mu.Lock()
	defer h.mu.Unlock()
	h.streams--
	if f.viewers--; f.viewers == 0 {
		delete(h.feeds, f.id)
		close(f.quit)
	}
}

// latest returns the feed's latest event and the channel closed when the
// next one is ready.
func (f *liveFeed) latest() ([]byte, chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.event, f.changed
}

func (f *liveFeed) publish(ev []byte) {
	f.mu.Lock()
	f.event = ev
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// liveAnswers are the answers to a campaign's opens by kind, of every api
// replica: since each first served the campaign (answers), or per second
// over the last two seconds or so (per_second).
type liveAnswers struct {
	OK            float64 `json:"OK"`
	AlreadyOpened float64 `json:"ALREADY_OPENED"`
	SoldOut       float64 `json:"SOLD_OUT"`
	Busy          float64 `json:"BUSY"` // 503
	Closed        float64 `json:"CLOSED"`
}

// liveEvent is one event of the stream.
type liveEvent struct {
	At        time.Time   `json:"at"`
	Replica   string      `json:"replica"`  // the api replica serving the stream
	Replicas  int         `json:"replicas"` // the api replicas whose answers are summed
	EveryMs   int64       `json:"every_ms"`
	Answers   liveAnswers `json:"answers"`
	PerSecond liveAnswers `json:"per_second"`
	// Global, read by the poller (null when the read failed: see error).
	State     string          `json:"state,omitempty"`
	EndTime   *time.Time      `json:"end_time,omitempty"`
	Loaded    bool            `json:"loaded"`
	Total     int64           `json:"total"`
	Remaining int64           `json:"remaining"`
	Claims    int64           `json:"claims"`    // made: users holding a packet, in Redis
	Persisted int64           `json:"persisted"` // in claim_log
	Inventory []inventoryView `json:"inventory"`
	Error     string          `json:"error,omitempty"` // why the global numbers are the last good ones
}

// poll reads campaign f.id's state every liveEvery while it has viewers.
func (s *Server) poll(f *liveFeed) {
	defer engine.RecoverGoroutine(s.log, "live poller")
	t := time.NewTicker(liveEvery)
	defer t.Stop()
	var prev liveEvent
	var hist []answersAt
	for {
		ev := s.sample(f.id, &prev, &hist)
		b, err := json.Marshal(ev)
		if err == nil {
			f.publish(b)
		}
		select {
		case <-t.C:
		case <-f.quit:
			return
		case <-s.live.stop:
			return
		}
	}
}

// answersAt is the answers at a time, for the rates.
type answersAt struct {
	at time.Time
	a  liveAnswers
}

// rateWindow is the least time the rates are taken over: two writes of
// every other replica's counts.
const rateWindow = 2 * time.Second

// sample reads the campaign's state: the answers of every replica
// (engine.GlobalAnswers), PostgreSQL's row and inventory (persisted),
// Redis's stock and claims. prev is the previous event, whose numbers a
// failed read keeps; hist the answers of the last rateWindow, for the
// rates.
func (s *Server) sample(id int64, prev *liveEvent, hist *[]answersAt) liveEvent {
	livePolls.Inc()
	ctx, cancel := context.WithTimeout(context.Background(), 2*liveEvery)
	defer cancel()
	now := time.Now()
	ev := *prev
	ev.At, ev.Replica, ev.EveryMs, ev.Error = now.UTC(), s.eng.Replica(), liveEvery.Milliseconds(), ""
	a, n, aerr := s.eng.GlobalAnswers(ctx, id)
	if aerr == nil || ev.Replicas == 0 {
		ev.Replicas = n
		ev.Answers = liveAnswers{OK: float64(a.OK), AlreadyOpened: float64(a.AlreadyOpened), SoldOut: float64(a.SoldOut),
			Busy: float64(a.Busy), Closed: float64(a.Closed)}
	}
	*hist = append(*hist, answersAt{now, ev.Answers})
	for len(*hist) > 2 && now.Sub((*hist)[1].at) >= rateWindow {
		*hist = (*hist)[1:]
	}
	if old := (*hist)[0]; now.Sub(old.at) > 0 {
		dt := now.Sub(old.at).Seconds()
		rate := func(cur, old float64) float64 {
			if cur < old {
				return 0
			}
			return float64(int64((cur-old)/dt*10+0.5)) / 10
		}
		p := old.a
		ev.PerSecond = liveAnswers{OK: rate(ev.Answers.OK, p.OK), AlreadyOpened: rate(ev.Answers.AlreadyOpened, p.AlreadyOpened),
			SoldOut: rate(ev.Answers.SoldOut, p.SoldOut), Busy: rate(ev.Answers.Busy, p.Busy), Closed: rate(ev.Answers.Closed, p.Closed)}
	}
	c, err := s.eng.Campaign(ctx, id)
	if err == nil {
		var live engine.Live
		if live, err = s.eng.Live(ctx, c); err == nil {
			end := c.EndTime.UTC()
			ev.State, ev.EndTime = campaignState(c.StartTime, c.EndTime, now), &end
			ev.Loaded, ev.Remaining, ev.Claims = live.Loaded, live.Remaining, live.Claims
			ev.Total, ev.Persisted, ev.Inventory = 0, 0, make([]inventoryView, 0, len(c.Inventory))
			for _, st := range c.Inventory {
				ev.Total += st.Total
				ev.Persisted += st.Opened
				ev.Inventory = append(ev.Inventory, inventoryView{Amount: st.Amount, Total: st.Total, Remaining: live.ByAmount[st.Amount], Opened: st.Opened})
			}
		}
	}
	if err == nil {
		err = aerr
	}
	if err != nil {
		ev.Error = rain.ErrorMessage(err)
		if rain.ErrorCode(err) == rain.EINTERNAL {
			ev.Error = "state unavailable"
		}
	}
	if ev.Inventory == nil {
		ev.Inventory = []inventoryView{}
	}
	*prev = ev
	return ev
}

// liveCampaign is GET /campaign/{id}/live (merchant, read access): the
// campaign's gate (404 for another merchant's), then the stream.
func (s *Server) liveCampaign(ctx *fasthttp.RequestCtx) {
	id, ok := campaignIDParam(ctx)
	if !ok {
		return
	}
	if _, err := query(ctx); err != nil {
		writeError(ctx, err)
		return
	}
	s.withCampaign(ctx, id, func(rctx context.Context) {
		f, ok := s.subscribe(id)
		if !ok {
			writeError(ctx, errLiveFull)
			return
		}
		liveStreams.Inc()
		p := *principalFor(ctx)
		token, _ := bearer(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
		token = bytes.Clone(token)
		conn := ctx.Conn()
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("text/event-stream; charset=utf-8")
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		ctx.Response.Header.Set("X-Accel-Buffering", "no") // proxies: pass each event on at once
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			defer s.unsubscribe(f)
			s.stream(w, conn, f, p, token)
		})
	})
}

// stream writes f's events to w until the client goes, the server shuts
// down, or the token stops letting the request in.
func (s *Server) stream(w *bufio.Writer, conn net.Conn, f *liveFeed, p principal, token []byte) {
	write := func(parts ...[]byte) bool {
		if conn != nil && s.cfg.WriteTimeout > 0 {
			_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		}
		for _, b := range parts {
			if _, err := w.Write(b); err != nil {
				return false
			}
		}
		return w.Flush() == nil
	}
	if !write(streamPrefix) {
		return
	}
	recheck := time.NewTicker(liveRecheck)
	defer recheck.Stop()
	expire := time.NewTimer(s.cfg.LiveStreamMax)
	defer expire.Stop()
	var sent []byte
	for {
		ev, changed := f.latest()
		if ev != nil && (sent == nil || &ev[0] != &sent[0]) {
			if !write(eventLive, ev, eventClose) {
				return
			}
			sent = ev
		}
		select {
		case <-changed:
		case <-recheck.C:
			if q, err := s.principalOfToken(token); err != nil || q.merchant != p.merchant || q.token != p.token {
				write(eventEnd, []byte(`{"status":"UNAUTHORIZED","error":"the token no longer lets this view in"}`), eventClose)
				return
			}
		case <-s.live.stop:
			write(eventEnd, []byte(`{"status":"BUSY","error":"the server is shutting down; reconnect"}`), eventClose)
			return
		case <-expire.C:
			write(eventEnd, []byte(`{"status":"BUSY","error":"the stream reached LIVE_STREAM_MAX; reconnect"}`), eventClose)
			return
		}
	}
}
