package edge

import (
	"context"
	"strconv"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/valyala/fasthttp"
)

// createCampaign is POST /campaign: the engine saves it (PostgreSQL, one
// transaction) and loads it into Redis. If Redis fails in between, the
// campaign is not visible to opens; its first open or the next boot loads
// it, and the merchant gets 503 with the id.
func (s *Server) createCampaign(ctx *fasthttp.RequestCtx) {
	c, err := parseCreateBody(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.eng.Create(rctx, c, actor(ctx, createRecord(c), "")); err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusCreated, strconv.AppendInt([]byte(`{"id":`), c.ID, 10))
	ctx.Response.AppendBodyString("}")
}

// createRecord is what the audit records of a create: the campaign asked for.
func createRecord(c *rain.Campaign) any {
	inv := make(map[string]int64, len(c.Inventory))
	for _, st := range c.Inventory {
		inv[strconv.FormatInt(st.Amount, 10)] = st.Total
	}
	r := map[string]any{"name": c.Name, "start_time": c.StartTime, "end_time": c.EndTime, "inventory": inv}
	if c.K() > 1 {
		r["buckets"] = c.K()
	}
	return r
}

// campaignHead is what every view of a campaign starts with (GET
// /campaign/{id}, a page of GET /campaigns).
type campaignHead struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	Merchant  *string    `json:"merchant"` // the owner; null: the operator's
	StartTime time.Time  `json:"start_time"`
	EndTime   time.Time  `json:"end_time"`
	CreatedAt time.Time  `json:"created_at"`
	State     string     `json:"state"`    // live, upcoming or ended
	EndedAt   *time.Time `json:"ended_at"` // when a merchant ended it early
}

func newCampaignHead(c *rain.Campaign, merchant *string, state string, endedAt *time.Time) campaignHead {
	return campaignHead{ID: c.ID, Name: c.Name, Merchant: merchant, StartTime: c.StartTime.UTC(), EndTime: c.EndTime.UTC(),
		CreatedAt: c.CreatedAt.UTC(), State: state, EndedAt: utc(endedAt)}
}

// campaignView is the body of GET /campaign/{id}.
type campaignView struct {
	campaignHead
	Buckets   int               `json:"buckets"`   // Redis hash tags the stock is split over
	Loaded    bool              `json:"loaded"`    // its state is in Redis (opens are served)
	Total     int64             `json:"total"`     // packets in all (stock added included)
	Remaining int64             `json:"remaining"` // packets left, in Redis
	Claims    int64             `json:"claims"`    // users who opened one, in Redis
	Persisted int64             `json:"persisted"` // claims in PostgreSQL
	Inventory []inventoryView   `json:"inventory"`
	History   []postgres.Action `json:"history"` // merchant actions, oldest first (the first 1000)
	// A bucketed campaign's parts: the pool and each bucket (K > 1 only).
	Pool         *poolView    `json:"pool,omitempty"`
	BucketStates []bucketView `json:"bucket_states,omitempty"`
}

type poolView struct {
	Remaining int64 `json:"remaining"`
	InTransit int64 `json:"in_transit"` // transfers not settled
}

type bucketView struct {
	Bucket    int   `json:"bucket"`
	Loaded    bool  `json:"loaded"`
	Remaining int64 `json:"remaining"`
	Claims    int64 `json:"claims"`
	SoldOut   bool  `json:"sold_out"` // the global check set its final flag
}

type inventoryView struct {
	Amount    int64 `json:"amount"`
	Total     int64 `json:"total"`
	Remaining int64 `json:"remaining"`
	Opened    int64 `json:"opened"` // persisted in PostgreSQL
}

// campaignIDParam is the campaign id of the request's path; a malformed one is
// answered 400 here (false).
func campaignIDParam(ctx *fasthttp.RequestCtx) (int64, bool) {
	id, ok := rain.ParseCampaignID(routeParam(ctx, "id"))
	if !ok {
		writeError(ctx, errCampaignID)
	}
	return id, ok
}

