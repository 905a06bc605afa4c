package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redpacket/rain"
)

// The merchant's queries: the campaign list, ending a campaign early, adding
// stock, the claims for payouts, and the audit of merchant actions
// (campaign_action, migrations/002_merchant.sql).

// Action kinds, as campaign_action.kind holds them.
const (
	ActionCreate = "create"
	ActionEnd    = "end"
	ActionStock  = "stock"
)

// Actor is who asked for a merchant action and what they sent.
type Actor struct {
	// Name is the token's name: an ADMIN_TOKEN entry's (the operator), or
	// the merchant's name.
	Name string
	// Merchant is the merchant whose token it is, and so the scope of the
	// action: it acts on that merchant's campaigns only, and the campaigns
	// it creates are that merchant's. 0 is the operator: every campaign.
	Merchant int64
	// Token is the merchant token's id (0 for the operator's).
	Token   int64
	Request json.RawMessage // the request as the audit records it (JSON)
}

// Action is one merchant action of the audit.
type Action struct {
	At       time.Time       `json:"at"`
	Kind     string          `json:"kind"`
	By       string          `json:"by"`
	Merchant *string         `json:"merchant"` // the merchant whose token acted; null: the operator
	TokenID  *int64          `json:"token_id"` // that token's id; null: the operator's
	Request  json.RawMessage `json:"request"`
	Result   json.RawMessage `json:"result"`
}

// Listed is a campaign as the merchant's list shows it.
type Listed struct {
	rain.Campaign
	State    string     // StateLive, StateUpcoming or StateEnded, by the database's clock
	EndedAt  *time.Time // when a merchant ended it early
	Merchant *string    // its owner's name; nil: the operator's
}

// ListQuery is what ListCampaigns lists.
type ListQuery struct {
	Scope  int64  // the caller: a merchant sees its own campaigns only; 0 (the operator) sees every one
	Owner  string // only this merchant's campaigns ("": any; for the operator)
	State  string // StateLive, StateUpcoming, StateEnded, or "" for any
	Before int64  // ids below this (0: from the newest)
	Limit  int
}

// scopeWhere is the condition of a caller's scope on table campaign, $3
// its merchant id: constant text, one per kind of caller, so each gets a
// plan of its own (a merchant's through campaign_merchant_idx).
func scopeWhere(scope int64) string {
	if scope == 0 {
		return "$3::bigint = 0"
	}
	return "merchant_id = $3::bigint"
}

// ownerWhere is the condition of ListQuery.Owner, $4 the name.
func ownerWhere(owner string) string {
	if owner == "" {
		return "$4::text = ''"
	}
	return "merchant_id = (SELECT id FROM merchant WHERE name = $4::text)"
}

// States a campaign is listed under, by its window and the database's clock.
const (
	StateLive     = "live"
	StateUpcoming = "upcoming"
	StateEnded    = "ended"
)

// stateWhere is the condition of each state; constant text only.
var stateWhere = map[string]string{
	"":            "true",
	StateLive:     "start_time <= now() AND end_time > now()",
	StateUpcoming: "start_time > now()",
	StateEnded:    "end_time <= now()",
}

