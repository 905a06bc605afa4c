package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redpacket/rain"
	"github.com/redpacket/rain/edge/engine"
	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/dev/testenv"
	"github.com/redpacket/rain/internal/postgres"
	"github.com/redpacket/rain/lua"
	"github.com/redpacket/rain/migrations"
	"github.com/valyala/fasthttp"
)

// Pure tests of the merchant routes' parsing.

func TestParseStockBody(t *testing.T) {
	for body, want := range map[string][2]int64{
		`{"amount":20,"count":100}`:           {20, 100},
		` {"count":1,"amount":1000000000} `:   {1000000000, 1},
		`{"amount":5,"count":100000000}`:      {5, 100000000},
		`{"amount":0,"count":1}`:              {},
		`{"amount":5,"count":0}`:              {},
		`{"amount":5,"count":100000001}`:      {},
		`{"amount":1000000001,"count":1}`:     {},
		`{"amount":5.0,"count":1}`:            {},
		`{"amount":5,"count":1e3}`:            {},
		`{"amount":"5","count":1}`:            {},
		`{"amount":-5,"count":1}`:             {},
		`{"amount":5}`:                        {},
		`{"amount":5,"count":1,"x":1}`:        {},
		`{"amount":5,"count":1} {}`:           {},
		`[]`:                                  {},
		``:                                    {},
		`{"amount":5,"count":1,"count":2}`:    {},
		`{"amount":05,"count":1}`:             {},
		`{"amount":null,"count":1}`:           {},
		`{"amount":5,"count":18446744073709}`: {},
	} {
		amount, count, err := parseStockBody([]byte(body))
		if want == ([2]int64{}) {
			if err == nil || rain.ErrorCode(err) != rain.EINVALID {
				t.Errorf("%s: accepted (%d, %d) or not INVALID: %v", body, amount, count, err)
			}
			continue
		}
		if err != nil || amount != want[0] || count != want[1] {
			t.Errorf("%s: %d %d %v, want %v", body, amount, count, err, want)
		}
	}
	big := `{"amount":5,"count":1` + strings.Repeat(" ", maxMerchantBody) + `}`
	if _, _, err := parseStockBody([]byte(big)); rain.ErrorCode(err) != rain.ETOOLARGE {
		t.Errorf("body over 4 KiB: %v", err)
	}
}

// Bodies over 4 KiB are refused by the server from their headers
// (conns.go); the handlers refuse them too, whatever reaches them.
func TestEmptyBody(t *testing.T) {
	for body, code := range map[string]string{"": "", " ": rain.EINVALID, "\t": rain.EINVALID, "{}": "", " { } ": "", "{}{}": rain.EINVALID, `{"a":1}`: rain.EINVALID,
		"[]": rain.EINVALID, "null": rain.EINVALID, "x": rain.EINVALID, "{" + strings.Repeat(" ", maxMerchantBody) + "}": rain.ETOOLARGE} {
		if got := rain.ErrorCode(emptyBody([]byte(body))); got != code {
			t.Errorf("%.20q: %q, want %q", body, got, code)
		}
	}
}

func TestIdempotencyKeyHeader(t *testing.T) {
	for v, ok := range map[string]bool{"k": true, "a-b_c.d:e/f=1": true, strings.Repeat("k", 255): true,
		strings.Repeat("k", 256): false, "a b": false, "é": false, "a\tb": false} {
		ctx := newCtx("POST", "/campaign/1/stock", "")
		ctx.Request.Header.Set(headerIdemKey, v)
		got, err := idempotencyKey(ctx)
		if (err == nil) != ok || ok && got != v {
			t.Errorf("%q: %q %v, want ok %v", v, got, err, ok)
		}
	}
	if got, err := idempotencyKey(newCtx("POST", "/campaign/1/stock", "")); got != "" || err != nil {
		t.Errorf("no header: %q %v", got, err)
	}
}

func TestAcceptsCSV(t *testing.T) {
	for h, want := range map[string]bool{"text/csv": true, "TEXT/CSV; charset=utf-8": true, "application/json, text/csv;q=0.5": true,
		"text/csv;q=0": false, "application/json": false, "": false, "*/*": false, "text/csvx": false} {
		ctx := newCtx("GET", "/campaign/1/claims", "")
		if h != "" {
			ctx.Request.Header.Set("Accept", h)
		}
		if got := acceptsCSV(ctx); got != want {
			t.Errorf("Accept %q: %v, want %v", h, got, want)
		}
	}
}

