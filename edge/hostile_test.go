package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
)

// The hostile suite: what a client that means harm can send, table-driven.
// Every case goes over a connection of its own with a deadline (no hang),
// and every answer must be below 500, be JSON with the SPEC's status for
// its HTTP status (and a message where the SPEC gives one), and the suite
// as a whole must change nothing: stock, claims, events, campaigns.

// hostile is one case: raw bytes written to a fresh connection (several
// requests, or a part of one), and the HTTP statuses of the answers read
// back, in order. Hold keeps the connection open after writing (a slow or
// idle client) until the server answers or closes it.
type hostile struct {
	name string
	raw  string
	want []int
	// drip sends raw a byte at a time with this pause (a slow client).
	drip time.Duration
}

// req builds one request's raw bytes.
func req(method, path string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: api\r\n", method, path)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" || method == "POST" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

// specStatus is the "status" the SPEC gives each HTTP status, and whether
// the body carries an "error" message.
var specStatus = map[int]struct {
	statuses []string
	message  bool
}{
	200: {[]string{"OK"}, false},
	400: {[]string{"INVALID_REQUEST", "NOT_STARTED", "ENDED"}, false}, // INVALID_REQUEST: checked below
	401: {[]string{"UNAUTHORIZED"}, true},
	404: {[]string{"NOT_FOUND"}, false},
	405: {[]string{"INVALID_REQUEST"}, true},
	408: {[]string{"INVALID_REQUEST"}, true},
	409: {[]string{"ALREADY_OPENED"}, false},
	410: {[]string{"SOLD_OUT"}, false},
	413: {[]string{"INVALID_REQUEST"}, true},
	414: {[]string{"INVALID_REQUEST"}, true},
	417: {[]string{"INVALID_REQUEST"}, true},
	429: {[]string{"RATE_LIMITED"}, true},
	431: {[]string{"INVALID_REQUEST"}, true},
}

// run plays the case and checks every answer.
func (c hostile) run(t *testing.T, dial func() (net.Conn, error)) {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second)) // no hang
	go func() {
		if c.drip == 0 {
			_, _ = io.WriteString(conn, c.raw)
			return
		}
		for i := 0; i < len(c.raw); i++ {
			if _, err := conn.Write([]byte{c.raw[i]}); err != nil {
				return
			}
			time.Sleep(c.drip)
		}
	}()
	br := bufio.NewReader(conn)
	for i, want := range c.want {
		r, err := readRawReply(br, strings.HasPrefix(c.raw, "HEAD "))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: answer %d: the server hung: %v", c.name, i+1, err)
			} else {
				t.Errorf("%s: answer %d: %v", c.name, i+1, err)
			}
			return
		}
		checkAnswer(t, c.name, r, want)
		if r.closed {
			if i != len(c.want)-1 {
				t.Errorf("%s: connection closed after answer %d of %d", c.name, i+1, len(c.want))
			}
			return
		}
	}
}

