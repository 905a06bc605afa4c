package edge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/valyala/fasthttp"
)

// Merchants apart: the hostile tests. A merchant's token reaches
// that merchant's campaigns only, another merchant's campaign is answered
// exactly as an unknown id, read-only tokens read, merchant tokens never
// reach the operator's routes, a revoked token stops on every replica
// within the bound, and bad tokens cost no PostgreSQL round trip.

// Pure tests.

func TestMerchantNames(t *testing.T) {
	for name, ok := range map[string]bool{"acme": true, "a": true, "shop-b_2": true, "0a": true, strings.Repeat("a", 64): true,
		"": false, strings.Repeat("a", 65): false, "Acme": false, "-a": false, "_a": false, "a b": false, "a.b": false, "é": false, "a/b": false} {
		if got := validMerchantName(name); got != ok {
			t.Errorf("%q: %v, want %v", name, got, ok)
		}
	}
}

func TestMerchantBodies(t *testing.T) {
	for body, want := range map[string]string{`{"name":"acme"}`: "acme", ` {"name":"a-1"} `: "a-1",
		`{"name":"Acme"}`: "", `{"name":""}`: "", `{"name":1}`: "", `{}`: "", `{"name":"a","name":"b"}`: "",
		`{"name":"a","x":1}`: "", `{"Name":"a"}`: "", `[]`: "", ``: "", `{"name":"a"} {}`: ""} {
		got, err := parseMerchantBody([]byte(body))
		if got != want || (err == nil) != (want != "") || err != nil && rain.ErrorCode(err) != rain.EINVALID {
			t.Errorf("%q: %q %v, want %q", body, got, err, want)
		}
	}
	if _, err := parseMerchantBody([]byte(`{"name":"a"` + strings.Repeat(" ", maxMerchantBody) + `}`)); rain.ErrorCode(err) != rain.ETOOLARGE {
		t.Errorf("over 4 KiB: %v", err)
	}
	for body, want := range map[string]string{``: "full", ` `: "", "\t": "", "\n": "", `{}`: "full", ` {} `: "full", `{"role":"read"}`: "read", `{"role":"full"}`: "full",
		`{"role":"admin"}`: "", `{"role":"READ"}`: "", `{"role":1}`: "", `{"role":"read","role":"read"}`: "", `{"x":1}`: "", `null`: ""} {
		got, err := parseTokenBody([]byte(body))
		if got != want || (err == nil) != (want != "") {
			t.Errorf("token body %q: %q %v, want %q", body, got, err, want)
		}
	}
}

