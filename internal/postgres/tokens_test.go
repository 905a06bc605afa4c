package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
)

// uniqueName is a merchant name no other test run has used (the test
// database is shared and merchants are never deleted).
func uniqueName(base string) string {
	return fmt.Sprintf("%s-%d-%d", strings.ToLower(base), time.Now().UnixNano()%1e12, rand.IntN(1e6))
}

func randomHash() [sha256.Size]byte {
	var b [8]byte
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return sha256.Sum256(append(b[:], []byte(time.Now().String())...))
}

// activeHashes reads the whole active set (as a replica that knows nothing).
func activeHashes(t *testing.T, s *postgres.Store) (int64, map[[sha256.Size]byte]postgres.ActiveToken) {
	t.Helper()
	v, tokens, changed, err := s.ActiveTokens(context.Background(), 0)
	if err != nil || !changed {
		t.Fatalf("active tokens: %v (changed %v)", err, changed)
	}
	out := make(map[[sha256.Size]byte]postgres.ActiveToken, len(tokens))
	for _, tk := range tokens {
		out[tk.Hash] = tk
	}
	return v, out
}

func TestMerchantTokens(t *testing.T) {
	s := testenv.Store(t)
	ctx := context.Background()
	name := uniqueName("acme")
	h1 := randomHash()
	v0, _ := activeHashes(t, s)
	m, err := s.CreateMerchant(ctx, name, h1)
	if err != nil || m.ID == 0 || len(m.Tokens) != 1 || m.Tokens[0].Role != postgres.RoleFull || m.Tokens[0].RevokedAt != nil {
		t.Fatalf("create: %+v %v", m, err)
	}
	if _, err := s.CreateMerchant(ctx, name, randomHash()); rain.ErrorCode(err) != rain.ECONFLICT {
		t.Errorf("the same name again: %v, want CONFLICT", err)
	}
	v1, set := activeHashes(t, s)
	if v1 <= v0 || set[h1].ID != m.Tokens[0].ID || set[h1].Merchant != m.ID || set[h1].Name != name || set[h1].Role != postgres.RoleFull {
		t.Fatalf("after create: version %d (was %d), token %+v", v1, v0, set[h1])
	}
	// Unchanged: one row, no tokens.
	if v, tokens, changed, err := s.ActiveTokens(ctx, v1); err != nil || changed || v != v1 || len(tokens) != 0 {
		t.Errorf("unchanged set: %d %d tokens changed=%v %v", v, len(tokens), changed, err)
	}

	h2 := randomHash()
	t2, err := s.AddToken(ctx, name, h2, postgres.RoleRead)
	if err != nil || t2.Role != postgres.RoleRead {
		t.Fatalf("add token: %+v %v", t2, err)
	}
	if _, err := s.AddToken(ctx, uniqueName("nobody"), randomHash(), postgres.RoleFull); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Errorf("a token of a missing merchant: %v", err)
	}
	v2, set := activeHashes(t, s)
	if v2 <= v1 || set[h2].ID != t2.ID || set[h2].Role != postgres.RoleRead || set[h1].ID == 0 {
		t.Fatalf("after add: version %d, %+v", v2, set[h2])
	}

	// Revoke: once; another merchant's token or a missing one is NOT_FOUND.
	other := uniqueName("other")
	if _, err := s.CreateMerchant(ctx, other, randomHash()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeToken(ctx, other, m.Tokens[0].ID); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Errorf("revoke through another merchant: %v", err)
	}
	if _, err := s.RevokeToken(ctx, name, 1<<62); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Errorf("revoke a missing token: %v", err)
	}
	r1, err := s.RevokeToken(ctx, name, m.Tokens[0].ID)
	if err != nil || r1.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", r1, err)
	}
	time.Sleep(2 * time.Millisecond)
	if r2, err := s.RevokeToken(ctx, name, m.Tokens[0].ID); err != nil || !r2.RevokedAt.Equal(*r1.RevokedAt) {
		t.Errorf("revoke again: %+v %v, first at %v", r2, err, r1.RevokedAt)
	}
	v3, set := activeHashes(t, s)
	if _, ok := set[h1]; ok || v3 <= v2 || set[h2].ID != t2.ID {
		t.Errorf("after revoke: version %d, revoked token still active %v, other %+v", v3, ok, set[h2])
	}

	// The list: every token, revoked ones too, by name.
	list, _, err := s.Merchants(ctx, strings.TrimSuffix(name, name[len(name)-1:]), 500)
	if err != nil {
		t.Fatal(err)
	}
	var got *postgres.Merchant
	for i := range list {
		if list[i].Name == name {
			got = &list[i]
		}
	}
	if got == nil || len(got.Tokens) != 2 || got.Tokens[0].RevokedAt == nil || got.Tokens[1].RevokedAt != nil || got.Tokens[1].Role != postgres.RoleRead {
		t.Errorf("listed: %+v", got)
	}
	page, more, err := s.Merchants(ctx, "", 1)
	if err != nil || len(page) != 1 || !more {
		t.Errorf("a page of one: %d more %v %v", len(page), more, err)
	}
}

