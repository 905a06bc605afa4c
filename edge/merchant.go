package edge

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/strictjson"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// The merchant's routes besides create and read (campaign.go): the list of
// campaigns, ending one now, adding stock, and the claims a payout system
// pays. Every action (create, end, add stock) is recorded in PostgreSQL with
// the token's name, the time and the request, in the transaction that
// makes it; GET /campaign/{id} shows them.
//
// An end or an added stock changes PostgreSQL first, then Redis, whose
// scripts every open runs, so Redis decides exactly from the moment its
// step ran. What replicas answer from memory (hot.go) follows within
// Config.MemoryRefresh (refresh.go); the replica that took the request
// follows at once. If the Redis step did not run (Redis down, the process
// killed in between), every replica's sweep finishes it (refresh.go).

// Limits of the merchant routes.
const (
	maxMerchantBody   = 4 << 10 // bytes in an end or add-stock body
	defaultPage       = 100     // items per page when no limit is given
	maxCampaignsPage  = 500     // most campaigns per page
	maxClaimsPage     = 1000    // most claims per page
	maxIdempotencyKey = 255     // bytes in an Idempotency-Key
	historyLimit      = 1000    // merchant actions GET /campaign/{id} shows
	csvPage           = 5000    // claims read per query while streaming CSV
)