func TestNewTokenSecret(t *testing.T) {
	format := regexp.MustCompile(`^rpm_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for range 1000 {
		s, h := newTokenSecret()
		if !format.MatchString(s) || seen[s] || h != sha256.Sum256([]byte(s)) {
			t.Fatalf("secret %q (seen %v), hash %x", s, seen[s], h)
		}
		seen[s] = true
	}
}

// cacheWith is a token cache holding tokens, read at now.
func cacheWith(now time.Time, maxStale time.Duration, tokens ...postgres.ActiveToken) *tokenCache {
	c := &tokenCache{cfg: TokenConfig{Refresh: time.Second, MaxStale: maxStale}, now: func() time.Time { return now }}
	set := &tokenSet{version: 1, byHash: map[[sha256.Size]byte]postgres.ActiveToken{}}
	for _, t := range tokens {
		set.byHash[t.Hash] = t
	}
	c.set.Store(set)
	c.read.Store(now.UnixNano())
	return c
}

// TestTokenCacheLookup: a known digest is found, an unknown one is 401, and
// a set not read for over MaxStale (or never read) refuses every merchant
// token with 503.
func TestTokenCacheLookup(t *testing.T) {
	now := time.Now()
	secret, h := newTokenSecret()
	c := cacheWith(now, 10*time.Second, postgres.ActiveToken{ID: 7, Hash: h, Role: postgres.RoleFull, Merchant: 3, Name: "acme"})
	if tk, err := c.lookup(sha256.Sum256([]byte(secret))); err != nil || tk.ID != 7 {
		t.Fatalf("known token: %+v %v", tk, err)
	}
	other, _ := newTokenSecret()
	if _, err := c.lookup(sha256.Sum256([]byte(other))); rain.ErrorCode(err) != rain.EUNAUTHORIZED {
		t.Errorf("unknown token: %v", err)
	}
	c.now = func() time.Time { return now.Add(11 * time.Second) }
	for _, s := range []string{secret, other} {
		if _, err := c.lookup(sha256.Sum256([]byte(s))); rain.ErrorCode(err) != rain.EBUSY {
			t.Errorf("stale set: %v, want BUSY", err)
		}
	}
	never := &tokenCache{now: time.Now}
	if _, err := never.lookup(h); rain.ErrorCode(err) != rain.EBUSY || !math.IsInf(never.ageSeconds(), 1) {
		t.Errorf("never read: %v, want BUSY; age %v, want +Inf", err, never.ageSeconds())
	}
}

// TestGuardedRoles: who each wrapper lets in, without a database.
func TestGuardedRoles(t *testing.T) {
	full, fh := newTokenSecret()
	read, rh := newTokenSecret()
	s := &Server{tokens: tokenDigests([]string{"ops:op-secret"}), cfg: Config{AdminTokens: []string{"ops:op-secret"}}}
	s.merchants = *cacheWith(time.Now(), time.Hour,
		postgres.ActiveToken{ID: 1, Hash: fh, Role: postgres.RoleFull, Merchant: 5, Name: "acme"},
		postgres.ActiveToken{ID: 2, Hash: rh, Role: postgres.RoleRead, Merchant: 5, Name: "acme"})
	var got *principal
	h := func(ctx *fasthttp.RequestCtx) { got = principalFor(ctx); ctx.SetStatusCode(200) }
	for _, c := range []struct {
		a      access
		token  string
		status int
	}{
		{readAccess, "op-secret", 200}, {writeAccess, "op-secret", 200}, {operatorAccess, "op-secret", 200},
		{readAccess, full, 200}, {writeAccess, full, 200}, {operatorAccess, full, 403},
		{readAccess, read, 200}, {writeAccess, read, 403}, {operatorAccess, read, 403},
		{readAccess, "", 401}, {readAccess, "rpm_x", 401}, {operatorAccess, "ops", 401}, {writeAccess, full + " ", 401},
	} {
		got = nil
		ctx := newCtx("GET", "/campaigns", "")
		if c.token != "" {
			ctx.Request.Header.Set("Authorization", "Bearer "+c.token)
		}
		s.guarded(c.a, h)(ctx)
		if ctx.Response.StatusCode() != c.status || (c.status == 200) != (got != nil) {
			t.Errorf("access %d, token %.8q: %d %s", c.a, c.token, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	ctx := newCtx("GET", "/campaigns", "")
	ctx.Request.Header.Set("Authorization", "Bearer "+read)
	s.guarded(readAccess, h)(ctx)
	if *got != (principal{name: "acme", merchant: 5, token: 2, readOnly: true}) {
		t.Errorf("read-only principal: %+v", *got)
	}
	// A handler reached with no wrapper sees no campaign at all.
	if p := principalFor(newCtx("GET", "/x", "")); p.operator() || p.merchant > 0 {
		t.Errorf("no principal: %+v", p)
	}
}

// Over the real services.

// newMerchant makes a merchant with the operator's token and returns its
// name and first token.
func (h *harness) newMerchant(base string) (string, string) {
	h.t.Helper()
	name := fmt.Sprintf("%s-%d-%d", base, time.Now().UnixNano()%1e12, rand.IntN(1e6))
	status, m := h.do("POST", "/merchants", testToken, `{"name":"`+name+`"}`)
	if status != 201 || m["name"] != name || m["role"] != "full" || !strings.HasPrefix(fmt.Sprint(m["token"]), tokenPrefix) {
		h.t.Fatalf("create merchant: %d %v", status, m)
	}
	return name, m["token"].(string)
}

// liveAs makes a live campaign with token.
func (h *harness) liveAs(token, inventory string) int64 {
	h.t.Helper()
	return h.createAs(token, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), inventory)
}

// missingLike returns an id no campaign has, with as many digits as id
// (so the answers' lengths match too): the largest such, far from the ids
// being made.
func missingLike(t *testing.T, db *postgres.Store, id int64) int64 {
	t.Helper()
	digits := len(strconv.FormatInt(id, 10))
	low, high := int64(1), int64(9)
	for range digits - 1 {
		low, high = low*10, high*10+9
	}
	for c := high; c >= low && c > high-1000; c-- {
		var exists bool
		if err := db.DB.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM campaign WHERE id = $1)`, c).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists && c != id {
			return c
		}
	}
	t.Fatalf("no missing id like %d", id)
	return 0
}

