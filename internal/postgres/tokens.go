package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redpacket/rain"
)

// Merchants and their tokens (migrations/004_merchants.sql): what the
// operator's routes change and read, the set of active tokens every api
// keeps in memory, and a merchant's actions.

// Token roles, as merchant_token.role holds them.
const (
	RoleFull = "full" // every merchant route on the merchant's campaigns
	RoleRead = "read" // list, read and export; no create, end or stock
)

// Merchant is a merchant with its tokens (never their secrets).
type Merchant struct {
	ID        int64
	Name      string
	CreatedAt time.Time
	Tokens    []Token
}

// Token is one merchant token as the operator sees it.
type Token struct {
	ID        int64      `json:"id"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// ActiveToken is a token that lets its merchant in: what each api holds in
// memory, by the SHA-256 of the secret.
type ActiveToken struct {
	ID       int64
	Hash     [sha256.Size]byte
	Role     string
	Merchant int64
	Name     string // the merchant's
}

// bumpTokens moves the version of the token set, in the transaction that
// changes it; the row lock orders the writers, so a reader that sees a
// version sees every change up to it.
func bumpTokens(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `UPDATE merchant_token_version SET version = version + 1`); err != nil {
		return fmt.Errorf("bump token version: %w", err)
	}
	return nil
}

func insertToken(ctx context.Context, tx pgx.Tx, merchant int64, hash [sha256.Size]byte, role string) (Token, error) {
	t := Token{Role: role}
	err := tx.QueryRow(ctx, `INSERT INTO merchant_token (merchant_id, hash, role) VALUES ($1, $2, $3)
		RETURNING id, created_at`, merchant, hash[:], role).Scan(&t.ID, &t.CreatedAt)
	if err != nil {
		return t, fmt.Errorf("insert token: %w", err)
	}
	t.CreatedAt = t.CreatedAt.UTC()
	return t, bumpTokens(ctx, tx)
}

// CreateMerchant adds merchant name with its first token (role full), whose
// secret hashes to hash. A name taken is a rain.ECONFLICT error.
func (s *Store) CreateMerchant(ctx context.Context, name string, hash [sha256.Size]byte) (Merchant, error) {
	m := Merchant{Name: name}
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO merchant (name) VALUES ($1) RETURNING id, created_at`, name).Scan(&m.ID, &m.CreatedAt)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "merchant_name_key" {
			return rain.Errorf(rain.ECONFLICT, "merchant %q exists", name)
		}
		if err != nil {
			return fmt.Errorf("insert merchant: %w", err)
		}
		t, err := insertToken(ctx, tx, m.ID, hash, RoleFull)
		m.Tokens = []Token{t}
		return err
	})
	m.CreatedAt = m.CreatedAt.UTC()
	return m, err
}

