package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
	"github.com/valyala/fasthttp"
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
	merchantActions = map[string]*metrics.Counter{
		postgres.ActionCreate: metrics.NewCounter(`rain_merchant_actions_total{kind="create"}`),
		postgres.ActionEnd:    metrics.NewCounter(`rain_merchant_actions_total{kind="end"}`),
		postgres.ActionStock:  metrics.NewCounter(`rain_merchant_actions_total{kind="stock"}`),
	}
	// Campaigns an end cut short (an end of a campaign already over is an
	// action but ends nothing), and stock added (each restock once, however
	// often its request is retried).
	endedEarly     = metrics.NewCounter(`rain_campaigns_ended_early_total`)
	restocked      = metrics.NewCounter(`rain_campaigns_restocked_total`)
	pendingSettled = metrics.NewCounter(`rain_stock_settled_total`)

	pgList        = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="list_campaigns"}`)
	pgEnd         = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="end_campaign"}`)
	pgStock       = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="add_stock"}`)
	pgClaims      = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="read_claims"}`)
	redisMerchant = metrics.NewPrometheusHistogram(`rain_redis_duration_seconds{op="merchant"}`)

	errBodyTooBig   = rain.Errorf(rain.ETOOLARGE, "body is over 4 KiB")
	errIdemKey      = rain.Errorf(rain.EINVALID, "Idempotency-Key must be 1-255 characters of visible ASCII")
	errDBNoChange   = rain.Errorf(rain.EBUSY, "database unavailable; nothing was changed")
	errDBRead       = rain.Errorf(rain.EBUSY, "database unavailable")
	errStockLocked  = rain.Errorf(rain.EBUSY, "the campaign is being loaded or restocked by another request; nothing was added")
	headerIdemKey   = "Idempotency-Key"
	headerReplayed  = "Idempotent-Replayed"
	contentTypeCSV  = "text/csv; charset=utf-8"
	csvHeader       = "user_id,amount,claimed_at\r\n"
	claimTimeLayout = "2006-01-02T15:04:05.000Z07:00"
)