// campaignRoutes are the merchant routes of one campaign, every variant a
// merchant might send: %d is the campaign id.
var campaignRoutes = []struct {
	method, path, body string
	hdr                map[string]string
}{
	{"GET", "/campaign/%d", "", nil},
	{"POST", "/campaign/%d/end", "", nil},
	{"POST", "/campaign/%d/end", "{}", nil},
	{"POST", "/campaign/%d/stock", `{"amount":5,"count":1}`, nil},
	{"POST", "/campaign/%d/stock", `{"amount":5,"count":1}`, map[string]string{headerIdemKey: "k-1"}},
	{"POST", "/campaign/%d/stock", `{"amount":7,"count":1}`, nil}, // an amount the campaign lacks: its owner gets 409
	{"GET", "/campaign/%d/claims", "", nil},
	{"GET", "/campaign/%d/claims?limit=1", "", nil},
	{"GET", "/campaign/%d/claims?after=a", "", nil},
	{"GET", "/campaign/%d/claims", "", map[string]string{"Accept": "text/csv"}},
	{"GET", "/campaign/%d/claims/alice", "", nil},  // a claim in Redis
	{"GET", "/campaign/%d/claims/bob", "", nil},    // a claim in claim_log
	{"GET", "/campaign/%d/claims/nobody", "", nil}, // no claim
}

func withHeaders(token string, hdr map[string]string) map[string]string {
	out := bearerOf(token)
	for k, v := range hdr {
		out[k] = v
	}
	return out
}

// TestMerchantsApart: merchant B, on every route of merchant A's campaign,
// gets byte for byte what it gets for an id no campaign has (the id itself
// aside), and changes nothing; A's list and B's differ; A uses every route;
// the operator sees both.
func TestMerchantsApart(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db := h.srv.store
	aName, aTok := h.newMerchant("a")
	bName, bTok := h.newMerchant("b")
	id := h.liveAs(aTok, `{"5":3,"20":1}`)
	if status, m := h.open(id, "alice"); status != 200 {
		t.Fatalf("open: %d %v", status, m)
	}
	var persisted postgres.Claims
	persisted.Append(id, "bob", 5, time.Now().UTC().Truncate(time.Millisecond))
	if _, err := db.InsertClaims(context.Background(), &persisted); err != nil {
		t.Fatal(err)
	}
	missing := missingLike(t, db, id)
	before := readCampaign(t, db, id)
	norm := func(b []byte, id int64) string {
		return strings.ReplaceAll(string(b), strconv.FormatInt(id, 10), "{id}")
	}

	for _, r := range campaignRoutes {
		hdr := withHeaders(bTok, r.hdr)
		sA, hA, bA := h.req(r.method, fmt.Sprintf(r.path, id), hdr, r.body)
		sM, hM, bM := h.req(r.method, fmt.Sprintf(r.path, missing), hdr, r.body)
		if sA != 404 || jsonOf(t, bA)["status"] != "NOT_FOUND" {
			t.Errorf("B: %s %s on A's campaign: %d %s", r.method, r.path, sA, bA)
		}
		if sA != sM || norm(bA, id) != norm(bM, missing) || hA.Get("Content-Type") != hM.Get("Content-Type") ||
			hA.Get("Content-Length") != hM.Get("Content-Length") || hA.Get(headerReplayed) != hM.Get(headerReplayed) {
			t.Errorf("B: %s %s: A's campaign %d %s %v, an unknown id %d %s %v", r.method, r.path, sA, bA, hA, sM, bM, hM)
		}
	}
	if after := readCampaign(t, db, id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("B changed A's campaign: %+v, was %+v", after, before)
	}
	listed := func(token, query string) (int, []int64) {
		status, _, body := h.req("GET", "/campaigns?limit=500"+query, bearerOf(token), "")
		var page struct{ Campaigns []struct{ ID int64 } }
		_ = json.Unmarshal(body, &page)
		var ids []int64
		for _, c := range page.Campaigns {
			ids = append(ids, c.ID)
		}
		return status, ids
	}
	if status, ids := listed(bTok, ""); status != 200 || len(ids) != 0 {
		t.Errorf("B's list: %d %v", status, ids)
	}
	if status, ids := listed(aTok, ""); status != 200 || fmt.Sprint(ids) != fmt.Sprint([]int64{id}) {
		t.Errorf("A's list: %d %v", status, ids)
	}
	for _, q := range []string{"&merchant=" + aName, "&merchant=" + bName, "&merchant=Bad"} {
		if status, _ := listed(bTok, q); status != 403 {
			t.Errorf("B's list %s: %d, want 403 (the filter is the operator's)", q, status)
		}
	}
	if status, ids := listed(testToken, "&merchant="+aName); status != 200 || fmt.Sprint(ids) != fmt.Sprint([]int64{id}) {
		t.Errorf("the operator's list of A's: %d %v", status, ids)
	}
	if status, ids := listed(testToken, "&merchant="+bName); status != 200 || len(ids) != 0 {
		t.Errorf("the operator's list of B's: %d %v", status, ids)
	}

	// A, on its own campaign: every route works.
	status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d", id), bearerOf(aTok), "")
	if m := jsonOf(t, body); status != 200 || m["merchant"] != aName || m["claims"] != 1.0 {
		t.Errorf("A's read: %d %s", status, body)
	}
	if status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d/claims", id), bearerOf(aTok), ""); status != 200 || !bytes.Contains(body, []byte(`"bob"`)) {
		t.Errorf("A's claims: %d %s", status, body)
	}
	if status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d/claims", id), withHeaders(aTok, map[string]string{"Accept": "text/csv"}), ""); status != 200 || !bytes.Contains(body, []byte("\r\nbob,5,")) {
		t.Errorf("A's CSV: %d %s", status, body)
	}
	for user, persisted := range map[string]bool{"alice": false, "bob": true} {
		status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d/claims/%s", id, user), bearerOf(aTok), "")
		if m := jsonOf(t, body); status != 200 || m["persisted"] != persisted {
			t.Errorf("A's claim of %s: %d %s", user, status, body)
		}
	}
	if status, _, body := h.req("POST", fmt.Sprintf("/campaign/%d/stock", id), bearerOf(aTok), `{"amount":5,"count":1}`); status != 200 {
		t.Errorf("A's stock: %d %s", status, body)
	}
	if status, _, body := h.req("POST", fmt.Sprintf("/campaign/%d/end", id), bearerOf(aTok), ""); status != 200 || jsonOf(t, body)["state"] != "ended" {
		t.Errorf("A's end: %d %s", status, body)
	}
	// The history names A and its token; the operator sees it too.
	status, _, body = h.req("GET", fmt.Sprintf("/campaign/%d", id), bearerOf(testToken), "")
	var v struct {
		Merchant string
		History  []postgres.Action
	}
	if err := json.Unmarshal(body, &v); err != nil || status != 200 || v.Merchant != aName || len(v.History) != 3 {
		t.Fatalf("the operator's read: %d %s", status, body)
	}
	for _, a := range v.History {
		if a.By != aName || a.Merchant == nil || *a.Merchant != aName || a.TokenID == nil {
			t.Errorf("history: %+v", a)
		}
	}
}