// ListCampaigns returns up to q.Limit campaigns of q.Scope (and q.Owner)
// in q.State, newest first, with ids below q.Before, each with its
// inventory and owner, in one query; more reports whether campaigns follow.
func (s *Store) ListCampaigns(ctx context.Context, q ListQuery) (out []Listed, more bool, err error) {
	where, ok := stateWhere[q.State]
	if !ok {
		return nil, false, fmt.Errorf("list campaigns: unknown state %q", q.State)
	}
	rows, _ := s.DB.Query(ctx, `
		SELECT c.id, c.name, c.start_time, c.end_time, c.created_at, c.ended_at,
		       CASE WHEN c.end_time <= now() THEN 'ended' WHEN c.start_time > now() THEN 'upcoming' ELSE 'live' END,
		       (SELECT name FROM merchant WHERE id = c.merchant_id),
		       coalesce(array_agg(i.amount ORDER BY i.amount DESC) FILTER (WHERE i.amount IS NOT NULL), '{}'),
		       coalesce(array_agg(i.total_count ORDER BY i.amount DESC) FILTER (WHERE i.amount IS NOT NULL), '{}'),
		       coalesce(array_agg(i.opened_count ORDER BY i.amount DESC) FILTER (WHERE i.amount IS NOT NULL), '{}')
		FROM (SELECT * FROM campaign WHERE ($1::bigint = 0 OR id < $1) AND `+where+`
		      AND `+scopeWhere(q.Scope)+` AND `+ownerWhere(q.Owner)+`
		      ORDER BY id DESC LIMIT $2) c
		LEFT JOIN campaign_inventory i ON i.campaign_id = c.id
		GROUP BY c.id, c.name, c.start_time, c.end_time, c.created_at, c.ended_at, c.merchant_id
		ORDER BY c.id DESC`, q.Before, q.Limit+1, q.Scope, q.Owner)
	var (
		l                       Listed
		amounts, totals, opened []int64
	)
	_, err = pgx.ForEachRow(rows, []any{&l.ID, &l.Name, &l.StartTime, &l.EndTime, &l.CreatedAt, &l.EndedAt, &l.State,
		&l.Merchant, &amounts, &totals, &opened}, func() error {
		c := l
		c.Inventory = make([]rain.Stock, len(amounts))
		for i := range amounts {
			c.Inventory[i] = rain.Stock{Amount: amounts[i], Total: totals[i], Opened: opened[i]}
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("list campaigns: %w", err)
	}
	if len(out) > q.Limit {
		return out[:q.Limit], true, nil
	}
	return out, false, nil
}

// CreateCampaignBy is CreateCampaign with the action recorded in the same
// transaction; the campaign is by.Merchant's (the operator's for 0).
func (s *Store) CreateCampaignBy(ctx context.Context, c *rain.Campaign, by Actor) error {
	return pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if err := createCampaign(ctx, tx, c, by.Merchant); err != nil {
			return err
		}
		result, _ := json.Marshal(map[string]int64{"id": c.ID})
		return recordAction(ctx, tx, c.ID, ActionCreate, by, result)
	})
}

func recordAction(ctx context.Context, tx pgx.Tx, id int64, kind string, by Actor, result []byte) error {
	_, err := tx.Exec(ctx, `INSERT INTO campaign_action (campaign_id, kind, actor, request, result, merchant_id, token_id)
		VALUES ($1, $2, $3, $4, $5, nullif($6, 0), nullif($7, 0))`, id, kind, by.Name, string(by.Request), string(result), by.Merchant, by.Token)
	if err != nil {
		return fmt.Errorf("record %s of campaign %d: %w", kind, id, err)
	}
	return nil
}

// Ended is a campaign's window after an end.
type Ended struct {
	Start, End time.Time
	EndedAt    *time.Time // when it was ended early (nil: it ran its whole window)
	Changed    bool       // this call ended it (it was not over yet)
}

// EndApply makes an end take effect where opens are decided (Redis), with
// the campaign's row locked: asked to end no later than end, it returns
// the end it applied, or ok false when it had nothing to apply it to.
type EndApply func(ctx context.Context, end time.Time) (applied time.Time, ok bool, err error)

// EndCampaign ends campaign id now and records the action, in one
// transaction that holds the campaign's row while apply makes the end take
// effect in Redis: the end recorded is the one Redis applied (its clock), so
// no claim is dated after it. The end never moves later; a campaign that
// had not started gets an empty window (start = end); on a campaign already
// over nothing changes. When apply has nothing to apply to (the campaign is
// not in Redis) the end is the database's now. A missing campaign is a
// rain.ENOTFOUND error, and so is another merchant's (by.Merchant's scope);
// an error of apply ends the transaction (nothing changed in PostgreSQL;
// Redis may have the end, and a retry records it).
func (s *Store) EndCampaign(ctx context.Context, id int64, by Actor, apply EndApply) (Ended, error) {
	var e Ended
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var end, now time.Time
		err := tx.QueryRow(ctx, `SELECT end_time, now() FROM campaign
			WHERE id = $1 AND ($2::bigint = 0 OR merchant_id = $2) FOR UPDATE`, id, by.Merchant).Scan(&end, &now)
		if errors.Is(err, pgx.ErrNoRows) {
			return rain.Errorf(rain.ENOTFOUND, "campaign %d not found", id)
		}
		if err != nil {
			return fmt.Errorf("lock campaign %d: %w", id, err)
		}
		at, ok, err := apply(ctx, end)
		if err != nil {
			return err
		}
		if !ok {
			at = now
		}
		err = tx.QueryRow(ctx, `
			UPDATE campaign SET
				end_time = least(end_time, $2),
				start_time = least(start_time, end_time, $2),
				ended_at = CASE WHEN end_time > $2 THEN $2 ELSE ended_at END
			WHERE id = $1
			RETURNING start_time, end_time, ended_at, $3::timestamptz > end_time`, id, at, end).
			Scan(&e.Start, &e.End, &e.EndedAt, &e.Changed)
		if err != nil {
			return fmt.Errorf("end campaign %d: %w", id, err)
		}
		result, _ := json.Marshal(map[string]any{"end_time": e.End.UTC(), "changed": e.Changed})
		return recordAction(ctx, tx, id, ActionEnd, by, result)
	})
	return e, err
}

