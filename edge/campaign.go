package edge

import (
	"context"
	"encoding/json"
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
	err = postgres.DataError(s.store.CreateCampaign(rctx, c))
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

// campaignView is the body of GET /campaign/{id}.
type campaignView struct {
	ID        int64       `json:"id"`
	Name      string      `json:"name"`
	StartTime time.Time   `json:"start_time"`
	EndTime   time.Time   `json:"end_time"`
	CreatedAt time.Time   `json:"created_at"`
	Loaded    bool        `json:"loaded"`    // its state is in Redis (opens are served)
	Total     int64       `json:"total"`     // packets it started with
	Remaining int64       `json:"remaining"` // packets left, in Redis
	Claims    int64       `json:"claims"`    // users who opened one, in Redis
	Persisted int64       `json:"persisted"` // claims in PostgreSQL
	Inventory []stockView `json:"inventory"`
}

type stockView struct {
	Amount    int64 `json:"amount"`
	Total     int64 `json:"total"`
	Remaining int64 `json:"remaining"`
	Opened    int64 `json:"opened"` // persisted in PostgreSQL
}

// getCampaign is GET /campaign/{id}: the configuration from PostgreSQL and
// the live state from Redis.
func (s *Server) getCampaign(ctx *fasthttp.RequestCtx) {
	id, ok := rain.ParseCampaignID(routeParam(ctx, "id"))
	if !ok {
		writeError(ctx, errCampaignID)
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepairTimeout)
	defer cancel()
	c, err := s.loader.campaign(rctx, id)
	if err != nil {
		if rain.ErrorCode(err) != rain.ENOTFOUND {
			s.log.Error("read campaign", "campaign_id", id, "err", err)
			err = rain.Errorf(rain.EBUSY, "database unavailable")
		}
		writeError(ctx, err)
		return
	}
	st, err := lua.ReadState(rctx, s.redis, s.keys.Of(id))
	if err != nil {
		s.log.Warn("read campaign state", "campaign_id", id, "err", err)
		writeError(ctx, busyIf(err))
		return
	}
	v := campaignView{ID: c.ID, Name: c.Name, StartTime: c.StartTime.UTC(), EndTime: c.EndTime.UTC(),
		CreatedAt: c.CreatedAt.UTC(), Loaded: st.Loaded, Remaining: st.Left, Claims: st.Claims}
	for _, s := range c.Inventory {
		v.Total += s.Total
		v.Persisted += s.Opened
		v.Inventory = append(v.Inventory, stockView{Amount: s.Amount, Total: s.Total, Remaining: st.Remaining[s.Amount], Opened: s.Opened})
	}
	b, err := json.Marshal(v)
	if err != nil { // never an empty 200: create keeps times JSON can hold, so this is a bug
		s.log.Error("encode campaign", "campaign_id", id, "err", err)
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, b)
}

// routeParam returns a path parameter set by the router.
func routeParam(ctx *fasthttp.RequestCtx, name string) []byte {
	v, _ := ctx.UserValue(name).(string)
	return []byte(v)
}