// merchantID returns the id of merchant name, locked for the transaction
// (so no two token changes of one merchant interleave), or a rain.ENOTFOUND
// error.
func merchantID(ctx context.Context, tx pgx.Tx, name string) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM merchant WHERE name = $1 FOR UPDATE`, name).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, rain.Errorf(rain.ENOTFOUND, "merchant %q not found", name)
	}
	if err != nil {
		return 0, fmt.Errorf("read merchant: %w", err)
	}
	return id, nil
}

// AddToken adds a token of role to merchant name, whose secret hashes to
// hash. A missing merchant is a rain.ENOTFOUND error.
func (s *Store) AddToken(ctx context.Context, name string, hash [sha256.Size]byte, role string) (Token, error) {
	var t Token
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		id, err := merchantID(ctx, tx, name)
		if err != nil {
			return err
		}
		t, err = insertToken(ctx, tx, id, hash, role)
		return err
	})
	return t, err
}

// RevokeToken revokes token id of merchant name (once: a token revoked
// before keeps its time). A missing merchant, or a token that is not that
// merchant's, is a rain.ENOTFOUND error.
func (s *Store) RevokeToken(ctx context.Context, name string, id int64) (Token, error) {
	var t Token
	err := pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		merchant, err := merchantID(ctx, tx, name)
		if err != nil {
			return err
		}
		err = tx.QueryRow(ctx, `UPDATE merchant_token SET revoked_at = coalesce(revoked_at, now())
			WHERE id = $1 AND merchant_id = $2 RETURNING id, role, created_at, revoked_at`, id, merchant).
			Scan(&t.ID, &t.Role, &t.CreatedAt, &t.RevokedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return rain.Errorf(rain.ENOTFOUND, "merchant %q has no token %d", name, id)
		}
		if err != nil {
			return fmt.Errorf("revoke token: %w", err)
		}
		t.CreatedAt, t.RevokedAt = t.CreatedAt.UTC(), utcPtr(t.RevokedAt)
		return bumpTokens(ctx, tx)
	})
	return t, err
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Merchants returns up to limit merchants with names after after, in name
// order, each with every token (revoked ones too), and whether more follow.
func (s *Store) Merchants(ctx context.Context, after string, limit int) ([]Merchant, bool, error) {
	rows, _ := s.DB.Query(ctx, `
		SELECT m.id, m.name, m.created_at,
		       coalesce(json_agg(json_build_object('id', t.id, 'role', t.role, 'created_at', t.created_at,
		                'revoked_at', t.revoked_at) ORDER BY t.id) FILTER (WHERE t.id IS NOT NULL), '[]')
		FROM (SELECT * FROM merchant WHERE name > $1 ORDER BY name LIMIT $2) m
		LEFT JOIN merchant_token t ON t.merchant_id = m.id
		GROUP BY m.id, m.name, m.created_at
		ORDER BY m.name`, after, limit+1)
	var (
		out    []Merchant
		m      Merchant
		tokens []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&m.ID, &m.Name, &m.CreatedAt, &tokens}, func() error {
		c := m
		c.CreatedAt = c.CreatedAt.UTC()
		if err := json.Unmarshal(tokens, &c.Tokens); err != nil {
			return fmt.Errorf("tokens of merchant %q: %w", c.Name, err)
		}
		for i := range c.Tokens {
			c.Tokens[i].CreatedAt, c.Tokens[i].RevokedAt = c.Tokens[i].CreatedAt.UTC(), utcPtr(c.Tokens[i].RevokedAt)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("list merchants: %w", err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// ActiveTokens returns the version of the token set and, when it is not
// known (the caller holds version known), every active token with it, in
// one statement (one snapshot: the tokens are those of that version).
// changed is false, with no tokens, when the set is still at known.
func (s *Store) ActiveTokens(ctx context.Context, known int64) (version int64, tokens []ActiveToken, changed bool, err error) {
	rows, _ := s.DB.Query(ctx, `
		SELECT v.version, t.id, t.hash, t.role, m.id, m.name
		FROM merchant_token_version v
		LEFT JOIN (merchant_token t JOIN merchant m ON m.id = t.merchant_id)
		       ON v.version <> $1 AND t.revoked_at IS NULL`, known)
	var (
		id, merchant *int64
		hash         []byte
		role, name   *string
	)
	_, err = pgx.ForEachRow(rows, []any{&version, &id, &hash, &role, &merchant, &name}, func() error {
		if id == nil {
			return nil
		}
		if len(hash) != sha256.Size {
			return fmt.Errorf("token %d: a hash of %d bytes", *id, len(hash))
		}
		t := ActiveToken{ID: *id, Role: *role, Merchant: *merchant, Name: *name}
		copy(t.Hash[:], hash)
		tokens = append(tokens, t)
		return nil
	})
	if err != nil {
		return 0, nil, false, fmt.Errorf("read merchant tokens: %w", err)
	}
	return version, tokens, version != known, nil
}

// MerchantAction is one action of a merchant's audit.
type MerchantAction struct {
	ID         int64 `json:"id"`
	CampaignID int64 `json:"campaign_id"`
	Action
}

// MerchantActions returns up to limit actions taken with merchant name's
// tokens, newest first, with ids below before (0: from the newest), and
// whether more follow. A missing merchant is a rain.ENOTFOUND error.
func (s *Store) MerchantActions(ctx context.Context, name string, before int64, limit int) ([]MerchantAction, bool, error) {
	rows, _ := s.DB.Query(ctx, `
		SELECT a.id, a.campaign_id, a.at, a.kind, a.actor, m.name, a.token_id, a.request, a.result
		FROM (SELECT 1) one
		LEFT JOIN merchant m ON m.name = $1
		LEFT JOIN LATERAL (SELECT * FROM campaign_action
		                   WHERE merchant_id = m.id AND ($2::bigint = 0 OR id < $2) ORDER BY id DESC LIMIT $3) a ON true
		ORDER BY a.id DESC`, name, before, limit+1)
	var (
		out      []MerchantAction
		exists   bool
		id, camp *int64
		at       *time.Time
		kind, by *string
		merchant *string
		token    *int64
		request  []byte
		result   []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &camp, &at, &kind, &by, &merchant, &token, &request, &result}, func() error {
		exists = merchant != nil
		if id == nil {
			return nil
		}
		name, tok := *merchant, *token // copies: the scan targets are reused
		out = append(out, MerchantAction{ID: *id, CampaignID: *camp, Action: Action{At: at.UTC(), Kind: *kind, By: *by,
			Merchant: &name, TokenID: &tok, Request: append([]byte(nil), request...), Result: append([]byte(nil), result...)}})
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("actions of merchant %q: %w", name, err)
	}
	if !exists {
		return nil, false, rain.Errorf(rain.ENOTFOUND, "merchant %q not found", name)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