// Restock is a request to add Count packets of Amount to a campaign.
type Restock struct {
	Campaign, Amount, Count int64
	Key                     string // the Idempotency-Key; "" for none
	By                      Actor
}

// Restocked is what a Restock did.
type Restocked struct {
	Action   int64     // its campaign_action id
	At       time.Time // when it was made
	Total    int64     // the amount's total after it
	Replayed bool      // an earlier request with the same key made it; nothing changed now
	Applied  bool      // Redis has it (false: pending, see PendingStock)
}

// restockResult is campaign_action.result of a stock action.
type restockResult struct {
	Total int64 `json:"total"`
}

// AddStock adds r.Count packets to the total of r.Amount, in one
// transaction with its action record. A request whose key an earlier one
// of the campaign used is answered from that one's record (Replayed) and
// changes nothing, or is a rain.ECONFLICT error if it asked for something
// else. What the campaign's state refuses is a rain.ECONFLICT error too (an
// amount the campaign does not have, a total over rain.MaxCount), or
// rain.EENDED (a campaign that has ended): the request was well formed;
// rain.ENOTFOUND a missing campaign or another merchant's (r.By's scope).
func (s *Store) AddStock(ctx context.Context, r Restock) (Restocked, error) {
	var out Restocked
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		var ended bool
		err := tx.QueryRow(ctx, `SELECT end_time <= now() FROM campaign
			WHERE id = $1 AND ($2::bigint = 0 OR merchant_id = $2) FOR UPDATE`, r.Campaign, r.By.Merchant).Scan(&ended)
		if errors.Is(err, pgx.ErrNoRows) {
			return rain.Errorf(rain.ENOTFOUND, "campaign %d not found", r.Campaign)
		}
		if err != nil {
			return fmt.Errorf("lock campaign %d: %w", r.Campaign, err)
		}
		if r.Key != "" {
			found, err := replay(ctx, tx, r, &out)
			if found || err != nil {
				return err
			}
		}
		if ended {
			return rain.Errorf(rain.EENDED, "campaign %d has ended; stock can be added only before its end", r.Campaign)
		}
		err = tx.QueryRow(ctx, `UPDATE campaign_inventory SET total_count = total_count + $3
			WHERE campaign_id = $1 AND amount = $2 AND total_count + $3 <= $4 RETURNING total_count`,
			r.Campaign, r.Amount, r.Count, rain.MaxCount).Scan(&out.Total)
		if errors.Is(err, pgx.ErrNoRows) {
			var total int64
			err = tx.QueryRow(ctx, `SELECT total_count FROM campaign_inventory WHERE campaign_id = $1 AND amount = $2`,
				r.Campaign, r.Amount).Scan(&total)
			if errors.Is(err, pgx.ErrNoRows) {
				return rain.Errorf(rain.ECONFLICT, "campaign %d has no packets of amount %d; stock is added to an amount of its inventory", r.Campaign, r.Amount)
			}
			if err == nil {
				return rain.Errorf(rain.ECONFLICT, "amount %d would have %d packets, over %d", r.Amount, total+r.Count, rain.MaxCount)
			}
		}
		if err != nil {
			return fmt.Errorf("add stock to campaign %d: %w", r.Campaign, err)
		}
		result, _ := json.Marshal(restockResult{Total: out.Total})
		var key *string
		if r.Key != "" {
			key = &r.Key
		}
		err = tx.QueryRow(ctx, `INSERT INTO campaign_action (campaign_id, kind, actor, request, result, idempotency_key, amount, count,
				merchant_id, token_id)
			VALUES ($1, 'stock', $2, $3, $4, $5, $6, $7, nullif($8, 0), nullif($9, 0)) RETURNING id, at`,
			r.Campaign, r.By.Name, string(r.By.Request), string(result), key, r.Amount, r.Count, r.By.Merchant, r.By.Token).
			Scan(&out.Action, &out.At)
		if err != nil {
			return fmt.Errorf("record stock of campaign %d: %w", r.Campaign, err)
		}
		return nil
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && r.Key != "" {
		// The same key committed meanwhile (the campaign row lock makes this
		// rare): answer from its record.
		return s.AddStock(ctx, r)
	}
	return out, err
}