// actor is the audit's record of a merchant request: the token's name and
// what was asked (method, path, the body as parsed, the Idempotency-Key).
func actor(ctx *fasthttp.RequestCtx, body any, key string) postgres.Actor {
	req := struct {
		Method string `json:"method"`
		Path   string `json:"path"`
		Body   any    `json:"body,omitempty"`
		Key    string `json:"idempotency_key,omitempty"`
	}{string(ctx.Method()), string(ctx.Path()), body, key}
	b, _ := json.Marshal(req)
	return postgres.Actor{Name: merchantName(ctx), Request: b}
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

// pageLimit parses ?limit= (1..max, default defaultPage).
func pageLimit(q map[string]string, max int) (int, error) {
	v, ok := q["limit"]
	if !ok {
		return defaultPage, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max || v != strconv.Itoa(n) {
		return 0, rain.Errorf(rain.EINVALID, "limit must be an integer 1-%d", max)
	}
	return n, nil
}

// listedView is one campaign of GET /campaigns.
type listedView struct {
	ID        int64        `json:"id"`
	Name      string       `json:"name"`
	StartTime time.Time    `json:"start_time"`
	EndTime   time.Time    `json:"end_time"`
	CreatedAt time.Time    `json:"created_at"`
	State     string       `json:"state"`
	EndedAt   *time.Time   `json:"ended_at"`
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

// listCampaigns is GET /campaigns: newest first, ?after=<id> (the page
// continues below that id), ?limit=, ?state=live|upcoming|ended.
func (s *Server) listCampaigns(ctx *fasthttp.RequestCtx) {
	q, err := query(ctx, "after", "limit", "state")
	if err != nil {
		writeError(ctx, err)
		return
	}
	limit, err := pageLimit(q, maxCampaignsPage)
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
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	start := time.Now()
	list, more, err := s.store.ListCampaigns(rctx, state, before, limit)
	pgList.UpdateDuration(start)
	if err != nil {
		s.log.Error("list campaigns", "err", err)
		writeError(ctx, errDBRead)
		return
	}
	page := struct {
		Campaigns []listedView `json:"campaigns"`
		Next      *string      `json:"next"`
	}{Campaigns: make([]listedView, 0, len(list))}
	for _, c := range list {
		v := listedView{ID: c.ID, Name: c.Name, StartTime: c.StartTime.UTC(), EndTime: c.EndTime.UTC(),
			CreatedAt: c.CreatedAt.UTC(), State: c.State, EndedAt: utc(c.EndedAt), Inventory: make([]listedItem, 0, len(c.Inventory))}
		for _, st := range c.Inventory {
			v.Total += st.Total
			v.Persisted += st.Opened
			v.Inventory = append(v.Inventory, listedItem{Amount: st.Amount, Total: st.Total, Opened: st.Opened})
		}
		page.Campaigns = append(page.Campaigns, v)
	}
	if more {
		next := strconv.FormatInt(list[len(list)-1].ID, 10)
		page.Next = &next
	}
	writeValue(ctx, page)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// emptyBody accepts no body or an empty JSON object.
func emptyBody(body []byte) error {
	if len(body) > maxMerchantBody {
		return errBodyTooBig
	}
	if b := bytes.TrimSpace(body); len(b) > 0 {
		var m map[string]json.RawMessage
		if err := strictJSON(b, &m); err != nil || m == nil || len(m) > 0 {
			return rain.Errorf(rain.EINVALID, "body must be empty or {}")
		}
	}
	return nil
}

// strictJSON decodes one JSON value into v: unknown fields and trailing
// data are errors.
func strictJSON(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("data after the value")
	}
	return nil
}

// endCampaign is POST /campaign/{id}/end: the window ends now, in Redis
// (end.lua) inside the PostgreSQL transaction that records it, so the end
// PostgreSQL keeps is the one Redis applied; the answer is the campaign as
// GET /campaign/{id} shows it. Idempotent: the end never moves later.
func (s *Server) endCampaign(ctx *fasthttp.RequestCtx) {
	id, ok := rain.ParseCampaignID(routeParam(ctx, "id"))
	if !ok {
		writeError(ctx, errCampaignID)
		return
	}
	if err := emptyBody(ctx.PostBody()); err != nil {
		writeError(ctx, err)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	var redisErr error
	apply := func(ctx context.Context, end time.Time) (time.Time, bool, error) {
		at, loaded, err := s.endInRedis(ctx, id, end.UnixMilli())
		redisErr = err
		return time.UnixMilli(at), loaded, err
	}
	start := time.Now()
	e, err := s.store.EndCampaign(rctx, id, actor(ctx, nil, ""), apply)
	pgEnd.UpdateDuration(start)
	switch {
	case rain.ErrorCode(err) == rain.ENOTFOUND:
		writeError(ctx, err)
		return
	case redisErr != nil:
		s.log.Error("end campaign: redis", "campaign_id", id, "err", err)
		writeError(ctx, rain.Errorf(rain.EBUSY, "Redis unavailable; the end was not recorded (it may have taken effect): retry"))
		return
	case err != nil:
		s.log.Error("end campaign", "campaign_id", id, "err", err)
		writeError(ctx, rain.Errorf(rain.EBUSY, "database unavailable; the end was not recorded (it may have taken effect): retry"))
		return
	}
	if c := s.hot.peek(id); c != nil {
		s.hot.lowerEnd(c, e.End.UnixMilli())
	}
	merchantActions[postgres.ActionEnd].Inc()
	if e.Changed {
		endedEarly.Inc()
		s.log.Info("campaign ended by a merchant", "campaign_id", id, "by", merchantName(ctx), "end_time", e.End)
	}
	s.writeCampaign(ctx, rctx, id)
}

// endInRedis ends campaign id in Redis no later than endMs and returns the
// end Redis applied (false: Redis does not hold the campaign); this
// replica's answers from memory follow at once.
func (s *Server) endInRedis(ctx context.Context, id int64, endMs int64) (int64, bool, error) {
	start := time.Now()
	l, err := s.layoutOf(ctx, id)
	if err != nil {
		return 0, false, err
	}
	end, loaded, err := lua.EndBuckets(ctx, s.redis, l, endMs)
	redisMerchant.UpdateDuration(start)
	if err != nil || !loaded {
		return 0, false, err
	}
	if c := s.hot.peek(id); c != nil {
		s.hot.lowerEnd(c, end)
	}
	return end, true, nil
}

// parseStockBody returns the amount and count of an add-stock body,
// {"amount":20,"count":100}, under the limits of create: canonical
// integers, amount 1-rain.MaxAmount, count 1-rain.MaxCount; field names
// exactly so, each once, nothing else.
func parseStockBody(body []byte) (amount, count int64, err error) {
	if len(body) > maxMerchantBody {
		return 0, 0, errBodyTooBig
	}
	bad := func(format string, args ...any) (int64, int64, error) {
		return 0, 0, rain.Errorf(rain.EINVALID, `bad body (want {"amount":20,"count":100}): `+format, args...)
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return bad("not a JSON object")
	}
	var seen [2]bool
	for d.More() {
		t, err := d.Token()
		key, _ := t.(string)
		if err != nil {
			return bad("%v", err)
		}
		i := map[string]int{"amount": 0, "count": 1}[key]
		if key != "amount" && key != "count" {
			return bad("unknown field %q", key)
		}
		if seen[i] {
			return bad("field %q twice", key)
		}
		seen[i] = true
		t, err = d.Token()
		n, _ := t.(json.Number)
		v, perr := rain.ParseAmount(string(n))
		switch {
		case err != nil:
			return bad("%v", err)
		case key == "amount" && perr != nil:
			return 0, 0, rain.Errorf(rain.EINVALID, "amount must be an integer 1-%d", rain.MaxAmount)
		case key == "count" && (perr != nil || v > rain.MaxCount):
			return 0, 0, rain.Errorf(rain.EINVALID, "count must be an integer 1-%d", rain.MaxCount)
		case key == "amount":
			amount = v
		default:
			count = v
		}
	}
	if t, err := d.Token(); err != nil || t != json.Delim('}') {
		return bad("the object does not end")
	}
	if _, err := d.Token(); err != io.EOF {
		return bad("data after the object")
	}
	if !seen[0] || !seen[1] {
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

// addStock is POST /campaign/{id}/stock. Under the campaign's Redis loading
// lock (so no load from PostgreSQL and no other restock of it runs
// meanwhile): PostgreSQL adds to the total and records the action and its
// Idempotency-Key in one transaction, then restock.lua adds to the stock.
// A retry with the same key answers what the first did and adds nothing.
func (s *Server) addStock(ctx *fasthttp.RequestCtx) {
	id, ok := rain.ParseCampaignID(routeParam(ctx, "id"))
	if !ok {
		writeError(ctx, errCampaignID)
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
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	k := s.keys.Of(id)
	unlock, err := s.lockCampaign(rctx, k)
	if err != nil {
		writeError(ctx, err)
		return
	}
	defer unlock()
	start := time.Now()
	res, err := s.store.AddStock(rctx, postgres.Restock{Campaign: id, Amount: amount, Count: count, Key: key,
		By: actor(ctx, map[string]int64{"amount": amount, "count": count}, key)})
	pgStock.UpdateDuration(start)
	if err != nil {
		switch rain.ErrorCode(err) {
		case rain.EINVALID, rain.ENOTFOUND:
		default:
			s.log.Error("add stock", "campaign_id", id, "err", err)
			err = errDBNoChange
		}
		writeError(ctx, err)
		return
	}
	if !res.Replayed {
		merchantActions[postgres.ActionStock].Inc()
		restocked.Inc()
		s.log.Info("stock added by a merchant", "campaign_id", id, "by", merchantName(ctx), "amount", amount, "count", count)
	}
	if !res.Applied {
		if res.Replayed { // the first request's Redis step may or may not have run: count
			res.Applied, err = s.settleLocked(rctx, k)
		} else {
			res.Applied, err = s.restockRedis(rctx, k, amount, count, res.Action)
		}
		if err != nil {
			s.log.Warn("stock added in postgres, not yet in redis; the sweep adds it", "campaign_id", id, "err", err)
		}
	}
	if res.Replayed {
		ctx.Response.Header.Set(headerReplayed, "true")
	}
	writeValue(ctx, stockView{CampaignID: id, Amount: amount, Count: count, Total: res.Total, Applied: res.Applied, At: res.At.UTC()})
}

// restockRedis runs restock.lua for a new stock action and records that
// Redis has it. false with no error: the campaign is not in Redis (its load
// counts the stock; the sweep then marks the action).
func (s *Server) restockRedis(ctx context.Context, k *lua.Keys, amount, count, action int64) (bool, error) {
	start := time.Now()
	l, err := s.layoutOf(ctx, k.ID)
	if err != nil {
		return false, err
	}
	_, loaded, err := lua.AddStockBuckets(ctx, s.redis, l, amount, count)
	redisMerchant.UpdateDuration(start)
	if err != nil || !loaded {
		return false, err
	}
	s.stockBack(k.ID)
	return true, s.store.MarkStockApplied(ctx, []int64{action})
}

// stockBack drops this replica's sold-out state of campaign id at once
// (the other replicas' refreshers see the generation move).
func (s *Server) stockBack(id int64) {
	if c := s.hot.peek(id); c != nil {
		s.hot.stockBack(c)
	}
}

// lockCampaign takes the campaign's loading lock (loader.go), waiting a
// little for another holder, or fails with a rain.EBUSY error.
func (s *Server) lockCampaign(ctx context.Context, k *lua.Keys) (func(), error) {
	wait := 5 * time.Millisecond
	for deadline := time.Now().Add(2 * time.Second); ; {
		unlock, err := s.loader.lock(ctx, k)
		if !errors.Is(err, errRebuilding) {
			return unlock, err
		}
		if time.Now().After(deadline) {
			return nil, errStockLocked
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, errStockLocked
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// settleLocked makes Redis hold the stock of the campaign's pending stock
// actions, whose Redis step may or may not have run, and marks them
// applied; the caller holds the campaign's loading lock, so no restock and
// no load runs meanwhile. Per amount with pending actions it compares
// PostgreSQL's total with Redis's stock plus claims of that amount, read
// in this order: a claim made during the count moves a packet from the
// stock to the claims after the stock was read, so the sum can only be
// over, never under, and the shortfall added is never more than what is
// missing. It reports whether nothing is pending any more; false with no
// error when the campaign is not in Redis (its load counts the stock from
// PostgreSQL; the next sweep marks the actions).
func (s *Server) settleLocked(ctx context.Context, k *lua.Keys) (bool, error) {
	pending, totals, err := s.store.PendingStock(ctx, k.ID)
	if err != nil || len(pending) == 0 {
		return err == nil, err
	}
	l, err := s.layoutOf(ctx, k.ID)
	if err != nil {
		return false, err
	}
	st, err := lua.ReadBuckets(ctx, s.redis, l)
	if err != nil || !st.Loaded {
		return false, err
	}
	if st.Pending > 0 {
		// Packets in a transfer are counted nowhere: the count would be short.
		return false, errTransfers
	}
	claims := make(map[int64]int64)
	for _, b := range l.Buckets {
		byAmount, err := lua.ClaimsByAmount(ctx, s.redis, b.Keys)
		if err != nil {
			return false, err
		}
		for a, n := range byAmount {
			claims[a] += n
		}
	}
	want := make(map[int64]int64) // amount -> packets the pending actions add
	ids := make([]int64, 0, len(pending))
	for _, p := range pending {
		want[p.Amount] += p.Count
		ids = append(ids, p.Action)
	}
	for amount, n := range want {
		short := totals[amount] - st.Remaining[amount] - claims[amount]
		if add := min(short, n); add > 0 {
			if _, loaded, err := lua.AddStockBuckets(ctx, s.redis, l, amount, add); err != nil || !loaded {
				return false, err
			}
			pendingSettled.Add(int(add))
			s.log.Info("pending stock added to redis", "campaign_id", k.ID, "amount", amount, "count", add)
		}
	}
	s.stockBack(k.ID)
	return true, s.store.MarkStockApplied(ctx, ids)
}

// errTransfers: a bucketed campaign's stock is moving; the sweep settles
// its pending stock later.
var errTransfers = errors.New("stock transfers between buckets in flight")

// settle is settleLocked under the campaign's lock, for the sweep; a lock
// held elsewhere leaves the campaign to the next sweep.
func (s *Server) settle(ctx context.Context, id int64) error {
	k := s.keys.Of(id)
	unlock, err := s.loader.lock(ctx, k)
	if errors.Is(err, errRebuilding) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	_, err = s.settleLocked(ctx, k)
	return err
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
	id, ok := rain.ParseCampaignID(routeParam(ctx, "id"))
	if !ok {
		writeError(ctx, errCampaignID)
		return
	}
	csv := acceptsCSV(ctx)
	allowed := []string{"after", "limit"}
	if csv {
		allowed = allowed[:1]
	}
	q, err := query(ctx, allowed...)
	if err != nil {
		writeError(ctx, err)
		return
	}
	after, hasAfter := q["after"]
	if hasAfter && !rain.ValidUserID([]byte(after)) {
		writeError(ctx, rain.Errorf(rain.EINVALID, "after must be a user id"))
		return
	}
	limit, err := pageLimit(q, maxClaimsPage)
	if err != nil {
		writeError(ctx, err)
		return
	}
	if csv {
		limit = csvPage
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	start := time.Now()
	claims, more, err := s.store.ClaimsPage(rctx, id, after, limit)
	pgClaims.UpdateDuration(start)
	if err != nil {
		if rain.ErrorCode(err) != rain.ENOTFOUND {
			s.log.Error("read claims", "campaign_id", id, "err", err)
			err = errDBRead
		}
		writeError(ctx, err)
		return
	}
	if csv {
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType(contentTypeCSV)
		ctx.SetBodyStream(&claimsCSV{s: s, id: id, page: claims, more: more, conn: ctx.Conn(), buf: []byte(csvHeader)}, -1)
		return
	}
	page := struct {
		Claims []claimView `json:"claims"`
		Next   *string     `json:"next"`
	}{Claims: make([]claimView, 0, len(claims))}
	for _, c := range claims {
		page.Claims = append(page.Claims, claimView{UserID: c.User, Amount: c.Amount, ClaimedAt: c.ClaimedAt, Persisted: true})
	}
	if more {
		page.Next = &claims[len(claims)-1].User
	}
	writeValue(ctx, page)
}

// claimsCSV streams a campaign's claims as CSV, one page of claim_log at a
// time (keyset paging by user id: a short query each, no transaction held
// open), so memory stays at one page whatever the campaign's size. A read
// that fails ends the stream with an error, which makes the server close
// the connection without the chunked body's last chunk: the client sees a
// truncated response, never a short list that looks whole.
type claimsCSV struct {
	s    *Server
	id   int64
	page []postgres.Claim
	more bool
	last string // the user id of the last claim formatted
	conn net.Conn
	buf  []byte // formatted, not yet read
	off  int
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
	ctx, cancel := context.WithTimeout(context.Background(), r.s.cfg.RepairTimeout)
	defer cancel()
	start := time.Now()
	page, more, err := r.s.store.ClaimsPage(ctx, r.id, r.last, csvPage)
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
// 404 when the user has none (or there is no such campaign).
func (s *Server) userClaim(ctx *fasthttp.RequestCtx) {
	id, ok := rain.ParseCampaignID(routeParam(ctx, "id"))
	if !ok {
		writeError(ctx, errCampaignID)
		return
	}
	// The router matches the path as sent: the user id is still escaped.
	user, err := url.PathUnescape(string(routeParam(ctx, "user_id")))
	if err != nil || !rain.ValidUserID([]byte(user)) {
		writeError(ctx, errOpenUserID)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	start := time.Now()
	c, found, err := s.store.ClaimOf(rctx, id, user)
	pgClaims.UpdateDuration(start)
	if err != nil {
		s.log.Error("read claim", "campaign_id", id, "err", err)
		writeError(ctx, errDBRead)
		return
	}
	v := claimView{UserID: user, Amount: c.Amount, ClaimedAt: c.ClaimedAt, Persisted: true}
	if !found {
		l, err := s.layoutOf(rctx, id)
		var amount, at int64
		var inRedis bool
		if err == nil {
			amount, at, inRedis, err = lua.ClaimOf(rctx, s.redis, l.BucketOf(user).Keys, user)
		}
		if err != nil {
			writeError(ctx, busyIf(err))
			return
		}
		if !inRedis {
			writeError(ctx, rain.Errorf(rain.ENOTFOUND, "user %q has no claim in campaign %d", user, id))
			return
		}
		v = claimView{UserID: user, Amount: amount, ClaimedAt: time.UnixMilli(at).UTC(), Persisted: false}
	}
	writeValue(ctx, v)
}