// campaignFor is the one gate of every route of one campaign (read, end,
// add stock, its claims, a user's claim, and any route of a campaign
// added later): it reads campaign id within the scope of the request's
// principal (auth.go), the operator's being every campaign. A campaign of
// another merchant is answered exactly as one that does not exist: 404
// NOT_FOUND with the same body, from the same query (a row that is not
// there), so neither the answer nor the work behind it tells that the id
// exists. Errors are the API's.
func (s *Server) campaignFor(ctx *fasthttp.RequestCtx, rctx context.Context, id int64) (*postgres.Owned, error) {
	start := time.Now()
	c, err := s.store.CampaignFor(rctx, id, principalFor(ctx).merchant)
	pgCampaign.UpdateDuration(start)
	if err != nil && rain.ErrorCode(err) != rain.ENOTFOUND {
		s.log.Error("read campaign", "campaign_id", id, "err", err)
		return nil, errDBRead
	}
	return c, err
}

// withCampaign runs fn, with a context bounded by RequestTimeout, once
// campaignFor lets the request into campaign id; a refusal (404, 503) is
// answered here.
func (s *Server) withCampaign(ctx *fasthttp.RequestCtx, id int64, fn func(rctx context.Context)) {
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	if _, err := s.campaignFor(ctx, rctx, id); err != nil {
		writeError(ctx, err)
		return
	}
	fn(rctx)
}

// getCampaign is GET /campaign/{id}: the configuration from PostgreSQL, the
// live state from Redis and the merchant actions.
func (s *Server) getCampaign(ctx *fasthttp.RequestCtx) {
	id, ok := campaignIDParam(ctx)
	if !ok {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	s.writeCampaign(ctx, rctx, id)
}

// writeCampaign answers with what GET /campaign/{id} shows.
func (s *Server) writeCampaign(ctx *fasthttp.RequestCtx, rctx context.Context, id int64) {
	c, err := s.campaignFor(ctx, rctx, id)
	if err != nil {
		writeError(ctx, err)
		return
	}
	v, err := s.viewCampaign(rctx, c)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeValue(ctx, v)
}

// viewCampaign reads what GET /campaign/{id} shows of o; errors are the API's.
func (s *Server) viewCampaign(ctx context.Context, o *postgres.Owned) (*campaignView, error) {
	c := o.Campaign
	var (
		v   campaignView
		err error
	)
	v.History, _, err = s.store.History(ctx, c.ID, historyLimit)
	if err != nil {
		s.log.Error("read campaign", "campaign_id", c.ID, "err", err)
		return nil, errDBRead
	}
	live, err := s.eng.Live(ctx, c)
	if err != nil {
		return nil, err
	}
	v.campaignHead = newCampaignHead(c, o.Merchant, campaignState(c.StartTime, c.EndTime, time.Now()), o.EndedAt)
	v.Buckets = c.K()
	v.Loaded, v.Remaining, v.Claims = live.Loaded, live.Remaining, live.Claims
	if c.K() > 1 {
		v.Pool = &poolView{Remaining: live.PoolLeft, InTransit: live.InTransit}
		for b, bs := range live.Buckets {
			v.BucketStates = append(v.BucketStates, bucketView{Bucket: b, Loaded: bs.Loaded, Remaining: bs.Remaining, Claims: bs.Claims, SoldOut: bs.SoldOut})
		}
	}
	if v.History == nil {
		v.History = []postgres.Action{}
	}
	for _, st := range c.Inventory {
		v.Total += st.Total
		v.Persisted += st.Opened
		v.Inventory = append(v.Inventory, inventoryView{Amount: st.Amount, Total: st.Total, Remaining: live.ByAmount[st.Amount], Opened: st.Opened})
	}
	return &v, nil
}

// routeParam returns a path parameter set by the router.
func routeParam(ctx *fasthttp.RequestCtx, name string) []byte {
	v, _ := ctx.UserValue(name).(string)
	return []byte(v)
}