// TestOperatorCampaignsAreTheOperators: a campaign an ADMIN_TOKEN entry
// makes (and every campaign made before merchants) has no owner: every
// merchant gets 404, the operator reaches it.
func TestOperatorCampaignsAreTheOperators(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	_, tok := h.newMerchant("m")
	id := h.live(`{"5":1}`)
	for _, r := range campaignRoutes {
		if status, _, body := h.req(r.method, fmt.Sprintf(r.path, id), withHeaders(tok, r.hdr), r.body); status != 404 {
			t.Errorf("a merchant on the operator's campaign: %s %s: %d %s", r.method, r.path, status, body)
		}
	}
	status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d", id), bearerOf(acmeToken), "")
	if m := jsonOf(t, body); status != 200 || m["merchant"] != nil {
		t.Errorf("the operator's read: %d %s", status, body)
	}
}

// TestReadOnlyToken: a read-only token reads and exports its merchant's
// campaigns and is refused (403, nothing changed) on create, end and stock,
// whatever the id; another merchant's campaign is still 404.
func TestReadOnlyToken(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db := h.srv.store
	name, full := h.newMerchant("ro")
	_, other := h.newMerchant("other")
	status, m := h.do("POST", "/merchants/"+name+"/tokens", testToken, `{"role":"read"}`)
	if status != 201 || m["role"] != "read" || m["merchant"] != name {
		t.Fatalf("read-only token: %d %v", status, m)
	}
	read := m["token"].(string)
	id := h.liveAs(full, `{"5":2}`)
	theirs := h.liveAs(other, `{"5":2}`)
	before := readCampaign(t, db, id)
	for _, target := range []int64{id, theirs, missingLike(t, db, id)} {
		for _, r := range campaignRoutes {
			status, _, body := h.req(r.method, fmt.Sprintf(r.path, target), withHeaders(read, r.hdr), r.body)
			want := 200
			switch {
			case r.method == "POST":
				want = 403 // before the campaign is looked at: the same for every id
			case target != id:
				want = 404
			case strings.Contains(r.path, "claims/"):
				want = 404 // no such claim
			}
			if status != want {
				t.Errorf("read-only: %s %s on %d: %d %s, want %d", r.method, r.path, target, status, body, want)
			}
			if status == 403 && jsonOf(t, body)["status"] != "FORBIDDEN" {
				t.Errorf("403 body: %s", body)
			}
		}
	}
	create := `{"name":"ro","start_time":"2025-01-01T00:00:00Z","end_time":"2030-01-01T00:00:00Z","inventory":{"5":1}}`
	if status, m := h.do("POST", "/campaign", read, create); status != 403 || m["status"] != "FORBIDDEN" {
		t.Errorf("read-only create: %d %v", status, m)
	}
	if after := readCampaign(t, db, id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the read-only token changed the campaign: %+v, was %+v", after, before)
	}
	if status, ids := h.do("GET", "/campaigns", read, ""); status != 200 || len(ids["campaigns"].([]any)) != 1 {
		t.Errorf("read-only list: %d %v", status, ids)
	}
}

