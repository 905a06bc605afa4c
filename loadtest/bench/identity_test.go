package main

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redpacket/rain/edge"
)

func TestWriteTokens(t *testing.T) {
	secret := []byte(strings.Repeat("k", 32))
	expiry := time.Unix(1_900_000_000, 0)
	var buf bytes.Buffer
	if err := writeTokens(&buf, secret, 42, "run-t1-", 1001, expiry); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	n, width := 0, -1
	for sc.Scan() {
		line := sc.Text()
		if width < 0 {
			width = len(line)
		} else if len(line) != width {
			t.Fatalf("line %d is %d bytes, the first %d: bench.lua finds lines by offset", n, len(line), width)
		}
		user, tok, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("line %d %q: no space", n, line)
		}
		if want := edge.SignUserToken(secret, 42, user, expiry); tok != want {
			t.Fatalf("line %d: token %q, want %q", n, tok, want)
		}
		if n == 0 && user != "run-t1-0000" || n == 1000 && user != "run-t1-1000" {
			t.Errorf("line %d: user %q", n, user)
		}
		n++
	}
	if n != 1001 {
		t.Errorf("%d lines, want 1001", n)
	}
	if err := writeTokens(&buf, secret, 42, "x", 0, expiry); err == nil {
		t.Error("no users: want an error")
	}
	buf.Reset()
	if err := writeTokens(&buf, secret, 42, "x", 1, expiry); err != nil || !strings.HasPrefix(buf.String(), "x0 v1.42.1900000000.") {
		t.Errorf("one user: %q, %v", buf.String(), err)
	}
}

func TestTokenFileError(t *testing.T) {
	if err := tokenFile(t.TempDir()+"/no/such/dir/tokens.txt", []byte("k"), 1, "x", 1, time.Now()); err == nil {
		t.Error("a file that cannot be created: want an error")
	}
}

func TestTokenUsers(t *testing.T) {
	if n := tokenUsers(40_000, 15*time.Second); n != 40_000*16*3/2+1000 {
		t.Errorf("tokenUsers(40k/s, 15 s) = %d", n)
	}
	if n := tokenUsers(1e9, time.Hour); n != maxSignedUsers {
		t.Errorf("tokenUsers of a huge rate = %d, want the cap %d", n, maxSignedUsers)
	}
	if n := tokenUsers(0, time.Second); n != 1000 {
		t.Errorf("tokenUsers(0) = %d, want 1000", n)
	}
}

func TestIdentityEnv(t *testing.T) {
	env := strings.Join(identityEnv("s3cret"), " ")
	for _, want := range []string{"USER_TOKEN_SECRET=s3cret", "RATE_LIMIT_USER=5", "RATE_LIMIT_IP=0", "USER_TOKEN_MAX_TTL=1h0m0s"} {
		if !strings.Contains(env, want) {
			t.Errorf("identityEnv lacks %s: %s", want, env)
		}
	}
	if strings.Contains(identityText(), "s3cret") {
		t.Error("the report shows the key")
	}
	if tokenTTL >= tokenMaxTTL {
		t.Error("the bench's tokens outlive USER_TOKEN_MAX_TTL: the api would refuse them")
	}
	s, err := newSecret()
	if err != nil || len(s) < 32 {
		t.Errorf("newSecret = %q, %v: want at least 32 bytes", s, err)
	}
}

func TestWarmupRefused(t *testing.T) {
	if err := warmupRefused(WrkResult{Requests: 10, Statuses: map[string]int64{"200": 10}}); err != nil {
		t.Errorf("all 200: %v", err)
	}
	for _, s := range []string{"401", "429"} {
		if err := warmupRefused(WrkResult{Requests: 10, Statuses: map[string]int64{"200": 9, s: 1}}); err == nil {
			t.Errorf("a %s: want an error", s)
		}
	}
}

func TestTokensArgs(t *testing.T) {
	l := Load{URL: "http://127.0.0.1:1/campaign/7/open", Mode: "tokens", Tokens: "/tmp/t.txt", Threads: 2, Connections: 64, Duration: 3 * time.Second}
	got := strings.Join(l.args("s.lua"), " ")
	if want := "-t2 -c64 -d3s --timeout 2s --latency -s s.lua http://127.0.0.1:1/campaign/7/open -- tokens /tmp/t.txt 2"; got != want {
		t.Errorf("args = %q, want %q", got, want)
	}
}

// identityResult is a run of two batching configurations and the identity
// one: signed opens at 0.5 × trivial with the check off, on at onRatio.
func identityResult(t *testing.T, onRatio float64) *Result {
	t.Helper()
	r := &Result{Run: Run{Variants: []string{"CLAIM_BATCH=false", "CLAIM_BATCH=true"}, Identity: identityText(), FloodClaims: 1_000_000}}
	ok := `{"200":1000000}`
	onReq := int(onRatio * 800_000)
	r.Phases = []Phase{
		phase(t, Trivial, 0, 64, wrkLine(1_000_000, 2000, ok)),
		phase(t, Open, 0, 64, wrkLine(300_000, 12000, `{"200":300000}`)),
		phase(t, Trivial, 1, 64, wrkLine(1_000_000, 2000, ok)),
		phase(t, Open, 1, 64, wrkLine(400_000, 9000, `{"200":400000}`)),
		phase(t, Signed, 1, 64, wrkLine(500_000, 9000, `{"200":500000}`)),
		phase(t, Trivial, 2, 64, wrkLine(800_000, 2000, ok)),
		phase(t, Signed, 2, 64, wrkLine(onReq, 9500, `{"200":`+strconv.Itoa(onReq)+`}`)),
	}
	r.Phases[1].RedisCPUus = 300_000 * 25
	r.Phases[3].RedisCPUus = 400_000 * 5
	r.evaluate()
	return r
}