var (
	pgList   = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="list_campaigns"}`)
	pgClaims = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="read_claims"}`)
	// pgCampaign: the gate of the routes of one campaign (campaignFor).
	pgCampaign = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="read_owned_campaign"}`)

	errBodyTooBig   = rain.Errorf(rain.ETOOLARGE, "body is over 4 KiB")
	errIdemKey      = rain.Errorf(rain.EINVALID, "Idempotency-Key must be 1-255 characters of visible ASCII")
	errDBRead       = rain.Errorf(rain.EBUSY, "database unavailable")
	headerIdemKey   = "Idempotency-Key"
	headerReplayed  = "Idempotent-Replayed"
	contentTypeCSV  = "text/csv; charset=utf-8"
	csvHeader       = "user_id,amount,claimed_at\r\n"
	claimTimeLayout = "2006-01-02T15:04:05.000Z07:00"
)

// actor is the audit's record of a merchant request: who (the principal:
// the token's name, its merchant and id, which also scope the action) and
// what was asked (method, path, the body as parsed, the Idempotency-Key).
func actor(ctx *fasthttp.RequestCtx, body any, key string) postgres.Actor {
	req := struct {
		Method string `json:"method"`
		Path   string `json:"path"`
		Body   any    `json:"body,omitempty"`
		Key    string `json:"idempotency_key,omitempty"`
	}{string(ctx.Method()), string(ctx.Path()), body, key}
	b, _ := json.Marshal(req)
	p := principalFor(ctx)
	return postgres.Actor{Name: p.name, Merchant: p.merchant, Token: p.token, Request: b}
}

// query returns the request's query arguments, refusing names not in
// allowed and names given twice.
func query(ctx *fasthttp.RequestCtx, allowed ...string) (map[string]string, error) {
	out := make(map[string]string, 2)
	for k, v := range ctx.QueryArgs().All() {
		name := string(k)
		switch {
		case !contains(allowed, name):
			return nil, rain.Errorf(rain.EINVALID, "unknown query parameter %q (this route takes %s)", name, strings.Join(allowed, ", "))
		case hasKey(out, name):
			return nil, rain.Errorf(rain.EINVALID, "query parameter %q given twice", name)
		}
		out[name] = string(v)
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// pageQuery reads the query of a paged list: ?after= (the route checks
// it), ?limit= (1..max, default defaultPage), and the route's own names in
// extra.
func pageQuery(ctx *fasthttp.RequestCtx, max int, extra ...string) (q map[string]string, limit int, err error) {
	if q, err = query(ctx, append([]string{"after", "limit"}, extra...)...); err != nil {
		return nil, 0, err
	}
	v, ok := q["limit"]
	if !ok {
		return q, defaultPage, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max || v != strconv.Itoa(n) {
		return nil, 0, rain.Errorf(rain.EINVALID, "limit must be an integer 1-%d", max)
	}
	return q, n, nil
}

// listedView is one campaign of GET /campaigns.
type listedView struct {
	campaignHead
	Total     int64        `json:"total"`
	Persisted int64        `json:"persisted"`
	Inventory []listedItem `json:"inventory"`
}

type listedItem struct {
	Amount int64 `json:"amount"`
	Total  int64 `json:"total"`
	Opened int64 `json:"opened"`
}

// campaignState is the state of a window at now.
func campaignState(start, end, now time.Time) string {
	switch {
	case !now.Before(end):
		return postgres.StateEnded
	case now.Before(start):
		return postgres.StateUpcoming
	}
	return postgres.StateLive
}

// listCampaigns is GET /campaigns: the caller's campaigns (the operator's:
// every one, or ?merchant=<name>'s), newest first, ?after=<id> (the page
// continues below that id), ?limit=, ?state=live|upcoming|ended.
func (s *Server) listCampaigns(ctx *fasthttp.RequestCtx) {
	p := principalFor(ctx)
	q, limit, err := pageQuery(ctx, maxCampaignsPage, "state", "merchant")
	if err != nil {
		writeError(ctx, err)
		return
	}
	var before int64
	if v, ok := q["after"]; ok {
		if before, ok = rain.ParseCampaignID([]byte(v)); !ok {
			writeError(ctx, rain.Errorf(rain.EINVALID, "after must be a campaign id (a positive integer)"))
			return
		}
	}
	state, ok := q["state"]
	switch state {
	case postgres.StateLive, postgres.StateUpcoming, postgres.StateEnded:
	case "":
		if !ok {
			break
		}
		fallthrough
	default:
		writeError(ctx, rain.Errorf(rain.EINVALID, "state must be live, upcoming or ended"))
		return
	}
	owner, ok := q["merchant"]
	switch {
	case ok && !p.operator():
		writeError(ctx, rain.Errorf(rain.EFORBIDDEN, "merchant is an operator's filter; a merchant token lists its own campaigns"))
		return
	case ok && !validMerchantName(owner):
		writeError(ctx, errMerchantName)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	list, more, err := s.store.ListCampaigns(rctx, postgres.ListQuery{Scope: p.merchant, Owner: owner, State: state, Before: before, Limit: limit})
	pgList.UpdateDuration(start)
	if err != nil {
		s.log.Error("list campaigns", "err", err)
		writeError(ctx, errDBRead)
		return
	}
	writePage(ctx, "campaigns", list, more, newListedView, func(c postgres.Listed) string { return strconv.FormatInt(c.ID, 10) })
}

func newListedView(c postgres.Listed) listedView {
	v := listedView{campaignHead: newCampaignHead(&c.Campaign, c.Merchant, c.State, c.EndedAt), Inventory: make([]listedItem, 0, len(c.Inventory))}
	for _, st := range c.Inventory {
		v.Total += st.Total
		v.Persisted += st.Opened
		v.Inventory = append(v.Inventory, listedItem{Amount: st.Amount, Total: st.Total, Opened: st.Opened})
	}
	return v
}

// writePage answers one page of a list, {"<name>": [...], "next": cursor}:
// each item of list through view, and next the cursor of the last item when
// more follow (null on the last page).
func writePage[T, V any](ctx *fasthttp.RequestCtx, name string, list []T, more bool, view func(T) V, cursor func(T) string) {
	items := make([]V, 0, len(list))
	for _, x := range list {
		items = append(items, view(x))
	}
	var next *string
	if more && len(list) > 0 {
		c := cursor(list[len(list)-1])
		next = &c
	}
	writeValue(ctx, map[string]any{name: items, "next": next}) // keys in order: name < "next" for every list
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// emptyBody accepts no body (no bytes) or an empty JSON object;
// whitespace alone is not JSON and is refused.
func emptyBody(body []byte) error {
	if len(body) > maxMerchantBody {
		return errBodyTooBig
	}
	if len(body) > 0 {
		p := bodyParsers.Get()
		defer bodyParsers.Put(p)
		if o, err := strictjson.Parse(p, body); err != nil || o.Len() > 0 {
			return rain.Errorf(rain.EINVALID, "body must be empty or {}")
		}
	}
	return nil
}

// endCampaign is POST /campaign/{id}/end: the window ends now (the
// engine's End); the answer is the campaign as GET /campaign/{id} shows
// it. Idempotent: the end never moves later.
func (s *Server) endCampaign(ctx *fasthttp.RequestCtx) {
	id, ok := campaignIDParam(ctx)
	if !ok {
		return
	}
	if err := emptyBody(ctx.PostBody()); err != nil {
		writeError(ctx, err)
		return
	}
	s.withCampaign(ctx, id, func(rctx context.Context) {
		// The end's own query is scoped too (the actor's merchant).
		if _, err := s.eng.End(rctx, id, actor(ctx, nil, "")); err != nil {
			writeError(ctx, err)
			return
		}
		s.writeCampaign(ctx, rctx, id)
	})
}

// stockFields are the fields of an add-stock body, both required.
var stockFields = []string{"amount", "count"}

// parseStockBody returns the amount and count of an add-stock body,
// {"amount":20,"count":100}, under the limits of create: canonical
// integers, amount 1-rain.MaxAmount, count 1-rain.MaxCount; field names
// exactly so, each once, nothing else (internal/strictjson).
func parseStockBody(body []byte) (amount, count int64, err error) {
	if len(body) > maxMerchantBody {
		return 0, 0, errBodyTooBig
	}
	p := bodyParsers.Get()
	defer bodyParsers.Put(p)
	o, err := strictjson.Parse(p, body)
	if err != nil {
		return 0, 0, rain.Errorf(rain.EINVALID, `bad body (want {"amount":20,"count":100}): %s`, rain.ErrorMessage(badJSON(err)))
	}
	seen, err := strictjson.Fields(o, stockFields, func(i int, v *fastjson.Value) error {
		n, ok := strictjson.Int(v)
		switch {
		case i == 0 && (!ok || n < 1 || n > rain.MaxAmount):
			return rain.Errorf(rain.EINVALID, "amount must be an integer 1-%d", rain.MaxAmount)
		case i == 1 && (!ok || n < 1 || n > rain.MaxCount):
			return rain.Errorf(rain.EINVALID, "count must be an integer 1-%d", rain.MaxCount)
		case i == 0:
			amount = n
		default:
			count = n
		}
		return nil
	})
	if err != nil {
		return 0, 0, badJSON(err)
	}
	if seen != 3 {
		return 0, 0, rain.Errorf(rain.EINVALID, "amount and count are required")
	}
	return amount, count, nil
}

// idempotencyKey returns the request's Idempotency-Key ("" for none).
func idempotencyKey(ctx *fasthttp.RequestCtx) (string, error) {
	v := ctx.Request.Header.Peek(headerIdemKey)
	if v == nil {
		return "", nil
	}
	if len(v) == 0 || len(v) > maxIdempotencyKey {
		return "", errIdemKey
	}
	for _, c := range v {
		if c <= ' ' || c > '~' {
			return "", errIdemKey
		}
	}
	return string(v), nil
}

// stockView is the answer to POST /campaign/{id}/stock.
type stockView struct {
	CampaignID int64     `json:"campaign_id"`
	Amount     int64     `json:"amount"`
	Count      int64     `json:"count"`
	Total      int64     `json:"total"`   // the amount's packets in all, after this
	Applied    bool      `json:"applied"` // Redis has it (false: the api adds it there within seconds)
	At         time.Time `json:"at"`
}

// addStock is POST /campaign/{id}/stock (the engine's AddStock). A retry
// with the same Idempotency-Key answers what the first did and adds
// nothing.
func (s *Server) addStock(ctx *fasthttp.RequestCtx) {
	id, ok := campaignIDParam(ctx)
	if !ok {
		return
	}
	amount, count, err := parseStockBody(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	key, err := idempotencyKey(ctx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.withCampaign(ctx, id, func(rctx context.Context) {
		// The restock's own query is scoped too (the actor's merchant).
		res, err := s.eng.AddStock(rctx, postgres.Restock{Campaign: id, Amount: amount, Count: count, Key: key,
			By: actor(ctx, map[string]int64{"amount": amount, "count": count}, key)})
		if err != nil {
			writeError(ctx, err)
			return
		}
		if res.Replayed {
			ctx.Response.Header.Set(headerReplayed, "true")
		}
		writeValue(ctx, stockView{CampaignID: id, Amount: amount, Count: count, Total: res.Total, Applied: res.Applied, At: res.At.UTC()})
	})
}

// claimView is one claim of the payout routes.
type claimView struct {
	UserID    string    `json:"user_id"`
	Amount    int64     `json:"amount"`
	ClaimedAt time.Time `json:"claimed_at"`
	Persisted bool      `json:"persisted"`
}

// acceptsCSV reports whether the request's Accept header asks for CSV.
func acceptsCSV(ctx *fasthttp.RequestCtx) bool {
	for _, r := range strings.Split(string(ctx.Request.Header.Peek(fasthttp.HeaderAccept)), ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(r), ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "text/csv") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if k, v, _ := strings.Cut(strings.TrimSpace(p), "="); strings.EqualFold(k, "q") {
				if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}

// listClaims is GET /campaign/{id}/claims: claim_log in user id order, as
// JSON pages (?after=<user_id>&limit=), or with Accept: text/csv the whole
// list (from ?after= if given) streamed as CSV, in constant memory.
func (s *Server) listClaims(ctx *fasthttp.RequestCtx) {
	id, ok := campaignIDParam(ctx)
	if !ok {
		return
	}
	var (
		q     map[string]string
		limit int
		err   error
	)
	csv := acceptsCSV(ctx)
	if csv { // the whole list, a page of csvPage at a time
		q, err = query(ctx, "after")
		limit = csvPage
	} else {
		q, limit, err = pageQuery(ctx, maxClaimsPage)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	after, hasAfter := q["after"]
	if hasAfter && !rain.ValidUserID([]byte(after)) {
		writeError(ctx, rain.Errorf(rain.EINVALID, "after must be a user id"))
		return
	}
	s.withCampaign(ctx, id, func(rctx context.Context) {
		scope := principalFor(ctx).merchant
		start := time.Now()
		claims, more, err := s.store.ClaimsPage(rctx, id, scope, after, limit)
		pgClaims.UpdateDuration(start)
		if err != nil {
			if code := rain.ErrorCode(err); code != rain.ENOTFOUND && code != rain.EARCHIVED {
				s.log.Error("read claims", "campaign_id", id, "err", err)
				err = errDBRead
			}
			writeError(ctx, err)
			return
		}
		if csv {
			ctx.SetStatusCode(fasthttp.StatusOK)
			ctx.SetContentType(contentTypeCSV)
			ctx.SetBodyStream(&claimsCSV{s: s, id: id, scope: scope, page: claims, more: more, conn: ctx.Conn(), buf: []byte(csvHeader)}, -1)
			return
		}
		writePage(ctx, "claims", claims, more, func(c postgres.Claim) claimView {
			return claimView{UserID: c.User, Amount: c.Amount, ClaimedAt: c.ClaimedAt, Persisted: true}
		}, func(c postgres.Claim) string { return c.User })
	})
}

// claimsCSV streams a campaign's claims as CSV, one page of claim_log at a
// time (keyset paging by user id: a short query each, no transaction held
// open), so memory stays at one page whatever the campaign's size. A read
// that fails ends the stream with an error, which makes the server close
// the connection without the chunked body's last chunk: the client sees a
// truncated response, never a short list that looks whole.
type claimsCSV struct {
	s     *Server
	id    int64
	scope int64 // the caller's (ClaimsPage)
	page  []postgres.Claim
	more  bool
	last  string // the user id of the last claim formatted
	conn  net.Conn
	buf   []byte // formatted, not yet read
	off   int
}

func (r *claimsCSV) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		if len(r.page) == 0 && !r.more {
			return 0, io.EOF
		}
		if len(r.page) == 0 {
			if err := r.next(); err != nil {
				return 0, err
			}
			continue
		}
		r.buf, r.off = r.buf[:0], 0
		for _, c := range r.page[:min(len(r.page), 256)] {
			r.buf = appendCSVField(r.buf, c.User)
			r.buf = append(r.buf, ',')
			r.buf = strconv.AppendInt(r.buf, c.Amount, 10)
			r.buf = append(r.buf, ',')
			r.buf = c.ClaimedAt.UTC().AppendFormat(r.buf, claimTimeLayout)
			r.buf = append(r.buf, '\r', '\n')
			r.last = c.User
		}
		r.page = r.page[min(len(r.page), 256):]
	}
	// Each write of the stream gets the server's write timeout anew: a
	// large export is bounded by its progress, not by its size.
	if r.conn != nil && r.s.cfg.WriteTimeout > 0 {
		_ = r.conn.SetWriteDeadline(time.Now().Add(r.s.cfg.WriteTimeout))
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}

// next reads the page after the last claim streamed.
func (r *claimsCSV) next() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.s.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	page, more, err := r.s.store.ClaimsPage(ctx, r.id, r.scope, r.last, csvPage)
	pgClaims.UpdateDuration(start)
	if err != nil {
		r.s.log.Error("claims csv: read failed; the stream is cut", "campaign_id", r.id, "after", r.last, "err", err)
		return err
	}
	r.page, r.more = page, more
	return nil
}

// appendCSVField appends a CSV field, quoted (RFC 4180) when it holds a
// comma or a quote; user ids hold no whitespace or control characters.
func appendCSVField(b []byte, s string) []byte {
	if !strings.ContainsAny(s, `,"`) {
		return append(b, s...)
	}
	b = append(b, '"')
	b = append(b, strings.ReplaceAll(s, `"`, `""`)...)
	return append(b, '"')
}

