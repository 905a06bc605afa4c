package edge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/testenv"
)

func TestCreateAndGet(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	id := h.live(`{"20":10,"5":100}`)
	h.open(id, "alice")
	status, m := h.do("GET", fmt.Sprintf("/campaign/%d", id), testToken, "")
	if status != 200 {
		t.Fatalf("get: %d %v", status, m)
	}
	if m["id"] != float64(id) || m["total"] != float64(110) || m["remaining"] != float64(109) ||
		m["claims"] != float64(1) || m["loaded"] != true || !strings.HasPrefix(m["name"].(string), "test ") {
		t.Errorf("get: %v", m)
	}
	inv := m["inventory"].([]any)
	if len(inv) != 2 {
		t.Fatalf("inventory: %v", inv)
	}
	var remaining float64
	for _, x := range inv {
		s := x.(map[string]any)
		remaining += s["remaining"].(float64)
		if s["amount"] == float64(20) && s["total"] != float64(10) || s["amount"] == float64(5) && s["total"] != float64(100) {
			t.Errorf("inventory row: %v", s)
		}
	}
	if remaining != 109 {
		t.Errorf("remaining per amount adds to %v, want 109", remaining)
	}
	if status, m := h.do("GET", "/campaign/999999999999", testToken, ""); status != 404 || m["status"] != "NOT_FOUND" {
		t.Errorf("get unknown: %d %v", status, m)
	}
	if status, m := h.do("GET", "/campaign/x", testToken, ""); status != 400 {
		t.Errorf("get bad id: %d %v", status, m)
	}
}

