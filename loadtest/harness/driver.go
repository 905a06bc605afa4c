package harness

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redpacket/rain/internal/dev/stack"
)

// Target is a campaign the driver opens and its share of the new users.
type Target struct {
	Campaign int64
	Weight   int
}

// DriverConfig configures a load run. Zero values take the defaults named.
type DriverConfig struct {
	// BaseURLs are the api replicas, on 127.0.0.1 or localhost: new users
	// are spread over them in turn, and a user's next attempt goes to the
	// next replica (as a load balancer would after a failed request).
	BaseURLs []string
	Targets  []Target      // campaigns; new users are spread over them by weight
	Rate     int           // new users per second (default 1000)
	Duration time.Duration // how long new users arrive (default 30s)
	// Tail is how long retries may go on after Duration (default 15s);
	// users still without an answer then are left unresolved.
	Tail        time.Duration
	Prefix      string        // user ids are <Prefix>-<n> (default "chaos")
	FirstKind   string        // the kind of a new user's first open (default KindFirst; KindProbe)
	Concurrency int           // requests in flight at most (default 256)
	Timeout     time.Duration // per request (default 5s); past it: no answer
	// MaxAttempts bounds the opens of one user while it gets no answer or
	// 503 (default 12: about 35 s of backoff).
	MaxAttempts int
	// RetryRate bounds the retries per second (default 2 × Rate), so a crowd of
	// users waiting for an api to come back does not swamp it (or the box).
	RetryRate int
	// RepeatShare of the users who got 200 open once more during the run,
	// 1-10 s later (default 0.02; negative: none). The answer must be 409
	// with the same amount.
	RepeatShare float64
	// Verify is how many users who got 200 open again, per campaign, after
	// the load (default 300; negative: none).
	Verify int
	Out    io.Writer // the records, as JSON lines
	// Start is the moment the records' AtMs count from (zero: when Run is
	// called), so that others can time their actions on the same clock.
	Start time.Time
	// Observe, if set, sees every record as it is written (from many
	// goroutines at once).
	Observe func(*Record)
}

func (c *DriverConfig) defaults() {
	if c.Rate <= 0 {
		c.Rate = 1000
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Tail <= 0 {
		c.Tail = 15 * time.Second
	}
	if c.Prefix == "" {
		c.Prefix = "chaos"
	}
	if c.FirstKind == "" {
		c.FirstKind = KindFirst
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 256
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 12
	}
	if c.RetryRate <= 0 {
		c.RetryRate = 2 * c.Rate
	}
	if c.RepeatShare == 0 {
		c.RepeatShare = 0.02
	}
	if c.Verify == 0 {
		c.Verify = 300
	}
}

// DriverStats sums up a load run.
type DriverStats struct {
	Users      int           `json:"users"`       // new users sent
	Skipped    int           `json:"skipped"`     // new users not sent: Concurrency requests already in flight
	Attempts   int           `json:"attempts"`    // requests sent, all kinds
	Retries    int           `json:"retries"`     // of which retries
	Repeats    int           `json:"repeats"`     // of which repeats during the run
	Verified   int           `json:"verified"`    // of which re-opens after the run
	GaveUp     int           `json:"gave_up"`     // users who reached MaxAttempts without an answer
	Abandoned  int           `json:"abandoned"`   // retries still waiting when the tail ran out
	Elapsed    time.Duration `json:"elapsed_ns"`  // the whole run, verification included
	LoadEndsMs int64         `json:"load_end_ms"` // when the last retry was answered, ms since start
}

// task is one open to send.
type task struct {
	due      time.Time
	campaign int64
	user     string
	kind     string
	attempt  int
	api      int // index into BaseURLs
}

// tasks is a min-heap of tasks by due time.
type tasks []*task

func (h tasks) Len() int           { return len(h) }
func (h tasks) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h tasks) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tasks) Push(x any)        { *h = append(*h, x.(*task)) }
func (h *tasks) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// Driver opens packets at a steady rate of new users and records every
// answer. A user who gets no answer (refused, reset, timed out: the api may
// be down) or 503 opens again later, with backoff, as a client would.
type Driver struct {
	cfg    DriverConfig
	url    map[int64][]string // per campaign, its open URL on each api
	client *http.Client
	start  time.Time
	sem    chan struct{}
	wg     sync.WaitGroup
	recs   chan Record

	mu      sync.Mutex
	pending tasks
	claimed map[int64][]claim // per campaign: users who got 200
	stats   DriverStats
	lastMs  int64
}

type claim struct {
	user   string
	amount int64
}

