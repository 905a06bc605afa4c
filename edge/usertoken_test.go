package edge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	tokenSecret = []byte("0123456789abcdef0123456789abcdef")
	tokenOld    = []byte("fedcba9876543210fedcba9876543210")
	tokenNow    = time.Unix(1_900_000_000, 0)
)

func TestUserToken(t *testing.T) {
	u := newUserTokens([]string{string(tokenSecret), string(tokenOld)}, time.Hour)
	exp := tokenNow.Add(5 * time.Minute)
	good := SignUserToken(tokenSecret, 42, "alice", exp)
	if !strings.HasPrefix(good, "v1.42.1900000300.YWxpY2U.") {
		t.Fatalf("token %q", good)
	}
	if !u.verify([]byte(good), 42, []byte("alice"), tokenNow) {
		t.Fatal("a good token refused")
	}
	if !u.verify([]byte(SignUserToken(tokenOld, 42, "alice", exp)), 42, []byte("alice"), tokenNow) {
		t.Error("a token of the previous secret refused")
	}
	if !u.verify([]byte(SignUserToken(tokenSecret, 42, "红包-é", exp)), 42, []byte("红包-é"), tokenNow) {
		t.Error("a non-ASCII user id refused")
	}
	mac := good[strings.LastIndexByte(good, '.')+1:]
	flip := func(s string, i int) string {
		b := []byte(s)
		b[i] ^= 1
		return string(b)
	}
	for name, c := range map[string]struct {
		tok      string
		campaign int64
		user     string
		now      time.Time
	}{
		"another campaign":     {good, 43, "alice", tokenNow},
		"another user":         {good, 42, "bob", tokenNow},
		"user prefix":          {good, 42, "alic", tokenNow},
		"expired":              {good, 42, "alice", exp},
		"long expired":         {good, 42, "alice", exp.Add(time.Hour)},
		"beyond the max TTL":   {SignUserToken(tokenSecret, 42, "alice", tokenNow.Add(time.Hour+time.Second)), 42, "alice", tokenNow},
		"unknown secret":       {SignUserToken([]byte("another secret of 32 bytes......"), 42, "alice", exp), 42, "alice", tokenNow},
		"empty":                {"", 42, "alice", tokenNow},
		"mac flipped":          {flip(good, len(good)-5), 42, "alice", tokenNow},
		"user flipped":         {strings.Replace(good, "YWxpY2U", "YWxpY2V", 1), 42, "alice", tokenNow},
		"expiry changed":       {strings.Replace(good, "1900000300", "1900000301", 1), 42, "alice", tokenNow},
		"leading zero id":      {strings.Replace(good, "v1.42.", "v1.042.", 1), 42, "alice", tokenNow},
		"version 2":            {strings.Replace(good, "v1.", "v2.", 1), 42, "alice", tokenNow},
		"no version":           {strings.TrimPrefix(good, "v1."), 42, "alice", tokenNow},
		"mac missing":          {strings.TrimSuffix(good, "."+mac), 42, "alice", tokenNow},
		"mac padded":           {good + "=", 42, "alice", tokenNow},
		"mac std base64":       {strings.TrimSuffix(good, mac) + base64.RawStdEncoding.EncodeToString([]byte(mac)), 42, "alice", tokenNow},
		"extra part":           {strings.Replace(good, "YWxpY2U.", "YWxpY2U.x.", 1), 42, "alice", tokenNow},
		"user not canonical":   {SignUserTokenRaw(tokenSecret, "v1.42.1900000300.YWxpY2V"), 42, "alice", tokenNow},
		"user padded":          {SignUserTokenRaw(tokenSecret, "v1.42.1900000300.YWxpY2U="), 42, "alice", tokenNow},
		"negative expiry":      {SignUserTokenRaw(tokenSecret, "v1.42.-1.YWxpY2U"), 42, "alice", tokenNow},
		"expiry with a sign":   {SignUserTokenRaw(tokenSecret, "v1.42.+1900000300.YWxpY2U"), 42, "alice", tokenNow},
		"empty user":           {SignUserTokenRaw(tokenSecret, "v1.42.1900000300."), 42, "", tokenNow},
		"far too long":         {good + strings.Repeat("A", 400), 42, "alice", tokenNow},
		"dots only":            {"v1....", 42, "alice", tokenNow},
		"spaces":               {" " + good, 42, "alice", tokenNow},
		"a merchant's token":   {"test-token", 42, "alice", tokenNow},
		"expiry overflows":     {SignUserTokenRaw(tokenSecret, "v1.42.99999999999999999999.YWxpY2U"), 42, "alice", tokenNow},
		"campaign id overflow": {SignUserTokenRaw(tokenSecret, "v1.9223372036854775808.1900000300.YWxpY2U"), 42, "alice", tokenNow},
	} {
		if u.verify([]byte(c.tok), c.campaign, []byte(c.user), c.now) {
			t.Errorf("%s: %q accepted", name, c.tok)
		}
	}
	tok, alice := []byte(good), []byte("alice")
	if n := testing.AllocsPerRun(100, func() { u.verify(tok, 42, alice, tokenNow) }); n != 0 && !raceOn {
		t.Errorf("verify allocates %v times", n)
	}
	if newUserTokens(nil, time.Hour) != nil {
		t.Error("no secret is tokens off")
	}
}

// SignUserTokenRaw signs any text as the part before the MAC.
func SignUserTokenRaw(secret []byte, signed string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// FuzzUserToken: the verifier never panics, and a token it accepts is the
// one spelling SignUserToken gives for its campaign, user and expiry.
func FuzzUserToken(f *testing.F) {
	f.Add(SignUserToken(tokenSecret, 42, "alice", tokenNow.Add(time.Minute)), int64(42), "alice")
	f.Add("v1.42.1900000060.YWxpY2U.xxxx", int64(42), "alice")
	f.Add("v1...", int64(1), "")
	f.Add(strings.Repeat(".", 300), int64(1), "a")
	u := newUserTokens([]string{string(tokenSecret)}, time.Hour)
	f.Fuzz(func(t *testing.T, tok string, campaign int64, user string) {
		if !u.verify([]byte(tok), campaign, []byte(user), tokenNow) {
			return
		}
		parts := strings.Split(tok, ".")
		if len(parts) != 5 {
			t.Fatalf("accepted %q", tok)
		}
		exp, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil || SignUserToken(tokenSecret, campaign, user, time.Unix(exp, 0)) != tok {
			t.Fatalf("accepted %q, which SignUserToken does not write for campaign %d user %q", tok, campaign, user)
		}
	})
}

// BenchmarkUserTokenVerify is the identity check of one open alone.
func BenchmarkUserTokenVerify(b *testing.B) {
	u := newUserTokens([]string{string(tokenSecret)}, time.Hour)
	tok := []byte(SignUserToken(tokenSecret, 42, "user-1234567", tokenNow.Add(time.Minute)))
	user := []byte("user-1234567")
	b.ReportAllocs()
	for b.Loop() {
		if !u.verify(tok, 42, user, tokenNow) {
			b.Fatal("refused")
		}
	}
}
