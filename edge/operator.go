package edge

import (
	"context"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/internal/strictjson"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"
)

// The operator's routes (an ADMIN_TOKEN entry only; a merchant token gets
// 403): merchants and their tokens, and a merchant's actions. A token's
// secret is shown once, in the answer that creates it; PostgreSQL keeps its
// SHA-256 (tokens.go). After a change this replica reads the tokens again
// at once; the others within MERCHANT_TOKEN_REFRESH.

const (
	maxMerchantName  = 64
	maxMerchantsPage = 500
	maxActionsPage   = 1000
)

var (
	pgMerchants = metrics.NewPrometheusHistogram(`rain_postgres_duration_seconds{op="merchants"}`)

	errMerchantName = rain.Errorf(rain.EINVALID, "merchant name must be 1-64 characters of a-z 0-9 _ -, starting with a letter or digit")
	errTokenID      = rain.Errorf(rain.EINVALID, "token id must be a positive integer")
	tokenFields     = []string{"role"}
	merchantFields  = []string{"name"}
)

// validMerchantName reports whether s is a merchant name:
// ^[a-z0-9][a-z0-9_-]{0,63}$ (the CHECK of merchant.name).
func validMerchantName(s string) bool {
	if len(s) == 0 || len(s) > maxMerchantName || s[0] == '_' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// parseMerchantBody returns the name of a create-merchant body,
// {"name":"acme"}.
func parseMerchantBody(body []byte) (string, error) {
	if len(body) > maxMerchantBody {
		return "", errBodyTooBig
	}
	p := bodyParsers.Get()
	defer bodyParsers.Put(p)
	o, err := strictjson.Parse(p, body)
	if err != nil {
		return "", rain.Errorf(rain.EINVALID, `bad body (want {"name":"acme"}): %s`, rain.ErrorMessage(badJSON(err)))
	}
	var name string
	seen, err := strictjson.Fields(o, merchantFields, func(_ int, v *fastjson.Value) error {
		b, err := v.StringBytes()
		if err != nil || !validMerchantName(string(b)) {
			return errMerchantName
		}
		name = string(b)
		return nil
	})
	if err != nil {
		return "", badJSON(err)
	}
	if seen != 1 {
		return "", rain.Errorf(rain.EINVALID, "name is required")
	}
	return name, nil
}

// parseTokenBody returns the role of an add-token body: none, {}, or
// {"role":"full"|"read"} (full when not given).
func parseTokenBody(body []byte) (string, error) {
	if len(body) > maxMerchantBody {
		return "", errBodyTooBig
	}
	// Only a body of no bytes is "none": whitespace alone is not JSON, and
	// the OpenAPI document (what clients and the fuzzer read) says so.
	if len(body) == 0 {
		return postgres.RoleFull, nil
	}
	p := bodyParsers.Get()
	defer bodyParsers.Put(p)
	o, err := strictjson.Parse(p, body)
	if err != nil {
		return "", rain.Errorf(rain.EINVALID, `bad body (want none, {} or {"role":"read"}): %s`, rain.ErrorMessage(badJSON(err)))
	}
	role := postgres.RoleFull
	_, err = strictjson.Fields(o, tokenFields, func(_ int, v *fastjson.Value) error {
		b, err := v.StringBytes()
		if err != nil || string(b) != postgres.RoleFull && string(b) != postgres.RoleRead {
			return rain.Errorf(rain.EINVALID, `role must be "full" or "read"`)
		}
		role = string(b)
		return nil
	})
	if err != nil {
		return "", badJSON(err)
	}
	return role, nil
}

// pathMerchant is the merchant name of the request's path.
func pathMerchant(ctx *fasthttp.RequestCtx) (string, error) {
	name := string(routeParam(ctx, "name"))
	if !validMerchantName(name) {
		return "", errMerchantName
	}
	return name, nil
}

// merchantDBError maps an error of the merchants' queries to the API's.
func (s *Server) merchantDBError(what string, err error) error {
	switch rain.ErrorCode(err) {
	case rain.ENOTFOUND, rain.ECONFLICT:
		return err
	}
	s.log.Error(what, "err", err)
	return errDBRead
}

// merchantsDB runs query, one of the operator's PostgreSQL steps, within
// RequestTimeout and timed (rain_postgres_duration_seconds{op="merchants"});
// a failure is answered here (false). changed: the query changed the
// tokens, which this replica then reads again at once (tokensChanged).
func (s *Server) merchantsDB(ctx *fasthttp.RequestCtx, what string, changed bool, query func(context.Context) error) bool {
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	err := query(rctx)
	pgMerchants.UpdateDuration(start)
	if err != nil {
		writeError(ctx, s.merchantDBError(what, err))
		return false
	}
	if changed {
		s.tokensChanged(rctx)
	}
	return true
}

// tokensChanged reads the tokens again on this replica at once, so a token
// made here works here in the next request (the others follow within
// MERCHANT_TOKEN_REFRESH).
func (s *Server) tokensChanged(ctx context.Context) {
	if err := s.merchants.refresh(ctx); err != nil {
		s.log.Warn("merchant tokens: read after a change failed; the refresh loop retries", "err", err)
	}
}

// newTokenView is the answer that shows a new token's secret, once.
type newTokenView struct {
	ID        int64     `json:"id"`
	Merchant  string    `json:"merchant"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	Token     string    `json:"token"`
}

// createMerchant is POST /merchants {"name":"acme"}: the merchant and its
// first token (full), whose secret the answer shows once.
func (s *Server) createMerchant(ctx *fasthttp.RequestCtx) {
	name, err := parseMerchantBody(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	secret, hash := newTokenSecret()
	var m postgres.Merchant
	if !s.merchantsDB(ctx, "create merchant", true, func(rctx context.Context) (err error) {
		m, err = s.store.CreateMerchant(rctx, name, hash)
		return err
	}) {
		return
	}
	t := m.Tokens[0]
	s.log.Info("merchant created", "merchant", name, "token_id", t.ID, "by", merchantName(ctx))
	v := struct {
		Name      string    `json:"name"`
		CreatedAt time.Time `json:"created_at"`
		Token     string    `json:"token"`
		TokenID   int64     `json:"token_id"`
		Role      string    `json:"role"`
	}{m.Name, m.CreatedAt, secret, t.ID, t.Role}
	writeValueAs(ctx, fasthttp.StatusCreated, v)
}

// addToken is POST /merchants/{name}/tokens: a new token of the merchant
// (rotation: add the new one, move the clients, revoke the old one).
func (s *Server) addToken(ctx *fasthttp.RequestCtx) {
	name, err := pathMerchant(ctx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	role, err := parseTokenBody(ctx.PostBody())
	if err != nil {
		writeError(ctx, err)
		return
	}
	secret, hash := newTokenSecret()
	var t postgres.Token
	if !s.merchantsDB(ctx, "add token", true, func(rctx context.Context) (err error) {
		t, err = s.store.AddToken(rctx, name, hash, role)
		return err
	}) {
		return
	}
	s.log.Info("merchant token added", "merchant", name, "token_id", t.ID, "role", role, "by", merchantName(ctx))
	writeValueAs(ctx, fasthttp.StatusCreated, newTokenView{ID: t.ID, Merchant: name, Role: t.Role, CreatedAt: t.CreatedAt, Token: secret})
}

// tokenView is a token without its secret.
type tokenView struct {
	Merchant string `json:"merchant"`
	postgres.Token
}

// revokeToken is DELETE /merchants/{name}/tokens/{token_id}: the token
// stops working on this replica at once and on every replica within
// MERCHANT_TOKEN_REFRESH. Revoking a revoked token changes nothing.
func (s *Server) revokeToken(ctx *fasthttp.RequestCtx) {
	name, err := pathMerchant(ctx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	id, ok := rain.ParseCampaignID(routeParam(ctx, "token_id")) // the same positive-integer rule
	if !ok {
		writeError(ctx, errTokenID)
		return
	}
	var t postgres.Token
	if !s.merchantsDB(ctx, "revoke token", true, func(rctx context.Context) (err error) {
		t, err = s.store.RevokeToken(rctx, name, id)
		return err
	}) {
		return
	}
	s.log.Info("merchant token revoked", "merchant", name, "token_id", id, "by", merchantName(ctx))
	writeValue(ctx, tokenView{Merchant: name, Token: t})
}

// listMerchants is GET /merchants: name order, ?after=<name>&limit=, each
// with its tokens (ids, roles, times; never a secret).
func (s *Server) listMerchants(ctx *fasthttp.RequestCtx) {
	q, limit, err := pageQuery(ctx, maxMerchantsPage)
	if err != nil {
		writeError(ctx, err)
		return
	}
	after, ok := q["after"]
	if ok && !validMerchantName(after) {
		writeError(ctx, rain.Errorf(rain.EINVALID, "after must be a merchant name"))
		return
	}
	var (
		list []postgres.Merchant
		more bool
	)
	if !s.merchantsDB(ctx, "list merchants", false, func(rctx context.Context) (err error) {
		list, more, err = s.store.Merchants(rctx, after, limit)
		return err
	}) {
		return
	}
	type merchantView struct {
		Name      string           `json:"name"`
		CreatedAt time.Time        `json:"created_at"`
		Tokens    []postgres.Token `json:"tokens"`
	}
	writePage(ctx, "merchants", list, more, func(m postgres.Merchant) merchantView {
		return merchantView{Name: m.Name, CreatedAt: m.CreatedAt, Tokens: m.Tokens}
	}, func(m postgres.Merchant) string { return m.Name })
}

// merchantActions is GET /merchants/{name}/actions: what the merchant's
// tokens did (create, end, stock), newest first, ?after=<action id>&limit=.
func (s *Server) merchantActions(ctx *fasthttp.RequestCtx) {
	name, err := pathMerchant(ctx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	q, limit, err := pageQuery(ctx, maxActionsPage)
	if err != nil {
		writeError(ctx, err)
		return
	}
	var before int64
	if v, ok := q["after"]; ok {
		if before, ok = rain.ParseCampaignID([]byte(v)); !ok {
			writeError(ctx, rain.Errorf(rain.EINVALID, "after must be an action id (a positive integer)"))
			return
		}
	}
	var (
		list []postgres.MerchantAction
		more bool
	)
	if !s.merchantsDB(ctx, "merchant actions", false, func(rctx context.Context) (err error) {
		list, more, err = s.store.MerchantActions(rctx, name, before, limit)
		return err
	}) {
		return
	}
	writePage(ctx, "actions", list, more, func(a postgres.MerchantAction) postgres.MerchantAction { return a },
		func(a postgres.MerchantAction) string { return strconv.FormatInt(a.ID, 10) })
}
