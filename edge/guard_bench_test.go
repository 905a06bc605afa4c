package edge

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkOpenHandlerTokens is BenchmarkOpenHandler with user tokens on:
// each open carries a token signed ahead of time for its new user, so the
// difference is what checking identity costs an open. WithLimits adds the
// per-user and per-IP limits (a new user's bucket each time: their worst case).
func BenchmarkOpenHandlerTokens(b *testing.B) {
	benchOpenGuarded(b, func(c *Config) { c.Security.UserTokenSecrets = []string{userSecret} })
}

func BenchmarkOpenHandlerTokensWithLimits(b *testing.B) {
	benchOpenGuarded(b, func(c *Config) {
		c.Security.UserTokenSecrets = []string{userSecret}
		c.Security.RateLimitUser, c.Security.RateLimitIP, c.Security.RateLimitBurst = 5, 1_000_000, 2
	})
}

func benchOpenGuarded(b *testing.B, set func(*Config)) {
	h, id := newBenchServer(b, set)
	handler := h.srv.Handler()
	path := "/campaign/" + strconv.FormatInt(id, 10) + "/open"
	type open struct{ body, auth []byte }
	opens := make([]open, 1<<14)
	sign := func() {
		exp := time.Now().Add(time.Hour)
		for i := range opens {
			user := "bench-" + strconv.FormatInt(benchUser.Add(1), 10)
			opens[i] = open{[]byte(`{"user_id":"` + user + `"}`), []byte("Bearer " + SignUserToken([]byte(userSecret), id, user, exp))}
		}
	}
	sign()
	ctx := newCtx("POST", path, "")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(opens) {
			b.StopTimer()
			sign()
			i = 0
			b.StartTimer()
		}
		ctx.Request.SetBody(opens[i].body)
		ctx.Request.Header.SetBytesV("Authorization", opens[i].auth)
		ctx.Response.Reset()
		handler(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		i++
	}
}