// NewDriver checks cfg and returns a driver.
func NewDriver(cfg DriverConfig) (*Driver, error) {
	cfg.defaults()
	if len(cfg.BaseURLs) == 0 {
		return nil, errors.New("driver: no api to open at")
	}
	for _, u := range cfg.BaseURLs {
		if err := stack.CheckURL(u); err != nil {
			return nil, fmt.Errorf("driver: %w", err)
		}
		if !strings.HasPrefix(u, "http://") {
			return nil, fmt.Errorf("driver: base URL %q: want http://127.0.0.1:PORT", u)
		}
	}
	if len(cfg.Targets) == 0 {
		return nil, errors.New("driver: no campaign to open")
	}
	if cfg.Out == nil {
		return nil, errors.New("driver: no output for the records")
	}
	d := &Driver{cfg: cfg, url: make(map[int64][]string), sem: make(chan struct{}, cfg.Concurrency),
		recs: make(chan Record, 4096), claimed: make(map[int64][]claim)}
	for _, t := range cfg.Targets {
		if t.Weight <= 0 {
			return nil, fmt.Errorf("driver: campaign %d: weight must be positive", t.Campaign)
		}
		for _, u := range cfg.BaseURLs {
			d.url[t.Campaign] = append(d.url[t.Campaign], strings.TrimRight(u, "/")+"/campaign/"+strconv.FormatInt(t.Campaign, 10)+"/open")
		}
	}
	d.client = &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency,
		MaxConnsPerHost:     cfg.Concurrency,
		// Below the api's keep-alive IdleTimeout (15 s): the client closes an
		// idle connection before the server does, so no open is sent on a
		// connection the server is closing at that moment (it would be
		// reset unread, and look like an open with no answer).
		IdleConnTimeout:    5 * time.Second,
		DisableCompression: true,
	}}
	return d, nil
}

// Run drives the load until Duration, then retries until Tail, then
// re-opens a sample of the users who got 200, and returns. It stops early
// when ctx ends. Every record is written to Out.
func (d *Driver) Run(ctx context.Context) (DriverStats, error) {
	d.start = d.cfg.Start
	if d.start.IsZero() {
		d.start = time.Now()
	}
	w := bufio.NewWriterSize(d.cfg.Out, 256<<10)
	wdone := make(chan error, 1)
	go func() {
		enc := json.NewEncoder(w)
		var err error
		for r := range d.recs {
			if err == nil {
				err = enc.Encode(&r)
			}
		}
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		wdone <- err
	}()

	d.load(ctx)
	d.wg.Wait()
	d.mu.Lock()
	d.stats.Abandoned = d.pending.Len()
	d.stats.LoadEndsMs = d.lastMs
	d.mu.Unlock()
	if ctx.Err() == nil {
		d.verify(ctx)
		d.wg.Wait()
	}
	close(d.recs)
	err := <-wdone
	d.client.CloseIdleConnections()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Elapsed = time.Since(d.start)
	if err == nil {
		err = ctx.Err()
	}
	return d.stats, err
}

// load sends new users at Rate for Duration and retries (and repeats) as
// they fall due, until both are done or the tail ran out.
func (d *Driver) load(ctx context.Context) {
	weights := 0
	for _, t := range d.cfg.Targets {
		weights += t.Weight
	}
	end := d.start.Add(d.cfg.Duration)
	stop := end.Add(d.cfg.Tail)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	tokens, last := 0.0, d.start
	for n := 0; ; {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if !now.Before(stop) {
			return
		}
		if now.Before(end) {
			due := int(float64(d.cfg.Rate) * now.Sub(d.start).Seconds())
			for ; n < due; n++ {
				t := &task{campaign: d.target(n, weights), user: d.cfg.Prefix + "-" + strconv.Itoa(n), kind: d.cfg.FirstKind,
					attempt: 1, api: n % len(d.cfg.BaseURLs)}
				if !d.send(t, false) {
					d.mu.Lock()
					d.stats.Skipped++
					d.mu.Unlock()
				}
			}
		}
		// Retries and repeats that fell due, within the retry budget.
		tokens = min(tokens+now.Sub(last).Seconds()*float64(d.cfg.RetryRate), float64(d.cfg.RetryRate)/10+1)
		last = now
		for tokens >= 1 {
			d.mu.Lock()
			if d.pending.Len() == 0 || d.pending[0].due.After(now) {
				d.mu.Unlock()
				break
			}
			t := heap.Pop(&d.pending).(*task)
			d.mu.Unlock()
			if !d.send(t, false) {
				d.schedule(t, now.Add(50*time.Millisecond))
				break
			}
			tokens--
		}
		if !now.Before(end) && d.idle() {
			return
		}
	}
}

// idle reports whether nothing is in flight or waiting.
func (d *Driver) idle() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending.Len() == 0 && len(d.sem) == 0
}

// target spreads user n over the campaigns by weight.
func (d *Driver) target(n, weights int) int64 {
	k := n % weights
	for _, t := range d.cfg.Targets {
		if k < t.Weight {
			return t.Campaign
		}
		k -= t.Weight
	}
	return d.cfg.Targets[0].Campaign
}

// schedule queues t to be sent at due.
func (d *Driver) schedule(t *task, due time.Time) {
	t.due = due
	d.mu.Lock()
	heap.Push(&d.pending, t)
	d.mu.Unlock()
}