// TestTokenVersionOrdersWriters: concurrent token changes each move the
// version, and a reader that sees a version sees every token up to it.
func TestTokenVersionOrdersWriters(t *testing.T) {
	s := testenv.Store(t)
	ctx := context.Background()
	name := uniqueName("busy")
	if _, err := s.CreateMerchant(ctx, name, randomHash()); err != nil {
		t.Fatal(err)
	}
	v0, _ := activeHashes(t, s)
	hashes := make([][sha256.Size]byte, 20)
	errs := make(chan error, len(hashes))
	for i := range hashes {
		hashes[i] = randomHash()
		go func() {
			_, err := s.AddToken(ctx, name, hashes[i], postgres.RoleFull)
			errs <- err
		}()
	}
	for range hashes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	v, set := activeHashes(t, s)
	if v-v0 < int64(len(hashes)) {
		t.Errorf("version moved %d for %d writes", v-v0, len(hashes))
	}
	for i, h := range hashes {
		if set[h].ID == 0 {
			t.Errorf("token %d missing at version %d", i, v)
		}
	}
}

// TestScopedCampaignQueries: every query of a merchant route answers
// another merchant's campaign as it answers a missing one, and changes
// nothing; the operator (scope 0) reaches every campaign.
func TestScopedCampaignQueries(t *testing.T) {
	s := testenv.Store(t)
	ctx := context.Background()
	a, err := s.CreateMerchant(ctx, uniqueName("a"), randomHash())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateMerchant(ctx, uniqueName("b"), randomHash())
	if err != nil {
		t.Fatal(err)
	}
	byA := postgres.Actor{Name: a.Name, Merchant: a.ID, Token: a.Tokens[0].ID, Request: json.RawMessage(`{}`)}
	byB := postgres.Actor{Name: b.Name, Merchant: b.ID, Token: b.Tokens[0].ID, Request: json.RawMessage(`{}`)}
	c := &rain.Campaign{Name: "scoped", StartTime: time.Now().Add(-time.Hour), EndTime: time.Now().Add(time.Hour),
		Inventory: []rain.Stock{{Amount: 5, Total: 3}}}
	if err := s.CreateCampaignBy(ctx, c, byA); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.DeleteCampaign(s.DB, c.ID) })
	var claims postgres.Claims
	claims.Append(c.ID, "u1", 5, time.Now().UTC().Truncate(time.Millisecond))
	if _, err := s.InsertClaims(ctx, &claims); err != nil {
		t.Fatal(err)
	}
	missing := c.ID + 1<<40

	// The gate: the same error for B on A's campaign as for a missing id.
	norm := func(err error, id int64) string {
		return rain.ErrorCode(err) + " " + strings.ReplaceAll(rain.ErrorMessage(err), fmt.Sprint(id), "{id}")
	}
	_, errB := s.CampaignFor(ctx, c.ID, b.ID)
	_, errMissing := s.CampaignFor(ctx, missing, a.ID)
	if rain.ErrorCode(errB) != rain.ENOTFOUND || norm(errB, c.ID) != norm(errMissing, missing) {
		t.Errorf("B's read of A's campaign %v, a missing one %v", errB, errMissing)
	}
	for _, scope := range []int64{a.ID, 0} {
		o, err := s.CampaignFor(ctx, c.ID, scope)
		if err != nil || o.Merchant == nil || *o.Merchant != a.Name || len(o.Inventory) != 1 {
			t.Errorf("scope %d: %+v %v", scope, o, err)
		}
	}
	if _, _, err := s.ClaimsPage(ctx, c.ID, b.ID, "", 10); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Errorf("B's claims page: %v", err)
	}
	if page, _, err := s.ClaimsPage(ctx, c.ID, a.ID, "", 10); err != nil || len(page) != 1 {
		t.Errorf("A's claims page: %v %v", page, err)
	}
	if _, found, err := s.ClaimOf(ctx, c.ID, b.ID, "u1"); found || err != nil {
		t.Errorf("B's read of a claim: found %v %v", found, err)
	}
	if _, found, err := s.ClaimOf(ctx, c.ID, 0, "u1"); !found || err != nil {
		t.Errorf("the operator's read of a claim: found %v %v", found, err)
	}

	// Writes: B's end and stock are NOT_FOUND and change nothing.
	apply := func(context.Context, time.Time) (time.Time, bool, error) {
		t.Error("B's end reached Redis")
		return time.Time{}, false, nil
	}
	if _, err := s.EndCampaign(ctx, c.ID, byB, apply); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Errorf("B's end: %v", err)
	}
	if _, err := s.AddStock(ctx, postgres.Restock{Campaign: c.ID, Amount: 5, Count: 1, By: byB}); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Errorf("B's stock: %v", err)
	}
	o, _ := s.CampaignFor(ctx, c.ID, 0)
	if o.EndedAt != nil || o.Inventory[0].Total != 3 {
		t.Errorf("B changed A's campaign: ended %v, total %d", o.EndedAt, o.Inventory[0].Total)
	}
	if _, err := s.AddStock(ctx, postgres.Restock{Campaign: c.ID, Amount: 5, Count: 1, By: byA}); err != nil {
		t.Errorf("A's stock: %v", err)
	}

	// Lists: B sees none of A's; the operator sees it, owner named; ?merchant filters.
	names := map[int64]string{a.ID: a.Name, b.ID: b.Name}
	seen := func(q postgres.ListQuery) bool {
		t.Helper()
		q.Limit = 500
		list, _, err := s.ListCampaigns(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range list {
			if q.Scope != 0 && (l.Merchant == nil || *l.Merchant != names[q.Scope]) {
				t.Errorf("merchant %d's list holds campaign %d of %v", q.Scope, l.ID, l.Merchant)
			}
			found = found || l.ID == c.ID && l.Merchant != nil && *l.Merchant == a.Name
		}
		return found
	}
	if seen(postgres.ListQuery{Scope: b.ID}) || !seen(postgres.ListQuery{Scope: a.ID}) || !seen(postgres.ListQuery{}) ||
		!seen(postgres.ListQuery{Owner: a.Name}) || seen(postgres.ListQuery{Owner: b.Name}) {
		t.Error("lists: A's campaign seen by the wrong callers")
	}

	// The audit: A's actions carry A and its token.
	hist, _, err := s.History(ctx, c.ID, 10)
	if err != nil || len(hist) != 2 || hist[0].Merchant == nil || *hist[0].Merchant != a.Name || *hist[0].TokenID != a.Tokens[0].ID {
		t.Fatalf("history: %+v %v", hist, err)
	}
	acts, more, err := s.MerchantActions(ctx, a.Name, 0, 1)
	if err != nil || len(acts) != 1 || !more || acts[0].Kind != postgres.ActionStock || acts[0].CampaignID != c.ID {
		t.Fatalf("A's actions: %+v %v %v", acts, more, err)
	}
	if next, _, err := s.MerchantActions(ctx, a.Name, acts[0].ID, 10); err != nil || len(next) != 1 || next[0].Kind != postgres.ActionCreate {
		t.Errorf("A's actions after %d: %+v %v", acts[0].ID, next, err)
	}
	if bs, _, err := s.MerchantActions(ctx, b.Name, 0, 10); err != nil || len(bs) != 0 {
		t.Errorf("B's actions: %+v %v", bs, err)
	}
	if _, _, err := s.MerchantActions(ctx, uniqueName("nobody"), 0, 10); rain.ErrorCode(err) != rain.ENOTFOUND {
		t.Errorf("a missing merchant's actions: %v", err)
	}
}