func TestQueryArgs(t *testing.T) {
	for uri, ok := range map[string]bool{"/x": true, "/x?after=5&limit=2": true, "/x?state=live": true,
		"/x?limit=1&limit=2": false, "/x?foo=1": false, "/x?after=": true, "/x?state=live&state=live": false} {
		_, err := query(newCtx("GET", uri, ""), "after", "limit", "state")
		if (err == nil) != ok {
			t.Errorf("%s: %v, want ok %v", uri, err, ok)
		}
	}
	for v, want := range map[string]int{"": defaultPage, "1": 1, "500": 500, "501": 0, "0": 0, "-1": 0, "01": 0, "x": 0, "1.0": 0} {
		uri := "/x?after=a"
		if v != "" {
			uri += "&limit=" + v
		}
		_, n, err := pageQuery(newCtx("GET", uri, ""), 500)
		if n != want || (err == nil) != (want != 0) {
			t.Errorf("limit %q: %d %v, want %d", v, n, err, want)
		}
	}
}

func TestTokenNames(t *testing.T) {
	ts := parseTokens([]string{"plain", "acme:s3cret", "bad name:x", ":lead", "ops:a:b", "empty:"})
	want := []namedToken{{"token-1", "plain"}, {"acme", "s3cret"}, {"token-3", "bad name:x"}, {"token-4", ":lead"}, {"ops", "a:b"}}
	if fmt.Sprint(ts) != fmt.Sprint(want) {
		t.Fatalf("parsed %v, want %v", ts, want)
	}
	for _, c := range []struct {
		entries []string
		bad     bool
	}{
		{[]string{"a:1", "b:2", "plain"}, false},
		{[]string{"a:1", "a:2"}, true},
		{[]string{"a:"}, true},
		{[]string{"token-1:x", "plain"}, false}, // the bare secret is the second token: token-2
		{[]string{"token-2:x", "plain"}, true},
	} {
		s := config.New(func(string) (string, bool) { return "", false })
		checkTokens(s, c.entries)
		if (s.Err() != nil) != c.bad {
			t.Errorf("%v: %v, want error %v", c.entries, s.Err(), c.bad)
		}
	}
	s := &Server{tokens: tokenDigests([]string{"one", "acme:two"}), cfg: Config{AdminTokens: []string{"one", "acme:two"}}}
	for h, want := range map[string]string{"Bearer one": "token-1", "Bearer two": "acme", "Bearer acme:two": "", "Bearer x": ""} {
		ctx := newCtx("GET", "/campaigns", "")
		ctx.Request.Header.Set("Authorization", h)
		if got, _ := s.merchantOf(ctx); got != want {
			t.Errorf("%q: %q, want %q", h, got, want)
		}
	}
}