// campaignsNamed counts campaigns in PostgreSQL with the name.
func campaignsNamed(t *testing.T, name string) int {
	var n int
	err := testenv.Postgres(t).QueryRow(context.Background(), `SELECT count(*) FROM campaign WHERE name = $1`, name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMerchantRoutesNeedToken(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	name := fmt.Sprintf("unauthorized %d", time.Now().UnixNano())
	body := `{"name":"` + name + `","start_time":"2025-01-01T00:00:00Z","end_time":"2025-01-07T00:00:00Z","inventory":{"5":1}}`
	for _, token := range []string{"", "wrong", "test-tokenX", "test-toke", "Test-token", "TEST-TOKEN"} {
		status, m := h.do("POST", "/campaign", token, body)
		if status != 401 || m["status"] != "UNAUTHORIZED" {
			t.Errorf("create with token %q: %d %v", token, status, m)
		}
		if status, _ := h.do("GET", "/campaign/1", token, ""); status != 401 {
			t.Errorf("get with token %q: %d", token, status)
		}
	}
	if n := campaignsNamed(t, name); n != 0 {
		t.Errorf("unauthorized creates made %d campaigns", n)
	}
	// Either token of the comma-separated list works.
	if status, m := h.do("POST", "/campaign", "other-token", body); status != 201 {
		t.Errorf("create with the other token: %d %v", status, m)
	}
}

// TestBadCreatesChangeNothing: every invalid campaign is a 4xx and nothing
// is written to PostgreSQL or Redis.
func TestBadCreatesChangeNothing(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	name := fmt.Sprintf("bad %d", time.Now().UnixNano())
	valid := map[string]string{
		"name": `"` + name + `"`, "start_time": `"2025-01-01T00:00:00Z"`,
		"end_time": `"2025-01-07T00:00:00Z"`, "inventory": `{"20":10,"5":100}`,
	}
	with := func(field, value string) string {
		parts := []string{}
		for _, f := range []string{"name", "start_time", "end_time", "inventory"} {
			v := valid[f]
			if f == field {
				v = value
			}
			if v != "" {
				parts = append(parts, fmt.Sprintf("%q:%s", f, v))
			}
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	many := make([]string, 65)
	for i := range many {
		many[i] = fmt.Sprintf(`"%d":1`, i+1)
	}
	cases := []struct {
		body   string
		status int
	}{
		{``, 400},
		{`{`, 400},
		{`[]`, 400},
		{with("name", ``), 400},
		{with("name", `""`), 400},
		{with("name", `"`+strings.Repeat("x", 201)+`"`), 400},
		{with("name", `7`), 400},
		{with("start_time", ``), 400},
		{with("start_time", `"2025-01-01"`), 400},
		{with("start_time", `"yesterday"`), 400},
		{with("end_time", `"2025-01-01T00:00:00Z"`), 400}, // end == start
		{with("end_time", `"2024-12-31T00:00:00Z"`), 400}, // end < start
		{with("inventory", ``), 400},
		{with("inventory", `{}`), 400},
		{with("inventory", `[]`), 400},
		{with("inventory", `{`+strings.Join(many, ",")+`}`), 400},
		{with("inventory", `{"0":1}`), 400},
		{with("inventory", `{"-5":1}`), 400},
		{with("inventory", `{"05":1}`), 400},
		{with("inventory", `{"5.0":1}`), 400},
		{with("inventory", `{"1000000001":1}`), 400},
		{with("inventory", `{"abc":1}`), 400},
		{with("inventory", `{"5":0}`), 400},
		{with("inventory", `{"5":-1}`), 400},
		{with("inventory", `{"5":1.5}`), 400},
		{with("inventory", `{"5":1e3}`), 400},
		{with("inventory", `{"5":"10"}`), 400},
		{with("inventory", `{"5":100000001}`), 400},
		{with("inventory", `{"5":null}`), 400},
		{strings.TrimSuffix(with("", ""), "}") + `,"extra":1}`, 400},
		{with("", "") + `{}`, 400},
		// Strict JSON: exact-case names, no duplicates, valid escapes.
		{strings.Replace(with("", ""), `"name"`, `"Name"`, 1), 400},
		{strings.Replace(with("", ""), `"inventory"`, `"INVENTORY"`, 1), 400},
		{strings.TrimSuffix(with("", ""), "}") + `,"name":"again"}`, 400},
		{with("inventory", `{"20":1,"20":100000000}`), 400},
		{with("name", `"a\qb"`), 400},
		{with("name", `"a\ud800b"`), 400},
		{with("name", `"a\u0000b"`), 400}, // PostgreSQL refuses NUL in text
		{with("name", `"a\nb"`), 400},
		{with("name", `"a\u0085b"`), 400},
		// Times: RFC 3339 shape, offsets under 24 h, UTC years 1-9999, windows of 1 ms at least.
		{with("start_time", `"2025-01-01T00:00:00+24:00"`), 400},
		{with("start_time", `"2025-01-01T1:00:00Z"`), 400},
		{with("start_time", `"2025-01-01T00:00:00,5Z"`), 400},
		{with("start_time", `"2025-01-01t00:00:00z"`), 400},
		{with("start_time", `"0000-01-01T00:00:00+01:00"`), 400},
		{with("end_time", `"9999-12-31T23:59:59-01:00"`), 400},
		{with("end_time", `"2025-01-01T00:00:00.0009Z"`), 400},
		{with("end_time", `"2025-01-01T00:00:00.000000001Z"`), 400},
		{with("start_time", `null`), 400},
		{with("inventory", `{"5":1,"6":{}}`), 400},
	}
	for _, c := range cases {
		status, m := h.do("POST", "/campaign", testToken, c.body)
		if status != c.status || m["status"] != "INVALID_REQUEST" || m["error"] == "" {
			short := c.body
			if len(short) > 120 {
				short = short[:120] + "..."
			}
			t.Errorf("create %s: %d %v, want %d INVALID_REQUEST", short, status, m, c.status)
		}
	}
	if status, m := h.oversized("/campaign", testToken, 70<<10); status != 413 || m["status"] != "INVALID_REQUEST" {
		t.Errorf("create of 70 KiB: %d %v, want 413", status, m)
	}
	if n := campaignsNamed(t, name); n != 0 {
		t.Errorf("bad creates made %d campaigns", n)
	}
	// The boundaries themselves are accepted.
	ok := with("name", `"`+strings.Repeat("é", 200)+`"`)
	if status, m := h.do("POST", "/campaign", testToken, ok); status != 201 {
		t.Errorf("200-character name: %d %v", status, m)
	}
	ok = with("inventory", `{"1000000000":100000000,"1":1}`)
	if status, m := h.do("POST", "/campaign", testToken, ok); status != 201 {
		t.Errorf("largest amount and count: %d %v", status, m)
	}
}

// TestHalfMadeCampaignIsRepaired: a campaign in PostgreSQL that Redis lacks
// (a create cut off between the two, or a Redis that lost its data) is
// loaded on its first open, with the persisted claims restored so nobody
// gets a second packet and the stock counts them.
func TestHalfMadeCampaignIsRepaired(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	db := testenv.Postgres(t)
	id := h.live(`{"5":3}`)
	ctx := context.Background()
	// Alice's claim reached PostgreSQL; then Redis lost everything.
	for _, q := range []string{
		`INSERT INTO claim_log (campaign_id, user_id, amount, claimed_at) VALUES ($1, 'alice', 5, now())`,
		`UPDATE campaign_inventory SET opened_count = 1 WHERE campaign_id = $1`,
	} {
		if _, err := db.Exec(ctx, q, id); err != nil {
			t.Fatal(err)
		}
	}
	k := testenv.Keys().Of(id)
	h.redis.Do(ctx, h.redis.B().Del().Key(k.Meta(), k.Stock(), k.Claims()).Build())

	if status, m := h.open(id, "alice"); status != 409 || m["amount"] != float64(5) {
		t.Errorf("alice after the rebuild: %d %v, want 409 with 5", status, m)
	}
	for _, u := range []string{"bob", "carol"} {
		if status, m := h.open(id, u); status != 200 {
			t.Errorf("%s: %d %v", u, status, m)
		}
	}
	if status, m := h.open(id, "dave"); status != 410 {
		t.Errorf("dave: %d %v, want 410 (3 packets, alice's persisted)", status, m)
	}
}

// TestStockGauges: /metrics reports the remaining stock and claims of live
// campaigns from Redis.
func TestStockGauges(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	id := h.live(`{"20":2,"5":3}`)
	h.open(id, "alice")
	status, body := h.doRaw("GET", "/metrics", "", "")
	if status != 200 {
		t.Fatal(status)
	}
	text := string(body)
	cid := fmt.Sprint(id)
	var remaining int
	for _, amount := range []string{"20", "5"} {
		var n int
		line := `rain_campaign_stock_remaining{campaign_id="` + cid + `",amount="` + amount + `"} `
		if i := strings.Index(text, line); i >= 0 {
			fmt.Sscan(text[i+len(line):], &n)
		}
		remaining += n
	}
	if remaining != 4 || !strings.Contains(text, `rain_campaign_claims{campaign_id="`+cid+`"} 1`) {
		t.Errorf("stock gauges for campaign %s: remaining %d, want 4 and 1 claim", cid, remaining)
	}
}

// TestCreateBucketsValidation: the bucket count of a create body is a
// canonical integer 1-64.
func TestCreateBucketsValidation(t *testing.T) {
	for _, in := range []string{`0`, `65`, `-1`, `4.0`, `4e0`, `"4"`, `null`, `04`, `true`, `4, "buckets": 4`} {
		body := fmt.Sprintf(`{"name":"b","start_time":"2030-01-01T00:00:00Z","end_time":"2030-01-02T00:00:00Z","inventory":{"1":1},"buckets":%s}`, in)
		if _, err := parseCreateBody([]byte(body)); err == nil {
			t.Errorf("buckets %s: accepted", in)
		}
	}
	for in, want := range map[string]int{``: 1, `,"buckets":1`: 1, `,"buckets":64`: 64, `,"buckets":12`: 12} {
		body := `{"name":"b","start_time":"2030-01-01T00:00:00Z","end_time":"2030-01-02T00:00:00Z","inventory":{"1":1}` + in + `}`
		c, err := parseCreateBody([]byte(body))
		if err != nil || c.Buckets != want {
			t.Errorf("%s: %v, buckets %d, want %d", body, err, c.Buckets, want)
		}
	}
}

// TestCreateBucketsRefusedOverHTTP: a bad bucket count is a 400 and
// creates nothing.
func TestCreateBucketsRefusedOverHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis and PostgreSQL")
	}
	h := newHarness(t, harnessOpt{})
	name := fmt.Sprintf("refused-%d", time.Now().UnixNano())
	status, m := h.do("POST", "/campaign", testToken, `{"name":"`+name+`","start_time":"2030-01-01T00:00:00Z","end_time":"2030-01-02T00:00:00Z","inventory":{"1":1},"buckets":65}`)
	if status != 400 {
		t.Fatalf("buckets 65: %d %v", status, m)
	}
	var n int
	if err := testenv.Postgres(t).QueryRow(context.Background(), `SELECT count(*) FROM campaign WHERE name = $1`, name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d campaigns named %s (%v), want none", n, name, err)
	}
}
