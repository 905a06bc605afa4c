package edge

import (
	"context"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/retry"
	"github.com/redpacket/rain/lua"
	"github.com/valyala/fasthttp"
)

// createCampaign is POST /campaign: PostgreSQL first (one transaction), then
// the Redis load. If Redis fails in between, the campaign is not visible to
// opens (its meta hash is missing); the first open of it or the next boot
// loads it, and the merchant gets 503 with the id.
func (s *Server) createCampaign(ctx *fasthttp.RequestCtx) {
	c, err := parseCreateBody(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	start := time.Now()
	err = postgres.DataError(s.store.CreateCampaignBy(rctx, c, actor(ctx, createRecord(c), "")))
	pgCreate.UpdateDuration(start)
	if rain.ErrorCode(err) == rain.EINVALID {
		s.log.Info("create campaign refused by the database", "err", err)
		writeError(ctx, err)
		return
	}
	if err != nil {
		s.log.Error("create campaign", "err", err)
		writeBusy(ctx, "database unavailable; nothing was created")
		return
	}
	merchantActions[postgres.ActionCreate].Inc()
	_, err = backoff.Retry(rctx, func() (struct{}, error) { return struct{}{}, s.loader.Load(rctx, c) },
		backoff.WithBackOff(retry.BackOff(time.Second)), backoff.WithMaxTries(3))
	if err != nil {
		s.log.Error("campaign saved but not loaded into redis", "campaign_id", c.ID, "err", err)
		writeError(ctx, rain.Errorf(rain.EBUSY,
			"campaign %d was saved but its stock is not in Redis yet; it loads on its first open or the next boot", c.ID))
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

// campaignView is the body of GET /campaign/{id}.
type campaignView struct {
	ID        int64             `json:"id"`
	Name      string            `json:"name"`
	StartTime time.Time         `json:"start_time"`
	EndTime   time.Time         `json:"end_time"`
	CreatedAt time.Time         `json:"created_at"`
	State     string            `json:"state"`     // live, upcoming or ended
	EndedAt   *time.Time        `json:"ended_at"`  // when a merchant ended it early
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

// getCampaign is GET /campaign/{id}: the configuration from PostgreSQL, the
// live state from Redis and the merchant actions.
func (s *Server) getCampaign(ctx *fasthttp.RequestCtx) {
	id, ok := rain.ParseCampaignID(routeParam(ctx, "id"))
	if !ok {
		writeError(ctx, errCampaignID)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	s.writeCampaign(ctx, rctx, id)
}

// writeCampaign answers with what GET /campaign/{id} shows.
func (s *Server) writeCampaign(ctx *fasthttp.RequestCtx, rctx context.Context, id int64) {
	v, err := s.viewCampaign(rctx, id)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeValue(ctx, v)
}

// viewCampaign reads what GET /campaign/{id} shows; errors are the API's.
func (s *Server) viewCampaign(ctx context.Context, id int64) (*campaignView, error) {
	c, err := s.loader.campaign(ctx, id)
	if err == nil {
		var v campaignView
		v.EndedAt, err = s.store.EndedAt(ctx, id)
		if err == nil {
			v.History, _, err = s.store.History(ctx, id, historyLimit)
		}
		if err == nil {
			return s.campaignLive(ctx, c, v)
		}
	}
	if rain.ErrorCode(err) != rain.ENOTFOUND {
		s.log.Error("read campaign", "campaign_id", id, "err", err)
		err = rain.Errorf(rain.EBUSY, "database unavailable")
	}
	return nil, err
}

// campaignLive fills v with c and its live state from Redis.
func (s *Server) campaignLive(ctx context.Context, c *rain.Campaign, v campaignView) (*campaignView, error) {
	l, err := s.keys.Layout(c.ID, c.K())
	if err != nil {
		return nil, err
	}
	ls, err := lua.ReadBuckets(ctx, s.redis, l)
	if err != nil {
		return nil, busyIf(err)
	}
	st := ls.State
	v.Buckets = l.K()
	if l.K() > 1 {
		v.Pool = &poolView{Remaining: ls.PoolLeft, InTransit: ls.Pending}
		for b, bs := range ls.Buckets {
			v.BucketStates = append(v.BucketStates, bucketView{Bucket: b, Loaded: bs.Loaded, Remaining: bs.Left, Claims: bs.Claims, SoldOut: bs.Final})
		}
	}
	v.ID, v.Name, v.StartTime, v.EndTime, v.CreatedAt = c.ID, c.Name, c.StartTime.UTC(), c.EndTime.UTC(), c.CreatedAt.UTC()
	v.State, v.EndedAt = campaignState(c.StartTime, c.EndTime, time.Now()), utc(v.EndedAt)
	v.Loaded, v.Remaining, v.Claims = st.Loaded, st.Left, st.Claims
	if v.History == nil {
		v.History = []postgres.Action{}
	}
	for _, s := range c.Inventory {
		v.Total += s.Total
		v.Persisted += s.Opened
		v.Inventory = append(v.Inventory, inventoryView{Amount: s.Amount, Total: s.Total, Remaining: st.Remaining[s.Amount], Opened: s.Opened})
	}
	return &v, nil
}

// routeParam returns a path parameter set by the router.
func routeParam(ctx *fasthttp.RequestCtx, name string) []byte {
	v, _ := ctx.UserValue(name).(string)
	return []byte(v)
}