// userClaim is GET /campaign/{id}/claims/{user_id}: the user's claim from
// claim_log, or from Redis while it is on its way there (persisted false);
// 404 when the user has none (or there is no such campaign); 410 ARCHIVED
// when the campaign's claims were archived (claim_log no longer has them).
func (s *Server) userClaim(ctx *fasthttp.RequestCtx) {
	id, ok := campaignIDParam(ctx)
	if !ok {
		return
	}
	// The router matches the path as sent: the user id is still escaped.
	user, err := url.PathUnescape(string(routeParam(ctx, "user_id")))
	if err != nil || !rain.ValidUserID([]byte(user)) {
		writeError(ctx, errOpenUserID)
		return
	}
	s.withCampaign(ctx, id, func(rctx context.Context) {
		start := time.Now()
		c, found, err := s.store.ClaimOf(rctx, id, principalFor(ctx).merchant, user)
		pgClaims.UpdateDuration(start)
		if rain.ErrorCode(err) == rain.EARCHIVED {
			writeError(ctx, err)
			return
		}
		if err != nil {
			s.log.Error("read claim", "campaign_id", id, "err", err)
			writeError(ctx, errDBRead)
			return
		}
		v := claimView{UserID: user, Amount: c.Amount, ClaimedAt: c.ClaimedAt, Persisted: true}
		if !found {
			rc, inRedis, err := s.eng.ClaimOf(rctx, id, user)
			if err != nil {
				writeError(ctx, err)
				return
			}
			if !inRedis {
				writeError(ctx, rain.Errorf(rain.ENOTFOUND, "user %q has no claim in campaign %d", user, id))
				return
			}
			v = claimView{UserID: user, Amount: rc.Amount, ClaimedAt: time.UnixMilli(rc.ClaimedAtMs).UTC(), Persisted: false}
		}
		writeValue(ctx, v)
	})
}