func TestIdentityTarget(t *testing.T) {
	r := identityResult(t, 0.47) // 0.47 / 0.5: the check costs 6 %
	off, on, ratioOff, ratioOn, cost, ok := r.IdentityCost()
	if !ok || off.Variant != 1 || on.Variant != 2 || ratioOff != 0.5 || ratioOn != 0.47 || cost < 0.0599 || cost > 0.0601 {
		t.Errorf("IdentityCost = %v %v %v %v %v %v", off, on, ratioOff, ratioOn, cost, ok)
	}
	if got := met(t, r, "identity check"); got == nil || !*got {
		t.Errorf("6 %% cost: met = %v, want met", got)
	}
	if got := met(t, r, "Redis CPU per 200, v2 ≤ 0.4 × v1, at 64"); got == nil || !*got {
		t.Errorf("5 / 25 µs: met = %v", got)
	}
	if got := met(t, r, "signed@64 v3: ≥ 95 %"); got != nil {
		t.Errorf("no persistence measured: met = %v, want not measured", *got)
	}
	for _, tg := range r.Targets {
		if strings.Contains(tg.Name, "(v3)") {
			t.Errorf("target %q: the identity configuration has no targets of its own but the check's", tg.Name)
		}
	}
	md := r.Markdown()
	for _, want := range []string{
		"- v3: v2's api with user tokens and limits on: `USER_TOKEN_SECRET=<a random 32-byte key of the run>",
		"| signed@64 v2 | off | 50,000 | 100,000 | 0.500 |",
		"| signed@64 v3 | on | 37,600 | 80,000 | 0.470 |",
		"On / off: 0.470 × trivial / 0.500 × trivial = 0.940: the check costs 6.0 % of the open rate (target ≤ 10 %).",
		"| open@64 v1 | `CLAIM_BATCH=false` | 30,000 | 0.300 | 0.50 | 12.00 | 20.00 | 25.0 | 1.00 |",
		"| open@64 v2 | `CLAIM_BATCH=true` | 40,000 | 0.400 | 0.50 | 9.00 | 20.00 | 5.0 | 0.20 |",
		"| trivial@64 v3 | trivial route |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}

	r = identityResult(t, 0.4) // 0.4 / 0.5: 20 %
	if got := met(t, r, "identity check"); got == nil || *got {
		t.Errorf("20 %% cost: met = %v, want missed", got)
	}
	r = identityResult(t, 0.55)
	if got := met(t, r, "identity check"); got == nil || !*got || !strings.Contains(r.Markdown(), "no cost measured (10.0 % faster") {
		t.Errorf("faster with the check on: met = %v\n%s", got, r.Markdown())
	}
	r.Phases = r.Phases[:5] // the identity configuration did not run
	r.evaluate()
	if got := met(t, r, "identity check"); got != nil {
		t.Errorf("not run: met = %v, want not measured", *got)
	}
	if strings.Contains(r.Markdown(), "On / off") {
		t.Error("not run: no comparison")
	}
}

func TestReusedUsers(t *testing.T) {
	w, err := parseWrk(strings.Replace(wrkLine(1000, 1, `{"200":900,"409":100}`), `}}`, `},"reused":100}`, 1))
	if err != nil {
		t.Fatal(err)
	}
	if w.Reused != 100 {
		t.Fatalf("reused = %d, want 100", w.Reused)
	}
	r := &Result{Run: Run{Variants: []string{""}, Identity: identityText()}}
	r.Phases = []Phase{newPhase(Signed, 1, 64, 1, w)}
	r.evaluate()
	if got := met(t, r, "(sanity)"); got == nil || *got {
		t.Errorf("409s of reused users: met = %v, want missed", got)
	}
	if !strings.Contains(r.Markdown(), "signed@64 v2: 100 not 200 (100 repeated a user: the token file ran out)") {
		t.Errorf("the sanity target does not name the cause:\n%s", r.Markdown())
	}
}

func TestConfigDefaults(t *testing.T) {
	c, s := loadConfig(func(string) (string, bool) { return "", false })
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Variants, ";") != "CLAIM_BATCH=false;CLAIM_BATCH=true" || !c.Identity {
		t.Errorf("defaults: variants %q, identity %v: want batching off then on, and the identity phases", c.Variants, c.Identity)
	}
	c, s = loadConfig(func(k string) (string, bool) {
		return map[string]string{"BENCH_IDENTITY": "false", "BENCH_API_ENV": "CLAIM_BATCH=true"}[k], true
	})
	if err := s.Err(); err != nil || c.Identity || len(c.Variants) != 1 {
		t.Errorf("one configuration, no identity phases: %+v, %v", c, err)
	}
}