// replay answers r from the record of an earlier request with its key.
func replay(ctx context.Context, tx pgx.Tx, r Restock, out *Restocked) (bool, error) {
	var (
		amount, count int64
		result        []byte
	)
	err := tx.QueryRow(ctx, `SELECT id, at, amount, count, result, applied_at IS NOT NULL FROM campaign_action
		WHERE campaign_id = $1 AND idempotency_key = $2`, r.Campaign, r.Key).
		Scan(&out.Action, &out.At, &amount, &count, &result, &out.Applied)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read idempotency key of campaign %d: %w", r.Campaign, err)
	}
	if amount != r.Amount || count != r.Count {
		return false, rain.Errorf(rain.ECONFLICT,
			"Idempotency-Key %q was used for another request (amount %d, count %d)", r.Key, amount, count)
	}
	var res restockResult
	if err := json.Unmarshal(result, &res); err != nil {
		return false, fmt.Errorf("stock action %d: result %q: %w", out.Action, result, err)
	}
	out.Total, out.Replayed = res.Total, true
	return true, nil
}

// MarkStockApplied records that Redis has the stock of these actions.
func (s *Store) MarkStockApplied(ctx context.Context, actions []int64) error {
	_, err := s.DB.Exec(ctx, `UPDATE campaign_action SET applied_at = now()
		WHERE id = ANY($1) AND applied_at IS NULL`, actions)
	if err != nil {
		return fmt.Errorf("mark stock applied: %w", err)
	}
	return nil
}

// PendingStockCampaigns lists the campaigns with stock actions older than
// age that Redis is not known to have.
func (s *Store) PendingStockCampaigns(ctx context.Context, age time.Duration) ([]int64, error) {
	rows, _ := s.DB.Query(ctx, `SELECT DISTINCT campaign_id FROM campaign_action
		WHERE kind = 'stock' AND applied_at IS NULL AND at < now() - $1::interval ORDER BY campaign_id`, age)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list pending stock: %w", err)
	}
	return ids, nil
}

// Pending is a stock action Redis is not known to have.
type Pending struct {
	Action, Amount, Count int64
}

// PendingStock returns campaign id's pending stock actions and the total of
// every amount of its inventory.
func (s *Store) PendingStock(ctx context.Context, id int64) ([]Pending, map[int64]int64, error) {
	rows, _ := s.DB.Query(ctx, `SELECT id, amount, count FROM campaign_action
		WHERE campaign_id = $1 AND kind = 'stock' AND applied_at IS NULL ORDER BY id`, id)
	pending, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Pending, error) {
		var p Pending
		err := r.Scan(&p.Action, &p.Amount, &p.Count)
		return p, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("pending stock of campaign %d: %w", id, err)
	}
	totals := make(map[int64]int64)
	var amount, total int64
	rows, _ = s.DB.Query(ctx, `SELECT amount, total_count FROM campaign_inventory WHERE campaign_id = $1`, id)
	if _, err := pgx.ForEachRow(rows, []any{&amount, &total}, func() error {
		totals[amount] = total
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("inventory of campaign %d: %w", id, err)
	}
	return pending, totals, nil
}

// Window is a campaign's time window.
type Window struct {
	ID         int64
	Start, End time.Time
}

