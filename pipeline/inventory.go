package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reasons a claim is not written, as the dead-letter header and the
// rain_consumer_dead_letters_total label show them.
const (
	ReasonMalformed          = "malformed"           // not a JSON object
	ReasonUnsupportedVersion = "unsupported_version" // "v" is not EventVersion
	ReasonInvalid            = "invalid"             // a field missing or out of range
	ReasonUnknownCampaign    = "unknown_campaign"    // no such campaign in PostgreSQL
	ReasonUnknownAmount      = "unknown_amount"      // the amount is not in the campaign's inventory
	ReasonRejected           = "rejected"            // PostgreSQL refused the row (a constraint)
)

// inventoryCacheMax bounds the cache; past it the cache starts over.
const inventoryCacheMax = 100_000

// inventories answers which amounts a campaign's inventory holds, from an
// in-memory cache filled from PostgreSQL on a miss. A campaign's inventory
// is written once, with the campaign, and campaigns are never deleted, so a
// cached inventory never goes stale. Unknown campaigns are not cached: the
// next batch asks again (one query per batch, whatever its size).
type inventories struct {
	db *pgxpool.Pool
	mu sync.RWMutex
	m  map[int64]map[int64]struct{} // campaign -> amounts
}

// newInventories returns an empty cache over db.
func newInventories(db *pgxpool.Pool) *inventories {
	return &inventories{db: db, m: make(map[int64]map[int64]struct{})}
}

// Check reports, for each event, "" if its campaign and amount exist, or
// ReasonUnknownCampaign / ReasonUnknownAmount. It reads PostgreSQL once for
// all the campaigns of evs it has not cached; an error means PostgreSQL
// could not be read (retry later), never that an event is bad.
func (inv *inventories) Check(ctx context.Context, evs []Event) ([]string, error) {
	reasons := make([]string, len(evs))
	var missing []int64
	inv.mu.RLock()
	for _, ev := range evs {
		if _, ok := inv.m[ev.CampaignID]; !ok && !contains(missing, ev.CampaignID) {
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
			reasons[i] = ReasonUnknownCampaign
		default:
			if _, ok := amounts[ev.Amount]; !ok {
				reasons[i] = ReasonUnknownAmount
			}
		}
	}
	return reasons, nil
}

// load caches the inventories of the given campaigns that exist.
func (inv *inventories) load(ctx context.Context, ids []int64) error {
	start := time.Now()
	rows, _ := inv.db.Query(ctx,
		`SELECT campaign_id, amount FROM campaign_inventory WHERE campaign_id = ANY($1)`, ids)
	found := make(map[int64]map[int64]struct{}, len(ids))
	var id, amount int64
	_, err := pgx.ForEachRow(rows, []any{&id, &amount}, func() error {
		if found[id] == nil {
			found[id] = make(map[int64]struct{}, 4)
		}
		found[id][amount] = struct{}{}
		return nil
	})
	pgLoadInventory.UpdateDuration(start)
	if err != nil {
		return fmt.Errorf("load inventories of campaigns %v: %w", ids, err)
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

func contains(s []int64, v int64) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