// operatorRoutes are the operator's routes (%s: a merchant name).
var operatorRoutes = []struct{ method, path, body string }{
	{"GET", "/merchants", ""},
	{"POST", "/merchants", `{"name":"x-%s"}`},
	{"POST", "/merchants/%s/tokens", ""},
	{"POST", "/merchants/%s/tokens", `{"role":"read"}`},
	{"DELETE", "/merchants/%s/tokens/1", ""},
	{"GET", "/merchants/%s/actions", ""},
}

// TestOperatorRoutes: only ADMIN_TOKEN entries reach them (a merchant's
// token, full or read-only, gets 403 and changes nothing); what they answer.
func TestOperatorRoutes(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	name, tok := h.newMerchant("op")
	other, otherTok := h.newMerchant("op2")
	_, _, body := h.req("POST", "/merchants/"+name+"/tokens", bearerOf(testToken), `{"role":"read"}`)
	read := jsonOf(t, body)["token"].(string)
	// list is the merchant's entry of the list (other tests add merchants meanwhile).
	list := func() string {
		_, _, body := h.req("GET", "/merchants?after="+name[:len(name)-1]+"&limit=1", bearerOf(testToken), "")
		return string(body)
	}
	before := list()
	for _, token := range []string{tok, read, otherTok, "", "wrong", "rpm_" + strings.Repeat("A", 43)} {
		want := 403
		if token == "" || token == "wrong" || strings.HasSuffix(token, "AAAA") {
			want = 401
		}
		for _, r := range operatorRoutes {
			path := strings.ReplaceAll(r.path, "%s", name)
			status, _, body := h.req(r.method, path, bearerOf(token), strings.ReplaceAll(r.body, "%s", name))
			if status != want {
				t.Errorf("%s %s with %.8q: %d %s, want %d", r.method, path, token, status, body, want)
			}
		}
	}
	if after := list(); after != before {
		t.Errorf("refused operator requests changed the merchants:\n%s\nwas\n%s", after, before)
	}

	// Create: names, a name taken.
	for body, want := range map[string]int{`{"name":"` + name + `"}`: 409, `{"name":"Bad"}`: 400, `{"name":""}`: 400,
		`{}`: 400, `{"name":"a","role":"read"}`: 400, `x`: 400} {
		if status, m := h.do("POST", "/merchants", testToken, body); status != want {
			t.Errorf("create %s: %d %v, want %d", body, status, m, want)
		}
	}
	// The list shows tokens, never a secret.
	listed := list()
	if !strings.Contains(listed, `"name":"`+name+`"`) || strings.Contains(listed, tok) || strings.Contains(listed, read) ||
		strings.Contains(listed, "rpm_") || strings.Contains(listed, "hash") {
		t.Errorf("list: %s", listed)
	}
	var page struct {
		Merchants []struct {
			Name   string
			Tokens []postgres.Token
		}
	}
	if err := json.Unmarshal([]byte(listed), &page); err != nil || len(page.Merchants) != 1 || page.Merchants[0].Name != name ||
		len(page.Merchants[0].Tokens) != 2 || page.Merchants[0].Tokens[1].Role != "read" {
		t.Fatalf("list: %s", listed)
	}
	firstID := page.Merchants[0].Tokens[0].ID
	if status, _, body := h.req("GET", "/merchants?limit=1", bearerOf(testToken), ""); status != 200 || jsonOf(t, body)["next"] == nil {
		t.Errorf("a page of one: %d %s", status, body)
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?after=Bad", "?x=1"} {
		if status, _, body := h.req("GET", "/merchants"+q, bearerOf(testToken), ""); status != 400 {
			t.Errorf("list %s: %d %s", q, status, body)
		}
	}

	// Revoke: through the wrong merchant, a missing token or merchant, a bad id.
	for path, want := range map[string]int{
		fmt.Sprintf("/merchants/%s/tokens/%d", other, firstID):                        404,
		fmt.Sprintf("/merchants/%s/tokens/%d", name, int64(1)<<62):                    404,
		fmt.Sprintf("/merchants/nobody-%d/tokens/%d", time.Now().UnixNano(), firstID): 404,
		fmt.Sprintf("/merchants/%s/tokens/0", name):                                   400,
		fmt.Sprintf("/merchants/%s/tokens/x", name):                                   400,
		fmt.Sprintf("/merchants/Bad/tokens/%d", firstID):                              400,
	} {
		if status, _, body := h.req("DELETE", path, bearerOf(testToken), ""); status != want {
			t.Errorf("DELETE %s: %d %s, want %d", path, status, body, want)
		}
	}
	if status, _ := h.do("GET", "/campaigns", tok, ""); status != 200 {
		t.Fatalf("the token works before its revocation: %d", status)
	}
	status, _, body := h.req("DELETE", fmt.Sprintf("/merchants/%s/tokens/%d", name, firstID), bearerOf(testToken), "")
	first := jsonOf(t, body)
	if status != 200 || first["revoked_at"] == nil || first["merchant"] != name {
		t.Fatalf("revoke: %d %s", status, body)
	}
	// On this replica at once.
	if status, _ := h.do("GET", "/campaigns", tok, ""); status != 401 {
		t.Errorf("the revoked token on the replica that revoked it: %d", status)
	}
	if status, _, body := h.req("DELETE", fmt.Sprintf("/merchants/%s/tokens/%d", name, firstID), bearerOf(testToken), ""); status != 200 ||
		jsonOf(t, body)["revoked_at"] != first["revoked_at"] {
		t.Errorf("revoke again: %d %s, first %v", status, body, first["revoked_at"])
	}
	if status, _ := h.do("GET", "/campaigns", read, ""); status != 200 {
		t.Errorf("the merchant's other token after the revocation: %d", status)
	}
	if status, _ := h.do("POST", "/merchants/nobody-"+strconv.FormatInt(time.Now().UnixNano(), 10)+"/tokens", testToken, ""); status != 404 {
		t.Errorf("a token of a missing merchant: %d", status)
	}
}