func TestCSVField(t *testing.T) {
	for in, want := range map[string]string{"u-1": "u-1", `a,b`: `"a,b"`, `say"hi"`: `"say""hi"""`} {
		if got := string(appendCSVField(nil, in)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// The routes, over the real services.

// req sends a request with headers through the harness, validates the
// exchange against the OpenAPI document, and returns the answer.
func (h *harness) req(method, uri string, hdr map[string]string, body string) (int, http.Header, []byte) {
	h.t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://api" + uri)
	req.Header.SetMethod(method)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.SetBodyString(body)
	if err := h.client.DoTimeout(req, resp, time.Minute); err != nil {
		h.t.Fatalf("%s %s: %v", method, uri, err)
	}
	x := fromFast(req, resp)
	checkExchange(h.t, x)
	return x.status, x.respHeader, x.respBody
}

func bearerOf(token string) map[string]string {
	if token == "" {
		return map[string]string{}
	}
	return map[string]string{"Authorization": "Bearer " + token}
}

func jsonOf(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	return m
}

// campaignRow is a campaign's window and totals in PostgreSQL.
type campaignRow struct {
	start, end time.Time
	endedAt    *time.Time
	totals     string // amount:total,...
	actions    int
}

func readCampaign(t testing.TB, db *postgres.Store, id int64) campaignRow {
	t.Helper()
	var r campaignRow
	err := db.DB.QueryRow(context.Background(), `SELECT start_time, end_time, ended_at,
		(SELECT string_agg(amount || ':' || total_count, ',' ORDER BY amount) FROM campaign_inventory WHERE campaign_id = $1),
		(SELECT count(*) FROM campaign_action WHERE campaign_id = $1)
		FROM campaign WHERE id = $1`, id).Scan(&r.start, &r.end, &r.endedAt, &r.totals, &r.actions)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMerchantRoutesNeedAToken(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db := h.srv.store
	id := h.live(`{"5":1}`)
	before := readCampaign(t, db, id)
	for _, token := range []string{"", "wrong", "test-toke", "acme"} {
		for _, r := range []struct{ method, uri, body string }{
			{"GET", "/campaigns", ""},
			{"POST", fmt.Sprintf("/campaign/%d/end", id), ""},
			{"POST", fmt.Sprintf("/campaign/%d/stock", id), `{"amount":5,"count":1}`},
			{"GET", fmt.Sprintf("/campaign/%d/claims", id), ""},
			{"GET", fmt.Sprintf("/campaign/%d/claims/u", id), ""},
		} {
			status, _, body := h.req(r.method, r.uri, bearerOf(token), r.body)
			if status != 401 || jsonOf(t, body)["status"] != "UNAUTHORIZED" {
				t.Errorf("%s %s with token %q: %d %s", r.method, r.uri, token, status, body)
			}
		}
	}
	if after := readCampaign(t, db, id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("unauthorized requests changed the campaign: %+v, was %+v", after, before)
	}
}

func TestEndCampaign(t *testing.T) {
	h := newHarness(t, harnessOpt{engine: func(c *engine.Config) { c.SoldOutTTL = time.Minute }})
	db := h.srv.store
	id := h.live(`{"5":2}`)
	if status, _ := h.open(id, "alice"); status != 200 {
		t.Fatalf("open: %d", status)
	}
	h.open(id, "bob")
	if status, m := h.open(id, "carol"); status != 410 { // sold out, remembered for a minute
		t.Fatalf("third open: %d %v", status, m)
	}
	if status, _ := h.open(id, "alice"); status != 409 { // from memory
		t.Fatalf("repeat: %d", status)
	}

	// Invalid requests change nothing.
	before := readCampaign(t, db, id)
	for _, c := range []struct {
		uri, body string
		status    int
	}{
		{fmt.Sprintf("/campaign/%d/end", id), `{"at":"now"}`, 400},
		{fmt.Sprintf("/campaign/%d/end", id), `x`, 400},
		{fmt.Sprintf("/campaign/%d/end", id), `{} {}`, 400},
		{"/campaign/0/end", ``, 400},
		{"/campaign/x/end", ``, 400},
		{"/campaign/999999999999999/end", ``, 404},
	} {
		status, _, body := h.req("POST", c.uri, bearerOf(testToken), c.body)
		if status != c.status {
			t.Errorf("POST %s %.40q: %d %s, want %d", c.uri, c.body, status, body, c.status)
		}
	}
	if after := readCampaign(t, db, id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused ends changed the campaign: %+v, was %+v", after, before)
	}

	asked := time.Now()
	status, _, body := h.req("POST", fmt.Sprintf("/campaign/%d/end", id), bearerOf(acmeToken), `{}`)
	m := jsonOf(t, body)
	end, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(m["end_time"]))
	if status != 200 || m["state"] != "ended" || m["ended_at"] == nil || end.After(time.Now()) || end.Before(asked.Add(-time.Second)) {
		t.Fatalf("end: %d %s", status, body)
	}
	// Every answer is ENDED at once on this replica: memory answers included.
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if status, m := h.open(id, u); status != 400 || m["status"] != "ENDED" {
			t.Errorf("open by %s after the end: %d %v, want 400 ENDED", u, status, m)
		}
	}
	// Idempotent: the end does not move, and is recorded again.
	time.Sleep(5 * time.Millisecond)
	status, _, body = h.req("POST", fmt.Sprintf("/campaign/%d/end", id), bearerOf(testToken), ``)
	if m2 := jsonOf(t, body); status != 200 || m2["end_time"] != m["end_time"] || m2["ended_at"] != m["ended_at"] {
		t.Fatalf("second end: %d %s, first %s", status, body, m["end_time"])
	}
	status, _, body = h.req("GET", fmt.Sprintf("/campaign/%d", id), bearerOf(testToken), ``)
	var v struct {
		History []struct {
			Kind, By string
			Request  map[string]any
			Result   map[string]any
			At       time.Time
		}
	}
	if err := json.Unmarshal(body, &v); status != 200 || err != nil || len(v.History) != 3 {
		t.Fatalf("history: %d %s", status, body)
	}
	for i, want := range []struct{ kind, by string }{{"create", "token-2"}, {"end", "acme"}, {"end", "token-2"}} {
		a := v.History[i]
		if a.Kind != want.kind || a.By != want.by || a.Request["method"] != "POST" || a.At.IsZero() {
			t.Errorf("history[%d]: %+v, want %s by %s", i, a, want.kind, want.by)
		}
	}
	if v.History[1].Result["changed"] != true || v.History[2].Result["changed"] != false {
		t.Errorf("history results: %v %v", v.History[1].Result, v.History[2].Result)
	}
	if ends, early := counter(`rain_merchant_actions_total{kind="end"}`), counter(`rain_campaigns_ended_early_total`); ends < 2 || early < 1 {
		t.Errorf("metrics: ends %d, ended early %d", ends, early)
	}

	// A campaign that has not started: its window becomes empty, now.
	up := h.create(time.Now().Add(time.Hour), time.Now().Add(2*time.Hour), `{"5":1}`)
	status, _, body = h.req("POST", fmt.Sprintf("/campaign/%d/end", up), bearerOf(testToken), ``)
	if m := jsonOf(t, body); status != 200 || m["state"] != "ended" || m["start_time"] != m["end_time"] {
		t.Fatalf("end of an upcoming campaign: %d %s", status, body)
	}
	if status, m := h.open(up, "u"); status != 400 || m["status"] != "ENDED" {
		t.Errorf("open of the ended upcoming campaign: %d %v", status, m)
	}
	// An ended campaign takes no stock: 409 ENDED, what its state refuses.
	status, _, body = h.req("POST", fmt.Sprintf("/campaign/%d/stock", id), bearerOf(testToken), `{"amount":5,"count":1}`)
	if status != 409 || jsonOf(t, body)["status"] != "ENDED" {
		t.Errorf("stock to an ended campaign: %d %s", status, body)
	}
}

// TestEndReachesTheOtherReplica: an end made through one replica stops the
// other's answers from memory (repeats 409, sold-out 410) within a second,
// though its sold-out flag would hold for a minute.
func TestEndReachesTheOtherReplica(t *testing.T) {
	set := func(c *engine.Config) { c.SoldOutTTL = time.Minute }
	a, b := newHarness(t, harnessOpt{engine: set}), newHarness(t, harnessOpt{engine: set})
	id := a.live(`{"5":1}`)
	b.open(id, "alice")
	for range 3 { // b builds its sold-out filter in the background
		b.open(id, "bob")
		time.Sleep(20 * time.Millisecond)
	}
	if status, _ := b.open(id, "alice"); status != 409 {
		t.Fatalf("repeat: %d", status)
	}
	if status, _, body := a.req("POST", fmt.Sprintf("/campaign/%d/end", id), bearerOf(testToken), ``); status != 200 {
		t.Fatalf("end: %d %s", status, body)
	}
	took := time.Now()
	time.Sleep(time.Second)
	for _, u := range []string{"alice", "bob", "carol"} {
		if status, m := b.open(id, u); status != 400 || m["status"] != "ENDED" {
			t.Errorf("open by %s on the other replica a second after the end (%v): %d %v", u, time.Since(took), status, m)
		}
	}
}

func TestAddStock(t *testing.T) {
	set := func(c *engine.Config) { c.SoldOutTTL = time.Minute }
	a, b := newHarness(t, harnessOpt{engine: set}), newHarness(t, harnessOpt{engine: set})
	db := a.srv.store
	id := a.live(`{"5":1,"20":1}`)
	a.open(id, "u1")
	b.open(id, "u2")
	for range 3 { // both replicas remember it sold out (for a minute)
		a.open(id, "u3")
		b.open(id, "u3")
		time.Sleep(20 * time.Millisecond)
	}
	stock := func(h *harness, key, body string) (int, http.Header, map[string]any) {
		hdr := bearerOf(testToken)
		if key != "" {
			hdr[headerIdemKey] = key
		}
		status, header, raw := h.req("POST", fmt.Sprintf("/campaign/%d/stock", id), hdr, body)
		return status, header, jsonOf(t, raw)
	}

	// Refused requests change nothing.
	before := readCampaign(t, db, id)
	for _, c := range []struct {
		key, body string
		status    int
	}{
		{"", `{"amount":7,"count":1}`, 409},         // not an amount of the inventory: CONFLICT, the state refuses it
		{"", `{"amount":5,"count":100000000}`, 409}, // over the limit with the one there
		{"", `{"amount":5,"count":0}`, 400},
		{"", `{"amount":5}`, 400},
		{"", `{"amount":5,"count":1,"why":"x"}`, 400},
		{"bad key", `{"amount":5,"count":1}`, 400},
	} {
		if status, _, m := stock(a, c.key, c.body); status != c.status {
			t.Errorf("stock %.60s (key %q): %d %v, want %d", c.body, c.key, status, m, c.status)
		}
	}
	if status, _, body := a.req("POST", "/campaign/999999999999999/stock", bearerOf(testToken), `{"amount":5,"count":1}`); status != 404 {
		t.Errorf("stock to no campaign: %d %s", status, body)
	}
	if after := readCampaign(t, db, id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused stock changed the campaign: %+v, was %+v", after, before)
	}

	status, header, m := stock(a, "k-1", `{"amount":5,"count":2}`)
	if status != 200 || m["total"] != float64(3) || m["applied"] != true || header.Get(headerReplayed) != "" {
		t.Fatalf("stock: %d %v %v", status, m, header)
	}
	// A retry with the key, through the other replica: the first answer, nothing added.
	status, header, m2 := stock(b, "k-1", `{"amount":5,"count":2}`)
	if status != 200 || fmt.Sprint(m2) != fmt.Sprint(m) || header.Get(headerReplayed) != "true" {
		t.Fatalf("retry: %d %v %v, first %v", status, m2, header, m)
	}
	if status, _, m := stock(b, "k-1", `{"amount":20,"count":2}`); status != 409 || m["status"] != "CONFLICT" {
		t.Fatalf("the key with another request: %d %v", status, m)
	}
	if got := readCampaign(t, db, id).totals; got != "5:3,20:1" {
		t.Fatalf("totals %s, want 5:3,20:1", got)
	}
	// Both replicas serve the two new packets within a second, though they
	// remember the campaign sold out for a minute.
	time.Sleep(time.Second)
	if status, m := b.open(id, "u4"); status != 200 || m["amount"] != float64(5) {
		t.Errorf("open on the other replica after the stock: %d %v", status, m)
	}
	if status, m := a.open(id, "u5"); status != 200 || m["amount"] != float64(5) {
		t.Errorf("open on this replica after the stock: %d %v", status, m)
	}
	if status, _ := a.open(id, "u6"); status != 410 {
		t.Errorf("open past the new total: %d", status)
	}
	if st, err := lua.ReadState(context.Background(), a.redis, testenv.Keys().Of(id)); err != nil || st.Left != 0 || st.Claims != 4 {
		t.Errorf("redis: %+v %v, want 4 claims, none left", st, err)
	}
	var v struct{ History []postgres.Action }
	_, _, body := a.req("GET", fmt.Sprintf("/campaign/%d", id), bearerOf(testToken), ``)
	if err := json.Unmarshal(body, &v); err != nil || len(v.History) != 2 || v.History[1].Kind != "stock" ||
		!strings.Contains(string(v.History[1].Request), `"idempotency_key":"k-1"`) {
		t.Fatalf("history %s", body)
	}
}

// freshStore is a database of its own, migrated, for tests that need to
// know every row (paging); its campaign ids start far from others'.
func freshStore(t *testing.T) *postgres.Store {
	t.Helper()
	testenv.Need(t, "PostgreSQL at "+testenv.PostgresDSN())
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("rain_merchant_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(testenv.PostgresDSN())
	u.Path = "/" + name
	if err := migrations.Migrate(ctx, u.String()); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		if c, err := pgx.Connect(ctx, testenv.PostgresDSN()); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	start := 2e15 + time.Now().UnixNano()%1e12
	if _, err := db.Exec(ctx, fmt.Sprintf("ALTER TABLE campaign ALTER COLUMN id RESTART WITH %d", int64(start))); err != nil {
		t.Fatal(err)
	}
	return &postgres.Store{DB: db}
}

func TestListCampaigns(t *testing.T) {
	h := newHarness(t, harnessOpt{db: freshStore(t)})
	list := func(query string) (int, map[string]any) {
		status, _, body := h.req("GET", "/campaigns"+query, bearerOf(testToken), "")
		return status, jsonOf(t, body)
	}
	ids := func(m map[string]any) (out []int64) {
		for _, c := range m["campaigns"].([]any) {
			out = append(out, int64(c.(map[string]any)["id"].(float64)))
		}
		return out
	}
	// Empty: an empty page, no next.
	if status, m := list(""); status != 200 || len(m["campaigns"].([]any)) != 0 || m["next"] != nil {
		t.Fatalf("empty list: %d %v", status, m)
	}
	now := time.Now()
	ended := h.create(now.Add(-2*time.Hour), now.Add(-time.Hour), `{"5":1}`)
	live1 := h.live(`{"20":2,"5":3}`)
	upcoming := h.create(now.Add(time.Hour), now.Add(2*time.Hour), `{"5":1}`)
	live2 := h.live(`{"5":1}`)
	h.open(live1, "alice")

	status, m := list("")
	if status != 200 || fmt.Sprint(ids(m)) != fmt.Sprint([]int64{live2, upcoming, live1, ended}) || m["next"] != nil {
		t.Fatalf("list: %d %v", status, m)
	}
	c := m["campaigns"].([]any)[2].(map[string]any)
	if c["state"] != "live" || c["total"] != float64(5) || c["ended_at"] != nil ||
		fmt.Sprint(c["inventory"]) != "[map[amount:20 opened:0 total:2] map[amount:5 opened:0 total:3]]" {
		t.Errorf("item: %v", c)
	}
	// Pages of 2: the last page has no next; a full last page too.
	status, m = list("?limit=2")
	if status != 200 || fmt.Sprint(ids(m)) != fmt.Sprint([]int64{live2, upcoming}) || m["next"] != fmt.Sprint(upcoming) {
		t.Fatalf("page 1: %d %v", status, m)
	}
	status, m = list("?limit=2&after=" + m["next"].(string))
	if status != 200 || fmt.Sprint(ids(m)) != fmt.Sprint([]int64{live1, ended}) || m["next"] != nil {
		t.Fatalf("page 2 (the last, full): %d %v", status, m)
	}
	status, m = list("?limit=3&after=" + fmt.Sprint(upcoming))
	if status != 200 || fmt.Sprint(ids(m)) != fmt.Sprint([]int64{live1, ended}) || m["next"] != nil {
		t.Fatalf("last page, short: %d %v", status, m)
	}
	// A cursor past the end: an empty page.
	if status, m := list("?after=" + fmt.Sprint(ended)); status != 200 || len(ids(m)) != 0 || m["next"] != nil {
		t.Fatalf("past the end: %d %v", status, m)
	}
	for state, want := range map[string][]int64{"live": {live2, live1}, "upcoming": {upcoming}, "ended": {ended}} {
		if status, m := list("?state=" + state); status != 200 || fmt.Sprint(ids(m)) != fmt.Sprint(want) {
			t.Errorf("state %s: %d %v, want %v", state, status, m, want)
		}
	}
	status, m = list("?state=live&limit=1")
	if status != 200 || fmt.Sprint(ids(m)) != fmt.Sprint([]int64{live2}) || m["next"] != fmt.Sprint(live2) {
		t.Fatalf("live, page 1: %d %v", status, m)
	}
	if status, m := list("?state=live&limit=1&after=" + fmt.Sprint(live2)); status != 200 || fmt.Sprint(ids(m)) != fmt.Sprint([]int64{live1}) || m["next"] != nil {
		t.Fatalf("live, page 2: %d %v", status, m)
	}
	// Ending one moves it to ended, with ended_at.
	h.req("POST", fmt.Sprintf("/campaign/%d/end", live2), bearerOf(testToken), "")
	if _, m := list("?state=ended"); fmt.Sprint(ids(m)) != fmt.Sprint([]int64{live2, ended}) ||
		m["campaigns"].([]any)[0].(map[string]any)["ended_at"] == nil {
		t.Errorf("ended after an end: %v", m)
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?limit=x", "?after=0", "?after=x", "?after=-1", "?state=over",
		"?state=", "?sort=id", "?limit=1&limit=2"} {
		if status, m := list(q); status != 400 || m["status"] != "INVALID_REQUEST" {
			t.Errorf("%s: %d %v, want 400", q, status, m)
		}
	}
}

// insertClaims writes n claims of campaign id straight into claim_log
// (users c-0000000 ...), with generate_series.
func insertClaims(t testing.TB, db *postgres.Store, id, amount int64, n int) {
	t.Helper()
	ctx := context.Background()
	_, err := db.DB.Exec(ctx, `INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at)
		SELECT $1, 'c-' || lpad(i::text, 7, '0'), $2, timestamptz '2025-01-01 00:00:00Z' + i * interval '1 millisecond'
		FROM generate_series(0, $3 - 1) AS i`, id, amount, n)
	if err == nil {
		_, err = db.DB.Exec(ctx, `UPDATE campaign_inventory SET opened_count = opened_count + $3 WHERE campaign_id = $1 AND amount = $2`, id, amount, n)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestClaims(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db := h.srv.store
	id := testenv.LiveCampaign(t, db.DB, map[int64]int64{5: 10})
	empty := testenv.LiveCampaign(t, db.DB, map[int64]int64{5: 10})
	insertClaims(t, db, id, 5, 5)
	get := func(uri string, hdr map[string]string) (int, map[string]any) {
		if hdr == nil {
			hdr = bearerOf(testToken)
		}
		status, _, body := h.req("GET", uri, hdr, "")
		return status, jsonOf(t, body)
	}
	users := func(m map[string]any) (out []string) {
		for _, c := range m["claims"].([]any) {
			out = append(out, c.(map[string]any)["user_id"].(string))
		}
		return out
	}
	base := fmt.Sprintf("/campaign/%d/claims", id)
	status, m := get(base, nil)
	if status != 200 || len(users(m)) != 5 || m["next"] != nil {
		t.Fatalf("claims: %d %v", status, m)
	}
	first := m["claims"].([]any)[0].(map[string]any)
	if first["user_id"] != "c-0000000" || first["amount"] != float64(5) || first["claimed_at"] != "2025-01-01T00:00:00Z" || first["persisted"] != true {
		t.Errorf("first claim: %v", first)
	}
	status, m = get(base+"?limit=2", nil)
	if status != 200 || fmt.Sprint(users(m)) != "[c-0000000 c-0000001]" || m["next"] != "c-0000001" {
		t.Fatalf("page 1: %d %v", status, m)
	}
	status, m = get(base+"?limit=2&after=c-0000001", nil)
	if status != 200 || fmt.Sprint(users(m)) != "[c-0000002 c-0000003]" || m["next"] != "c-0000003" {
		t.Fatalf("page 2: %d %v", status, m)
	}
	status, m = get(base+"?limit=2&after=c-0000003", nil)
	if status != 200 || fmt.Sprint(users(m)) != "[c-0000004]" || m["next"] != nil {
		t.Fatalf("last page: %d %v", status, m)
	}
	if status, m := get(base+"?after=c-0000004", nil); status != 200 || len(users(m)) != 0 || m["next"] != nil {
		t.Fatalf("past the end: %d %v", status, m)
	}
	if status, m := get(base+"?after=zzz", nil); status != 200 || len(users(m)) != 0 {
		t.Fatalf("past the end (zzz): %d %v", status, m)
	}
	if status, m := get(fmt.Sprintf("/campaign/%d/claims", empty), nil); status != 200 || len(users(m)) != 0 || m["next"] != nil {
		t.Fatalf("no claims: %d %v", status, m)
	}
	if status, m := get("/campaign/999999999999999/claims", nil); status != 404 || m["status"] != "NOT_FOUND" {
		t.Fatalf("no campaign: %d %v", status, m)
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?after=a%20b", "?after=", "?x=1", "?after=a&after=b"} {
		if status, m := get(base+q, nil); status != 400 {
			t.Errorf("%s: %d %v, want 400", q, status, m)
		}
	}

	// One user's claim: from claim_log, or from Redis on its way there.
	if status, m := get(base+"/c-0000003", nil); status != 200 || m["amount"] != float64(5) || m["persisted"] != true ||
		m["claimed_at"] != "2025-01-01T00:00:00.003Z" {
		t.Errorf("claim of c-0000003: %d %v", status, m)
	}
	live := h.live(`{"20":2}`)
	h.open(live, "fresh")
	h.open(live, "a/b,c")
	if status, m := get(fmt.Sprintf("/campaign/%d/claims/%s", live, url.PathEscape("a/b,c")), nil); status != 200 || m["user_id"] != "a/b,c" {
		t.Errorf("claim of a user id with a slash: %d %v", status, m)
	}
	if status, m := get(fmt.Sprintf("/campaign/%d/claims/fresh", live), nil); status != 200 || m["amount"] != float64(20) || m["persisted"] != false {
		t.Errorf("claim in redis only: %d %v", status, m)
	}
	for _, uri := range []string{base + "/nobody", "/campaign/999999999999999/claims/c-0000003"} {
		if status, m := get(uri, nil); status != 404 || m["status"] != "NOT_FOUND" {
			t.Errorf("%s: %d %v, want 404", uri, status, m)
		}
	}
	if status, m := get(base+"/a%20b", nil); status != 400 {
		t.Errorf("bad user id: %d %v", status, m)
	}

	// CSV: the whole list, quoted where needed, from after if given.
	_, err := db.DB.Exec(context.Background(), `INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at)
		VALUES ($1, 'd,"x"', 5, '2025-01-02T00:00:00Z')`, id)
	if err != nil {
		t.Fatal(err)
	}
	csvHdr := map[string]string{"Authorization": "Bearer " + testToken, "Accept": "text/csv"}
	status, hdr, body := h.req("GET", base, csvHdr, "")
	want := "user_id,amount,claimed_at\r\n" +
		"c-0000000,5,2025-01-01T00:00:00.000Z\r\nc-0000001,5,2025-01-01T00:00:00.001Z\r\nc-0000002,5,2025-01-01T00:00:00.002Z\r\n" +
		"c-0000003,5,2025-01-01T00:00:00.003Z\r\nc-0000004,5,2025-01-01T00:00:00.004Z\r\n" + `"d,""x""",5,2025-01-02T00:00:00.000Z` + "\r\n"
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") || string(body) != want {
		t.Fatalf("csv: %d %v\n%s\nwant\n%s", status, hdr, body, want)
	}
	if status, _, body := h.req("GET", base+"?after=c-0000003", csvHdr, ""); status != 200 || !strings.HasPrefix(string(body), "user_id,amount,claimed_at\r\nc-0000004,") {
		t.Fatalf("csv after: %d %s", status, body)
	}
	if status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d/claims", empty), csvHdr, ""); status != 200 || string(body) != csvHeader {
		t.Fatalf("csv of no claims: %d %q", status, body)
	}
	if status, _, _ := h.req("GET", base+"?limit=2", csvHdr, ""); status != 400 {
		t.Errorf("csv with a limit: %d", status)
	}
	if status, _, _ := h.req("GET", "/campaign/999999999999999/claims", csvHdr, ""); status != 404 {
		t.Errorf("csv of no campaign: %d", status)
	}
}

// TestClaimsCSVMillion streams the CSV of a campaign of 1,000,000 claims
// and measures the api process's heap while it does: the live heap (after
// a GC) must stay far below the size of the export. About 20-40 s on the
// 2-core development machine, most of it inserting the rows.
func TestClaimsCSVMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs PostgreSQL and a minute")
	}
	const n = 1_000_000
	h := newHarness(t, harnessOpt{})
	db := h.srv.store
	id := testenv.LiveCampaign(t, db.DB, map[int64]int64{5: n})
	start := time.Now()
	insertClaims(t, db, id, 5, n)
	t.Logf("inserted %d claims in %v", n, time.Since(start))

	liveHeap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := liveHeap()
	// ReadTimeout bounds the whole streamed body: a ceiling for a busy machine under -race.
	client := &fasthttp.Client{Dial: h.client.Dial, StreamResponseBody: true, ReadTimeout: 5 * time.Minute}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(fmt.Sprintf("http://api/campaign/%d/claims", id))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Accept", "text/csv")
	start = time.Now()
	if err := client.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 {
		t.Fatalf("csv: %d %s", resp.StatusCode(), resp.Body())
	}
	var (
		lines, size int
		peak        uint64
		last        string
	)
	sc := bufio.NewScanner(resp.BodyStream())
	for sc.Scan() {
		lines++
		size += len(sc.Bytes()) + 1
		if lines%100_000 == 0 {
			peak = max(peak, liveHeap())
		}
		if lines > 1 {
			user, _, _ := strings.Cut(sc.Text(), ",")
			if user <= last {
				t.Fatalf("line %d: user %q after %q", lines, user, last)
			}
			last = user
		}
	}
	if err := sc.Err(); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	took := time.Since(start)
	checkExchange(t, exchange{method: "GET", uri: string(req.RequestURI()), reqHeader: http.Header{"Accept": {"text/csv"}},
		status: resp.StatusCode(), respHeader: http.Header{"Content-Type": {string(resp.Header.ContentType())}}, respBody: []byte(csvHeader)})
	if lines != n+1 || last != fmt.Sprintf("c-%07d", n-1) {
		t.Fatalf("%d lines, last user %q; want %d", lines, last, n+1)
	}
	grew := int64(peak) - int64(base)
	t.Logf("streamed %d claims (%.1f MB) in %v; live heap %0.1f MB before, at most %0.1f MB while streaming (%+.1f MB)",
		n, float64(size)/1e6, took, float64(base)/1e6, float64(peak)/1e6, float64(grew)/1e6)
	if grew > int64(size)/4 {
		t.Errorf("the heap grew by %d bytes while streaming %d: the export is held in memory", grew, size)
	}
}

// TestArchivedClaims: once an ended campaign's claims are archived
// (consumer archive, from its first step), the payout routes answer
// 410 ARCHIVED, with when and how many, for the list, the CSV and one
// user's claim alike, whether or not the user had one; the campaign
// itself still reads, with its counts.
func TestArchivedClaims(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db := h.srv.store
	ctx := context.Background()
	id := testenv.NewCampaign(t, db.DB, time.Now().Add(-72*time.Hour), time.Now().Add(-48*time.Hour), map[int64]int64{5: 10})
	insertClaims(t, db, id, 5, 5)
	csvHdr := map[string]string{"Authorization": "Bearer " + testToken, "Accept": "text/csv"}
	base := fmt.Sprintf("/campaign/%d/claims", id)
	if status, _, _ := h.req("GET", base, bearerOf(testToken), ""); status != 200 {
		t.Fatalf("claims before the archive: %d", status)
	}
	if _, err := db.StartArchive(ctx, id, time.Now().Add(-24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		for _, r := range []struct {
			uri string
			hdr map[string]string
		}{{base, bearerOf(testToken)}, {base + "?limit=2&after=c-0000001", bearerOf(testToken)}, {base, csvHdr},
			{base + "/c-0000003", bearerOf(testToken)}, {base + "/nobody", bearerOf(testToken)}} {
			status, hdr, body := h.req("GET", r.uri, r.hdr, "")
			m := jsonOf(t, body)
			msg, _ := m["error"].(string)
			if status != 410 || m["status"] != "ARCHIVED" || !strings.Contains(msg, "archived") || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Errorf("%s: GET %s %v: %d %s, want 410 ARCHIVED", step, r.uri, r.hdr["Accept"], status, body)
			}
		}
	}
	check("started")
	if err := db.DetachClaims(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.FinishArchive(ctx, id, 5, strings.Repeat("ab", 32), "file:///archive/claims.csv"); err != nil {
		t.Fatal(err)
	}
	check("finished")
	status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d/claims/c-0000003", id), bearerOf(testToken), "")
	if m := jsonOf(t, body); status != 410 || !strings.Contains(m["error"].(string), "5 claims") || !strings.Contains(m["error"].(string), strings.Repeat("ab", 32)) {
		t.Errorf("the finished archive's answer: %d %s, want its count and sha256", status, body)
	}
	if status, _, body := h.req("GET", fmt.Sprintf("/campaign/%d", id), bearerOf(testToken), ""); status != 200 || jsonOf(t, body)["persisted"] != float64(5) {
		t.Errorf("the archived campaign itself: %d %s, want 200 with persisted 5", status, body)
	}
}