// send starts t if a slot is free (or waits for one when wait is set).
func (d *Driver) send(t *task, wait bool) bool {
	if wait {
		d.sem <- struct{}{}
	} else {
		select {
		case d.sem <- struct{}{}:
		default:
			return false
		}
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		r := d.open(t)
		if d.cfg.Observe != nil {
			d.cfg.Observe(&r)
		}
		d.recs <- r
		d.after(t, &r) // before the slot is freed: idle must see the retry it queues
		<-d.sem
	}()
	return true
}

// after books a finished attempt and schedules what follows from it.
func (d *Driver) after(t *task, r *Record) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Attempts++
	switch t.kind {
	case KindFirst, KindProbe:
		d.stats.Users++
	case KindRetry:
		d.stats.Retries++
	case KindRepeat:
		d.stats.Repeats++
	case KindVerify:
		d.stats.Verified++
	}
	if t.kind != KindVerify {
		d.lastMs = max(d.lastMs, time.Since(d.start).Milliseconds())
	}
	switch {
	case t.kind == KindRepeat || t.kind == KindVerify:
		// Probes of a claim: their answer is checked, not retried.
	case !r.Answered() || r.Busy():
		if t.attempt >= d.cfg.MaxAttempts {
			d.stats.GaveUp++
			return
		}
		backoff := min(500*time.Millisecond<<(t.attempt-1), 4*time.Second)
		if r.Busy() {
			backoff = max(backoff, time.Second) // Retry-After: 1
		}
		backoff = time.Duration(float64(backoff) * (0.75 + rand.Float64()/2))
		next := &task{campaign: t.campaign, user: t.user, kind: KindRetry, attempt: t.attempt + 1, due: now.Add(backoff),
			api: (t.api + 1) % len(d.cfg.BaseURLs)}
		heap.Push(&d.pending, next)
	case r.Status == 200:
		d.claimed[t.campaign] = append(d.claimed[t.campaign], claim{t.user, r.Amount})
		if d.cfg.RepeatShare > 0 && rand.Float64() < d.cfg.RepeatShare {
			due := now.Add(time.Second + rand.N(9*time.Second))
			if due.Before(d.start.Add(d.cfg.Duration)) {
				heap.Push(&d.pending, &task{campaign: t.campaign, user: t.user, kind: KindRepeat, attempt: t.attempt + 1, due: due,
					api: rand.IntN(len(d.cfg.BaseURLs))})
			}
		}
	}
}

// verify re-opens up to Verify users per campaign who got 200.
func (d *Driver) verify(ctx context.Context) {
	if d.cfg.Verify < 0 {
		return
	}
	d.mu.Lock()
	var ts []*task
	for _, t := range d.cfg.Targets {
		cs := d.claimed[t.Campaign]
		for _, i := range rand.Perm(len(cs))[:min(len(cs), d.cfg.Verify)] {
			// Attempt numbers only order a user's attempts; a verify comes last.
			ts = append(ts, &task{campaign: t.Campaign, user: cs[i].user, kind: KindVerify, attempt: 1000,
				api: rand.IntN(len(d.cfg.BaseURLs))})
		}
	}
	d.mu.Unlock()
	for _, t := range ts {
		if ctx.Err() != nil {
			return
		}
		d.send(t, true)
	}
}

// open sends one open and records what came back.
func (d *Driver) open(t *task) (r Record) {
	r = Record{Campaign: t.campaign, User: t.user, Kind: t.kind, Attempt: t.attempt, API: t.api}
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeout)
	defer cancel()
	sent := time.Now()
	r.AtMs = sent.Sub(d.start).Milliseconds()
	defer func() { r.LatMs = float64(time.Since(sent).Microseconds()) / 1000 }()
	body := `{"user_id":` + strconv.Quote(t.user) + `}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url[t.campaign][t.api], strings.NewReader(body))
	if err != nil {
		r.Err = "request: " + err.Error()
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	resp, b, fail := exchange(d.client, req, 4<<10)
	if fail != "" {
		r.Err = fail
		return r
	}
	r.Status = resp.StatusCode
	var ans answer
	if err := json.Unmarshal(b, &ans); err != nil {
		r.Code = "UNPARSABLE"
		return r
	}
	r.Code, r.Amount = ans.Status, ans.Amount
	return r
}

// answer is what a runner reads of the api's JSON answers.
type answer struct {
	Status string `json:"status"` // OK, ALREADY_OPENED, BUSY, ...
	Amount int64  `json:"amount"` // an open's
	Total  int64  `json:"total"`  // a restock's
}

// exchange sends req and reads its answer's body (limit bytes at most);
// fail names why there was no answer (ErrClass), "" when there was one.
func exchange(c *http.Client, req *http.Request, limit int64) (resp *http.Response, body []byte, fail string) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, ErrClass(err)
	}
	defer resp.Body.Close()
	if body, err = io.ReadAll(io.LimitReader(resp.Body, limit)); err != nil {
		return nil, nil, ErrClass(err)
	}
	return resp, body, ""
}

// ErrClass names a transport error briefly: refused, reset, eof, timeout,
// or the error itself.
func ErrClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