// TestMerchantActions: the operator reads what a merchant's tokens did,
// newest first, paged; each action names the token.
func TestMerchantActions(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	name, tok := h.newMerchant("act")
	_, otherTok := h.newMerchant("act2")
	id := h.liveAs(tok, `{"5":2}`)
	h.liveAs(otherTok, `{"5":2}`)
	h.req("POST", fmt.Sprintf("/campaign/%d/stock", id), bearerOf(tok), `{"amount":5,"count":1}`)
	h.req("POST", fmt.Sprintf("/campaign/%d/end", id), bearerOf(testToken), ``) // the operator's: not the merchant's action
	h.req("POST", fmt.Sprintf("/campaign/%d/end", id), bearerOf(tok), ``)
	var kinds []string
	var tokenIDs = map[float64]bool{}
	next := ""
	for {
		status, _, body := h.req("GET", "/merchants/"+name+"/actions?limit=2"+next, bearerOf(testToken), "")
		if status != 200 {
			t.Fatalf("actions: %d %s", status, body)
		}
		var page struct {
			Actions []map[string]any
			Next    *string
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Actions {
			if a["campaign_id"] != float64(id) || a["merchant"] != name || a["by"] != name {
				t.Errorf("action: %v", a)
			}
			kinds = append(kinds, a["kind"].(string))
			tokenIDs[a["token_id"].(float64)] = true
		}
		if page.Next == nil {
			break
		}
		next = "&after=" + *page.Next
	}
	if fmt.Sprint(kinds) != "[end stock create]" || len(tokenIDs) != 1 {
		t.Errorf("actions: %v, tokens %v", kinds, tokenIDs)
	}
	for path, want := range map[string]int{"/merchants/nobody-" + strconv.FormatInt(time.Now().UnixNano(), 10) + "/actions": 404,
		"/merchants/" + name + "/actions?after=0": 400, "/merchants/" + name + "/actions?limit=1001": 400, "/merchants/Bad/actions": 400} {
		if status, _, body := h.req("GET", path, bearerOf(testToken), ""); status != want {
			t.Errorf("GET %s: %d %s, want %d", path, status, body, want)
		}
	}
}

// TestRevocationReachesEveryReplica: a token added on one replica works on
// another, and one revoked there is refused (401) on every route of the
// other within 2 s (MERCHANT_TOKEN_REFRESH 500 ms), with no restart; the
// merchant's new token goes on working (rotation without downtime).
func TestRevocationReachesEveryReplica(t *testing.T) {
	a, b := newHarness(t, harnessOpt{}), newHarness(t, harnessOpt{})
	name, old := a.newMerchant("rot")
	until := func(h *harness, token string, want int, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			status, _, _ := h.req("GET", "/campaigns", bearerOf(token), "")
			if status == want {
				return time.Since(start)
			}
			if time.Since(start) > within {
				t.Fatalf("GET /campaigns: %d after %s, want %d", status, time.Since(start), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	until(b, old, 200, 2*time.Second) // added on a, known on b
	id := b.liveAs(old, `{"5":2}`)
	status, m := a.do("POST", "/merchants/"+name+"/tokens", testToken, "")
	if status != 201 {
		t.Fatalf("add token: %d %v", status, m)
	}
	fresh := m["token"].(string)
	until(b, fresh, 200, 2*time.Second)

	_, _, body := a.req("GET", "/merchants?after="+name[:len(name)-1]+"&limit=1", bearerOf(testToken), "")
	var page struct {
		Merchants []struct{ Tokens []postgres.Token }
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.Merchants) != 1 {
		t.Fatalf("list: %s", body)
	}
	oldID := page.Merchants[0].Tokens[0].ID
	if status, _, body := a.req("DELETE", fmt.Sprintf("/merchants/%s/tokens/%d", name, oldID), bearerOf(testToken), ""); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	took := until(b, old, 401, 2*time.Second)
	t.Logf("revoked on a, refused on b after %s", took)
	create := `{"name":"x","start_time":"2025-01-01T00:00:00Z","end_time":"2030-01-01T00:00:00Z","inventory":{"5":1}}`
	for _, h := range []*harness{a, b} {
		for _, r := range campaignRoutes {
			if status, _, body := h.req(r.method, fmt.Sprintf(r.path, id), withHeaders(old, r.hdr), r.body); status != 401 {
				t.Errorf("revoked token: %s %s: %d %s", r.method, r.path, status, body)
			}
		}
		for _, r := range []struct{ method, path, body string }{{"GET", "/campaigns", ""}, {"POST", "/campaign", create}} {
			if status, _, body := h.req(r.method, r.path, bearerOf(old), r.body); status != 401 {
				t.Errorf("revoked token: %s %s: %d %s", r.method, r.path, status, body)
			}
		}
		if status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d", id), bearerOf(fresh), ""); status != 200 {
			t.Errorf("the new token: %d %s", status, body)
		}
	}
}

// countingTracer counts the statements a pool sends.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestBadTokenFloodCostsNoQuery: thousands of requests with made-up tokens
// (merchant-shaped or not) on every merchant and operator route are all
// 401 and send PostgreSQL nothing; a good merchant token does send queries
// (so the count can fail).
func TestBadTokenFloodCostsNoQuery(t *testing.T) {
	testenv.Postgres(t) // migrated
	cfg, err := pgxpool.ParseConfig(testenv.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	tracer := &countingTracer{}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// The HTTP side's queries only: the engine's background loops use a pool of their own.
	h := newHarness(t, harnessOpt{serverDB: &postgres.Store{DB: pool}, set: func(c *Config) {
		c.Tokens = TokenConfig{Refresh: time.Hour, MaxStale: 2 * time.Hour} // no background read during the flood
	}})
	_, tok := h.newMerchant("flood")
	id := h.liveAs(tok, `{"5":1}`)
	routes := []struct{ method, path, body string }{{"GET", "/campaigns", ""}, {"POST", "/campaign", `{}`},
		{"GET", "/merchants", ""}, {"POST", "/merchants", `{"name":"x"}`}}
	for _, r := range campaignRoutes {
		routes = append(routes, struct{ method, path, body string }{r.method, fmt.Sprintf(r.path, id), r.body})
	}
	start := tracer.n.Load()
	n := 0
	for i := range 150 {
		bad, _ := newTokenSecret()
		for _, token := range []string{bad, tok[:len(tok)-1] + "x", "rpm_", fmt.Sprintf("guess-%d", i)} {
			r := routes[n%len(routes)]
			n++
			if status, _, body := h.req(r.method, r.path, bearerOf(token), r.body); status != 401 {
				t.Fatalf("%s %s with a bad token: %d %s", r.method, r.path, status, body)
			}
		}
	}
	if q := tracer.n.Load() - start; q != 0 {
		t.Errorf("%d requests with bad tokens sent %d queries to PostgreSQL", n, q)
	}
	if status, _ := h.do("GET", "/campaigns", tok, ""); status != 200 || tracer.n.Load() == start {
		t.Errorf("a good token: %d, %d queries (the tracer must count them)", status, tracer.n.Load()-start)
	}
}

// TestMerchantTokensWhilePostgresIsAway: the tokens read last keep working
// up to MERCHANT_TOKEN_MAX_STALE; past it a merchant token gets 503 BUSY
// (a revocation might be unseen) while ADMIN_TOKEN entries still pass; when
// PostgreSQL is back, merchant tokens work again within the refresh.
func TestMerchantTokensWhilePostgresIsAway(t *testing.T) {
	testenv.Postgres(t)
	proxy := testenv.NewProxy(t, testenv.PostgresHostPort(t))
	h := newHarness(t, harnessOpt{db: &postgres.Store{DB: testenv.PostgresAt(t, proxy.Addr())}, set: func(c *Config) {
		c.Tokens = TokenConfig{Refresh: 50 * time.Millisecond, MaxStale: time.Second}
		c.RequestTimeout = 500 * time.Millisecond
	}})
	_, tok := h.newMerchant("away")
	auth := func(token string) string {
		ctx := newCtx("GET", "/campaigns", "")
		ctx.Request.Header.Set("Authorization", "Bearer "+token)
		_, err := h.srv.principalOf(ctx)
		return rain.ErrorCode(err)
	}
	if got := auth(tok); got != "" {
		t.Fatalf("before the cut: %q", got)
	}
	gauge := func(name string) float64 {
		_, body := h.doRaw("GET", "/metrics", "", "")
		var v float64
		if i := bytes.Index(body, []byte("\n"+name+" ")); i >= 0 {
			fmt.Sscan(string(body[i+len(name)+2:]), &v)
		} else {
			t.Errorf("/metrics has no %s", name)
		}
		return v
	}
	if n, age := gauge("rain_merchant_tokens"), gauge("rain_merchant_tokens_age_seconds"); n < 1 || age < 0 || age > 0.5 {
		t.Errorf("metrics before the cut: %v tokens, read %vs ago", n, age)
	}
	proxy.Cut()
	cut := time.Now()
	if got := auth(tok); got != "" {
		t.Errorf("just after the cut (the set read last is still trusted): %q", got)
	}
	testenv.Eventually(t, 3*time.Second, func() (bool, string) {
		got := auth(tok)
		return got == rain.EBUSY, fmt.Sprintf("merchant token %s after the cut: %q", time.Since(cut), got)
	})
	if since := time.Since(cut); since < 900*time.Millisecond {
		t.Errorf("refused after %s, before MaxStale", since)
	}
	status, _, body := h.req("GET", "/campaigns", bearerOf(tok), "")
	if m := jsonOf(t, body); status != 503 || m["status"] != "BUSY" || !strings.Contains(fmt.Sprint(m["error"]), "tokens") {
		t.Errorf("a merchant request while the tokens are stale: %d %s", status, body)
	}
	if got := auth(testToken); got != "" || auth("wrong") != rain.EBUSY {
		t.Errorf("ADMIN_TOKEN while the tokens are stale: %q", got)
	}
	if age := gauge("rain_merchant_tokens_age_seconds"); age < 1 {
		t.Errorf("tokens age while PostgreSQL is away: %vs", age)
	}
	proxy.Restore()
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := auth(tok)
		return got == "", fmt.Sprintf("merchant token after the restore: %q", got)
	})
	if status, _, body := h.req("GET", "/campaigns", bearerOf(tok), ""); status != 200 {
		t.Errorf("after the restore: %d %s", status, body)
	}
}