func checkAnswer(t *testing.T, name string, r rawReply, want int) {
	t.Helper()
	if r.status >= 500 {
		t.Errorf("%s: %d %s", name, r.status, r.body)
		return
	}
	if r.status != want {
		t.Errorf("%s: status %d %s, want %d", name, r.status, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: content type %q", name, ct)
	}
	if r.json == nil { // HEAD: no body to look at
		return
	}
	spec, ok := specStatus[r.status]
	st, _ := r.json["status"].(string)
	if !ok || !slices.Contains(spec.statuses, st) {
		t.Errorf("%s: %d with status %q, not the SPEC's", name, r.status, st)
	}
	msg, _ := r.json["error"].(string)
	if (spec.message || st == "INVALID_REQUEST") && msg == "" {
		t.Errorf("%s: %d %s without an error message", name, r.status, r.body)
	}
	if strings.Contains(msg, "dial tcp") || strings.Contains(msg, "SQLSTATE") || strings.Contains(msg, "127.0.0.1") {
		t.Errorf("%s: internal text in the body: %s", name, r.body)
	}
}

// world is what the suite must leave as it found it.
type world struct {
	stock  map[int64]map[string]string
	claims map[int64]map[string]string
	ring   int
	named  int
}

func snapshot(t *testing.T, h *harness, marker string, ids ...int64) world {
	t.Helper()
	ctx := context.Background()
	w := world{stock: map[int64]map[string]string{}, claims: map[int64]map[string]string{}, ring: h.ring.Len()}
	for _, id := range ids {
		k := testenv.Keys().Of(id)
		var err error
		if w.stock[id], err = h.redis.Do(ctx, h.redis.B().Hgetall().Key(k.Stock()).Build()).AsStrMap(); err != nil {
			t.Fatal(err)
		}
		if w.claims[id], err = h.redis.Do(ctx, h.redis.B().Hgetall().Key(k.Claims()).Build()).AsStrMap(); err != nil {
			t.Fatal(err)
		}
	}
	err := testenv.Postgres(t).QueryRow(ctx, `SELECT count(*) FROM campaign WHERE name LIKE '%' || $1 || '%'`, marker).Scan(&w.named)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w world) same(t *testing.T, after world) {
	t.Helper()
	if fmt.Sprint(w.stock) != fmt.Sprint(after.stock) || fmt.Sprint(w.claims) != fmt.Sprint(after.claims) {
		t.Errorf("stock or claims changed:\nbefore %v %v\nafter  %v %v", w.stock, w.claims, after.stock, after.claims)
	}
	if w.ring != after.ring {
		t.Errorf("claim events: %d before, %d after", w.ring, after.ring)
	}
	if after.named != 0 {
		t.Errorf("%d campaigns created", after.named)
	}
}

func TestHostileTraffic(t *testing.T) {
	h := newHarness(t, harnessOpt{set: func(c *Config) {
		c.ReadTimeout, c.IdleTimeout = time.Second, time.Second
	}})
	h.client.MaxIdleConnDuration = 200 * time.Millisecond // the server closes idle ones after 1 s
	live := h.live(`{"5":10}`)
	soldOut := h.live(`{"5":1}`)
	if status, _ := h.open(soldOut, "owner"); status != 200 {
		t.Fatal("could not sell the campaign out")
	}
	marker := fmt.Sprintf("hostile-%d", rand.Int64())
	before := snapshot(t, h, marker, live, soldOut)

	open := fmt.Sprintf("/campaign/%d/open", live)
	openSold := fmt.Sprintf("/campaign/%d/open", soldOut)
	get := fmt.Sprintf("/campaign/%d", live)
	auth := "Authorization: Bearer " + testToken
	create := func(body string) string { return req("POST", "/campaign", []string{auth}, body) }
	valid := func(field, value string) string {
		f := map[string]string{"name": `"` + marker + `"`, "start_time": `"2030-01-01T00:00:00Z"`,
			"end_time": `"2030-01-02T00:00:00Z"`, "inventory": `{"5":1}`}
		f[field] = value
		var parts []string
		for _, k := range []string{"name", "start_time", "end_time", "inventory"} {
			if f[k] != "" {
				parts = append(parts, fmt.Sprintf("%q:%s", k, f[k]))
			}
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	validCreate := valid("", "")
	o := func(body string) string { return req("POST", open, nil, body) }
	cases := []hostile{
		// Open bodies.
		{name: "open: empty body", raw: o(""), want: []int{400}},
		{name: "open: null", raw: o("null"), want: []int{400}},
		{name: "open: array", raw: o(`["alice"]`), want: []int{400}},
		{name: "open: user id a number", raw: o(`{"user_id":42}`), want: []int{400}},
		{name: "open: user id an object", raw: o(`{"user_id":{"a":1}}`), want: []int{400}},
		{name: "open: two user ids", raw: o(`{"user_id":"a","user_id":"b"}`), want: []int{400}},
		{name: "open: extra field", raw: o(`{"user_id":"a","amount":1000000}`), want: []int{400}},
		{name: "open: User_Id", raw: o(`{"User_Id":"a"}`), want: []int{400}},
		{name: "open: invalid escape", raw: o(`{"user_id":"a\qb"}`), want: []int{400}},
		{name: "open: short unicode escape", raw: o(`{"user_id":"a\u12"}`), want: []int{400}},
		{name: "open: lone surrogate", raw: o(`{"user_id":"\ud800"}`), want: []int{400}},
		{name: "open: lone low surrogate", raw: o(`{"user_id":"x\udfff"}`), want: []int{400}},
		{name: "open: NUL", raw: o(`{"user_id":"a\u0000"}`), want: []int{400}},
		{name: "open: raw control byte", raw: o("{\"user_id\":\"a\x01b\"}"), want: []int{400}},
		{name: "open: invalid UTF-8", raw: o("{\"user_id\":\"\xc3\x28\"}"), want: []int{400}},
		{name: "open: overlong UTF-8", raw: o("{\"user_id\":\"\xc0\xaf\"}"), want: []int{400}},
		{name: "open: BOM", raw: o("\xef\xbb\xbf{\"user_id\":\"a\"}"), want: []int{400}},
		{name: "open: 129-byte id", raw: o(`{"user_id":"` + strings.Repeat("u", 129) + `"}`), want: []int{400}},
		{name: "open: spaces in id", raw: o(`{"user_id":"a b"}`), want: []int{400}},
		{name: "open: NBSP in id", raw: o(`{"user_id":"a\u00a0b"}`), want: []int{400}},
		{name: "open: line separator", raw: o(`{"user_id":"a\u2028"}`), want: []int{400}},
		{name: "open: trailing data", raw: o(`{"user_id":"a"}{}`), want: []int{400}},
		{name: "open: deep nesting", raw: o(strings.Repeat("[", 1000) + strings.Repeat("]", 1000)), want: []int{400}},
		{name: "open: body over 4 KiB", raw: o(`{"user_id":"` + strings.Repeat("u", 5000) + `"}`), want: []int{413}},
		{name: "open: form body", raw: req("POST", open, []string{"Content-Type: application/x-www-form-urlencoded"}, "user_id=alice"), want: []int{400}},
		{name: "open: multipart body", raw: req("POST", open, []string{"Content-Type: multipart/form-data; boundary=x"}, "--x\r\nContent-Disposition: form-data; name=\"user_id\"\r\n\r\nalice\r\n--x--\r\n"), want: []int{400}},
		// Campaign ids.
		{name: "id: zero", raw: req("POST", "/campaign/0/open", nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: negative", raw: req("POST", "/campaign/-5/open", nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: leading zero", raw: req("POST", fmt.Sprintf("/campaign/0%d/open", live), nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: plus sign", raw: req("POST", fmt.Sprintf("/campaign/+%d/open", live), nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: exponent", raw: req("POST", "/campaign/1e3/open", nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: over int64", raw: req("POST", "/campaign/9223372036854775808/open", nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: letters", raw: req("POST", "/campaign/abc/open", nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: unicode digits", raw: req("POST", "/campaign/%D9%A1/open", nil, `{"user_id":"a"}`), want: []int{400}},
		{name: "id: max int64, no such campaign", raw: req("POST", "/campaign/9223372036854775807/open", nil, `{"user_id":"a"}`), want: []int{404}},
		{name: "id: made up", raw: req("POST", fmt.Sprintf("/campaign/%d/open", 1<<60+rand.Int64N(1<<40)), nil, `{"user_id":"a"}`), want: []int{404}},
		{name: "id: sold out, new user", raw: req("POST", openSold, nil, `{"user_id":"newcomer"}`), want: []int{410}},
		{name: "id: bad id on GET", raw: req("GET", "/campaign/x", []string{auth}, ""), want: []int{400}},
		// Routes and methods.
		{name: "route: unknown", raw: req("GET", "/admin", nil, ""), want: []int{404}},
		{name: "route: trailing slash", raw: req("POST", open+"/", nil, `{"user_id":"a"}`), want: []int{404}},
		{name: "route: upper case", raw: req("POST", strings.ToUpper(open), nil, `{"user_id":"a"}`), want: []int{404}},
		{name: "route: open by GET", raw: req("GET", open, nil, ""), want: []int{405}},
		{name: "route: PUT campaign", raw: req("PUT", get, []string{auth}, "{}"), want: []int{405}},
		{name: "route: DELETE campaign", raw: req("DELETE", get, []string{auth}, ""), want: []int{405}},
		{name: "route: TRACE", raw: req("TRACE", "/healthz", nil, ""), want: []int{405}},
		{name: "route: HEAD on a GET route", raw: req("HEAD", "/healthz", nil, ""), want: []int{200}},
		{name: "route: OPTIONS", raw: req("OPTIONS", open, nil, ""), want: []int{200}},
		{name: "route: OPTIONS unknown", raw: req("OPTIONS", "/nowhere", nil, ""), want: []int{404}},
		{name: "route: made-up method", raw: req("BREW", "/healthz", nil, ""), want: []int{405}},
		{name: "route: path traversal", raw: req("GET", "/campaign/../../etc/passwd", nil, ""), want: []int{404}},
		{name: "route: absolute URI, other host", raw: req("GET", "http://evil.example/healthz", nil, ""), want: []int{200}},
		// The merchant token.
		{name: "token: none", raw: req("POST", "/campaign", nil, validCreate), want: []int{401}},
		{name: "token: wrong", raw: req("POST", "/campaign", []string{"Authorization: Bearer nope"}, validCreate), want: []int{401}},
		{name: "token: prefix of the right one", raw: req("POST", "/campaign", []string{"Authorization: Bearer " + testToken[:4]}, validCreate), want: []int{401}},
		{name: "token: right one and more", raw: req("POST", "/campaign", []string{"Authorization: Bearer " + testToken + "x"}, validCreate), want: []int{401}},
		{name: "token: Basic scheme", raw: req("POST", "/campaign", []string{"Authorization: Basic " + testToken}, validCreate), want: []int{401}},
		{name: "token: scheme only", raw: req("POST", "/campaign", []string{"Authorization: Bearer"}, validCreate), want: []int{401}},
		{name: "token: no scheme", raw: req("POST", "/campaign", []string{"Authorization: " + testToken}, validCreate), want: []int{401}},
		{name: "token: on GET", raw: req("GET", get, []string{"Authorization: Bearer wrong"}, ""), want: []int{401}},
		{name: "token: 3 KiB", raw: req("GET", get, []string{"Authorization: Bearer " + strings.Repeat("t", 3<<10)}, ""), want: []int{401}},
		{name: "token: headers over the buffer", raw: req("GET", get, []string{"Authorization: Bearer " + strings.Repeat("t", 8<<10)}, ""), want: []int{431}},
		// Create bodies (with the right token: refused for the body alone).
		{name: "create: Name", raw: create(strings.Replace(validCreate, `"name"`, `"Name"`, 1)), want: []int{400}},
		{name: "create: name twice", raw: create(strings.TrimSuffix(validCreate, "}") + `,"name":"x"}`), want: []int{400}},
		{name: "create: amount twice", raw: create(valid("inventory", `{"5":1,"5":100000000}`)), want: []int{400}},
		{name: "create: NUL in name", raw: create(valid("name", `"`+marker+`\u0000"`)), want: []int{400}},
		{name: "create: offset 24 h", raw: create(valid("start_time", `"2030-01-01T00:00:00+24:00"`)), want: []int{400}},
		{name: "create: UTC year 0", raw: create(valid("start_time", `"0000-01-01T00:00:00+01:00"`)), want: []int{400}},
		{name: "create: UTC year 10000", raw: create(valid("end_time", `"9999-12-31T23:59:59-01:00"`)), want: []int{400}},
		{name: "create: window under 1 ms", raw: create(valid("end_time", `"2030-01-01T00:00:00.0005Z"`)), want: []int{400}},
		{name: "create: count a float", raw: create(valid("inventory", `{"5":1.0}`)), want: []int{400}},
		{name: "create: 2^63 count", raw: create(valid("inventory", `{"5":9223372036854775808}`)), want: []int{400}},
		{name: "create: 65 amounts", raw: create(valid("inventory", manyAmounts(65))), want: []int{400}},
		{name: "create: unknown field", raw: create(strings.TrimSuffix(validCreate, "}") + `,"owner":"me"}`), want: []int{400}},
		// Framing.
		{name: "framing: garbage", raw: "\x00\x01\x02\x03\r\n\r\n", want: []int{400}},
		{name: "framing: request line without version", raw: "GET /healthz\r\n\r\n", want: []int{400}},
		{name: "framing: HTTP/9.9 (read as 1.1)", raw: "GET /healthz HTTP/9.9\r\nHost: api\r\n\r\n", want: []int{200}},
		{name: "framing: header without colon", raw: "GET /healthz HTTP/1.1\r\nHost api\r\n\r\n", want: []int{400}},
		{name: "framing: space before colon", raw: "GET /healthz HTTP/1.1\r\nHost : api\r\n\r\n", want: []int{400}},
		{name: "framing: URI over 4 KiB", raw: "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: api\r\n\r\n", want: []int{414}},
		{name: "framing: two Content-Lengths", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\n{}", want: []int{400}},
		{name: "framing: negative Content-Length", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nContent-Length: -1\r\n\r\n", want: []int{400}},
		{name: "framing: Content-Length and chunked", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{400}},
		{name: "framing: declared 1 MB, nothing sent", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nContent-Length: 1000000\r\n\r\n", want: []int{413}},
		{name: "framing: declared 100 KB on create", raw: "POST /campaign HTTP/1.1\r\nHost: api\r\n" + auth + "\r\nContent-Length: 100000\r\n\r\n", want: []int{413}},
		{name: "framing: Expect 100-continue", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nExpect: 100-continue\r\nContent-Length: 15\r\n\r\n", want: []int{417}},
		{name: "framing: body longer than declared", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\n{\"user_id\":\"x\"}", want: []int{400, 408}}, // the rest waits to be a request line
		{name: "framing: pipelined", raw: req("GET", "/healthz", nil, "") + o("{}") + req("GET", get, nil, ""), want: []int{200, 400, 401}},
		{name: "framing: chunked, bad user", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"use\r\nc\r\nr_id\":\"a b\"}\r\n0\r\n\r\n", want: []int{400}},
		{name: "framing: chunked to a made-up campaign", raw: "POST /campaign/9223372036854775807/open HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"user_id\":\"ab\"}\r\n0\r\n\r\n", want: []int{404}},
		{name: "framing: chunked over 4 KiB", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("400\r\n"+strings.Repeat("x", 1024)+"\r\n", 5) + "0\r\n\r\n", want: []int{413}},
		{name: "framing: bad chunk size", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", want: []int{400}},
		{name: "framing: HTTP/1.0 chunked", raw: "POST " + open + " HTTP/1.0\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: []int{400}},
		// Slow and idle clients (ReadTimeout and IdleTimeout are 1 s here).
		{name: "slow: headers dripped", raw: "GET /healthz HTTP/1.1\r\nHost: api\r\nX-Slow: " + strings.Repeat("a", 100), drip: 50 * time.Millisecond, want: []int{408}},
		{name: "slow: body never finished", raw: "POST " + open + " HTTP/1.1\r\nHost: api\r\nContent-Length: 20\r\n\r\n{\"user", want: []int{408}},
		{name: "idle: connects, sends nothing", raw: "", want: []int{408}},
	}
	if len(cases) < 60 {
		t.Fatalf("%d cases; the suite wants 60 at least", len(cases))
	}
	for _, c := range cases {
		c.run(t, h.dial)
	}

	// An idle keep-alive connection is closed by the server (IdleTimeout).
	conn, err := h.dial()
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(conn, req("GET", "/healthz", nil, ""))
	br := bufio.NewReader(conn)
	if r, err := readRawReply(br, false); err != nil || r.status != 200 {
		t.Fatalf("keep-alive: %+v %v", r, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("an idle keep-alive connection was not closed: %v", err)
	}
	conn.Close()

	// Floods: made-up ids, and new users on a sold-out campaign.
	const pgLookups = `rain_campaign_lookups_total{source="postgres"}`
	pgBefore := counter(pgLookups)
	start := time.Now()
	for i := range 1000 {
		id := 1<<61 + rand.Int64N(1<<40)
		if status, m := h.open(id, fmt.Sprintf("flood-%d", i)); status != 404 || m["status"] != "NOT_FOUND" {
			t.Fatalf("made-up id %d: %d %v", id, status, m)
		}
	}
	if n := counter(pgLookups) - pgBefore; n > 2+uint64(time.Since(start)/time.Second) { // once a second at most
		t.Errorf("a flood of 1000 made-up ids read PostgreSQL %d times in %v", n, time.Since(start))
	}
	for i := range 1000 {
		if status, m := h.open(soldOut, fmt.Sprintf("sybil-%d", i)); status != 410 || m["status"] != "SOLD_OUT" {
			t.Fatalf("new user %d on a sold-out campaign: %d %v", i, status, m)
		}
	}
	if status, m := h.open(soldOut, "owner"); status != 409 || m["amount"] != float64(5) {
		t.Errorf("the owner after the flood: %d %v", status, m)
	}
	before.same(t, snapshot(t, h, marker, live, soldOut))
}

func manyAmounts(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`"%d":1`, i+1)
	}
	return "{" + strings.Join(parts, ",") + "}"
}
