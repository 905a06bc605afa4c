package engine

import (
	"context"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/redpacket/rain/lua"
)

// stockGauges writes, at each scrape, the remaining stock and the claims of
// every live campaign as read from Redis:
//
//	rain_campaign_stock_remaining{campaign_id="1",amount="20"} 7
//	rain_campaign_claims{campaign_id="1"} 3
//
// Every api replica reports the same values (Redis is shared), so
// dashboards take max by campaign. The text is cached for stockTTL so a
// burst of scrapes costs one PostgreSQL query and one Redis round trip per
// live campaign.
type stockGauges struct {
	e     *Engine
	mu    sync.Mutex
	at    time.Time
	cache []byte
}

const stockTTL = 5 * time.Second

// maxStockCampaigns bounds the campaigns reported per scrape (the newest).
const maxStockCampaigns = 500

func (g *stockGauges) write(w io.Writer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.at) > stockTTL {
		g.cache = g.render(g.cache[:0])
		g.at = time.Now()
	}
	w.Write(g.cache)
}

func (g *stockGauges) render(b []byte) []byte {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ids, amounts, err := g.e.store.LiveAmounts(ctx, maxStockCampaigns)
	if err != nil {
		g.e.log.Warn("stock gauges: list live campaigns", "err", err)
		return b
	}
	for _, id := range ids {
		l, err := g.e.layoutOf(ctx, id)
		var st lua.LayoutState
		if err == nil {
			st, err = lua.ReadBuckets(ctx, g.e.redis, l)
		}
		if err != nil {
			g.e.log.Warn("stock gauges: read state", "campaign_id", id, "err", err)
			return b
		}
		if !st.Loaded {
			continue
		}
		cid := strconv.FormatInt(id, 10)
		for _, amount := range amounts[id] { // sold-out amounts show as 0
			n := st.Remaining[amount]
			b = append(b, `rain_campaign_stock_remaining{campaign_id="`...)
			b = append(b, cid...)
			b = append(b, `",amount="`...)
			b = strconv.AppendInt(b, amount, 10)
			b = append(b, `"} `...)
			b = strconv.AppendInt(b, n, 10)
			b = append(b, '\n')
		}
		b = append(b, `rain_campaign_claims{campaign_id="`...)
		b = append(b, cid...)
		b = append(b, `"} `...)
		b = strconv.AppendInt(b, st.Claims, 10)
		b = append(b, '\n')
	}
	return b
}