// EndedSince lists the campaigns a merchant ended after since.
func (s *Store) EndedSince(ctx context.Context, since time.Time) ([]Window, error) {
	rows, _ := s.DB.Query(ctx, `SELECT id, start_time, end_time FROM campaign WHERE ended_at > $1 ORDER BY id`, since)
	ws, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Window, error) {
		var w Window
		err := r.Scan(&w.ID, &w.Start, &w.End)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("list ended campaigns: %w", err)
	}
	return ws, nil
}

// History is the merchant actions of campaign id, oldest first: the first
// limit of them, and whether more follow.
func (s *Store) History(ctx context.Context, id int64, limit int) ([]Action, bool, error) {
	rows, _ := s.DB.Query(ctx, `SELECT a.at, a.kind, a.actor, m.name, a.token_id, a.request, a.result
		FROM campaign_action a LEFT JOIN merchant m ON m.id = a.merchant_id
		WHERE a.campaign_id = $1 ORDER BY a.id LIMIT $2`, id, limit+1)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Action, error) {
		var a Action
		err := r.Scan(&a.At, &a.Kind, &a.By, &a.Merchant, &a.TokenID, &a.Request, &a.Result)
		a.At = a.At.UTC()
		return a, err
	})
	if err != nil {
		return nil, false, fmt.Errorf("history of campaign %d: %w", id, err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// EndedAt returns when campaign id was ended early (nil: it was not).
func (s *Store) EndedAt(ctx context.Context, id int64) (*time.Time, error) {
	var at *time.Time
	err := s.DB.QueryRow(ctx, `SELECT ended_at FROM campaign WHERE id = $1`, id).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rain.Errorf(rain.ENOTFOUND, "campaign %d not found", id)
	}
	return at, err
}

// Claim is one row of claim_log, as the payout routes show it.
type Claim struct {
	User      string
	Amount    int64
	ClaimedAt time.Time
}

// ClaimsPage returns up to limit claims of campaign id with user ids after
// after (in claim_log's order), and whether more follow. A missing campaign
// is a rain.ENOTFOUND error, and so is one outside the caller's scope (a
// merchant's id; 0: the operator, every campaign): its claims are not read.
func (s *Store) ClaimsPage(ctx context.Context, id, scope int64, after string, limit int) ([]Claim, bool, error) {
	rows, _ := s.DB.Query(ctx, `
		SELECT l.user_id, l.amount, l.claimed_at, c.id IS NOT NULL
		FROM (SELECT 1) one
		LEFT JOIN campaign c ON c.id = $1 AND ($4::bigint = 0 OR c.merchant_id = $4)
		LEFT JOIN LATERAL (SELECT user_id, amount, claimed_at FROM claim_log
		                   WHERE campaign_id = c.id AND user_id > $2 ORDER BY user_id LIMIT $3) l ON true
		ORDER BY l.user_id`,
		id, after, limit+1, scope)
	var (
		out    []Claim
		exists bool
		user   *string
		amount *int64
		at     *time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&user, &amount, &at, &exists}, func() error {
		if user != nil {
			out = append(out, Claim{User: *user, Amount: *amount, ClaimedAt: at.UTC()})
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("claims of campaign %d: %w", id, err)
	}
	if !exists {
		return nil, false, rain.Errorf(rain.ENOTFOUND, "campaign %d not found", id)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// ClaimOf returns user's claim in campaign id from claim_log; ok is false
// when there is none, or the campaign is outside the caller's scope (a
// merchant's id; 0: the operator, every campaign).
func (s *Store) ClaimOf(ctx context.Context, id, scope int64, user string) (c Claim, ok bool, err error) {
	err = s.DB.QueryRow(ctx, `SELECT l.user_id, l.amount, l.claimed_at FROM claim_log l
		JOIN campaign c ON c.id = l.campaign_id AND ($3::bigint = 0 OR c.merchant_id = $3)
		WHERE l.campaign_id = $1 AND l.user_id = $2`,
		id, user, scope).Scan(&c.User, &c.Amount, &c.ClaimedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("claim of campaign %d: %w", id, err)
	}
	c.ClaimedAt = c.ClaimedAt.UTC()
	return c, true, nil
}
