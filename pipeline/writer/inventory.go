package writer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/pipeline"
)

// inventoryCacheMax bounds the cache; past it the cache starts over.
const inventoryCacheMax = 100_000

// inventories answers which amounts a campaign's inventory holds, from an
// in-memory cache filled from PostgreSQL on a miss. A campaign's inventory
// is written once, with the campaign, and campaigns are never deleted, so a
// cached inventory never goes stale. Unknown campaigns are not cached: the
// next batch asks again (one query per batch, whatever its size).
type inventories struct {
	db *postgres.Store
	mu sync.RWMutex
	m  map[int64]map[int64]struct{} // campaign -> amounts
}

// newInventories returns an empty cache over db.
func newInventories(db *postgres.Store) *inventories {
	return &inventories{db: db, m: make(map[int64]map[int64]struct{})}
}

// Check reports, for each event, "" if its campaign and amount exist, or
// pipeline.ReasonUnknownCampaign / pipeline.ReasonUnknownAmount. It reads PostgreSQL once for
// all the campaigns of evs it has not cached; an error means PostgreSQL
// could not be read (retry later), never that an event is bad.
func (inv *inventories) Check(ctx context.Context, evs []pipeline.Event) ([]string, error) {
	reasons := make([]string, len(evs))
	var missing []int64
	inv.mu.RLock()
	for _, ev := range evs {
		if _, ok := inv.m[ev.CampaignID]; !ok && !slices.Contains(missing, ev.CampaignID) {
			missing = append(missing, ev.CampaignID)
		}
	}
	inv.mu.RUnlock()
	if len(missing) > 0 {
		if err := inv.load(ctx, missing); err != nil {
			return nil, err
		}
	}
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	for i, ev := range evs {
		amounts, ok := inv.m[ev.CampaignID]
		switch {
		case !ok:
			reasons[i] = pipeline.ReasonUnknownCampaign
		default:
			if _, ok := amounts[ev.Amount]; !ok {
				reasons[i] = pipeline.ReasonUnknownAmount
			}
		}
	}
	return reasons, nil
}

// load caches the inventories of the given campaigns that exist.
func (inv *inventories) load(ctx context.Context, ids []int64) error {
	start := time.Now()
	found, err := inv.db.InventoryAmounts(ctx, ids)
	pgLoadInventory.UpdateDuration(start)
	if err != nil {
		return err
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if len(inv.m)+len(found) > inventoryCacheMax {
		inv.m = make(map[int64]map[int64]struct{}, len(found))
	}
	for id, amounts := range found {
		inv.m[id] = amounts
	}
	return nil
}
