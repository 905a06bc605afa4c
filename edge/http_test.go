package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/redpacket/rain"
)

// TestErrorBodies: every error code has its status and SPEC body; the
// cause of an error (an address, a driver's message) never reaches the
// body; 503 and 429 carry a Retry-After of 1-3 s, not always the same.
func TestErrorBodies(t *testing.T) {
	cause := errors.New("dial tcp 10.1.2.3:6379: connection refused")
	for _, c := range []struct {
		err    error
		status int
		body   string
	}{
		{rain.Errorf(rain.EINVALID, "bad"), 400, "INVALID_REQUEST"},
		{rain.Errorf(rain.ETOOLARGE, "big"), 413, "INVALID_REQUEST"},
		{rain.Errorf(rain.EUNAUTHORIZED, "who"), 401, "UNAUTHORIZED"},
		{rain.Errorf(rain.EFORBIDDEN, "read-only"), 403, "FORBIDDEN"},
		{rain.Errorf(rain.ECONFLICT, "taken"), 409, "CONFLICT"},
		{rain.Errorf(rain.ENOTFOUND, "none"), 404, "NOT_FOUND"},
		{&rain.Error{Code: rain.EBUSY, Message: "redis unavailable", Cause: cause}, 503, "BUSY"},
		{rain.Errorf(rain.ERATELIMITED, "slow down"), 429, "RATE_LIMITED"},
		{cause, 500, "INTERNAL"},
		{fmt.Errorf("wrapped: %w", &rain.Error{Code: rain.EBUSY, Message: "x", Cause: cause}), 503, "BUSY"},
	} {
		seen := map[string]bool{}
		for range 200 {
			ctx := newCtx("GET", "/", "")
			writeError(ctx, c.err)
			var m map[string]string
			if err := json.Unmarshal(ctx.Response.Body(), &m); err != nil || ctx.Response.StatusCode() != c.status ||
				m["status"] != c.body || m["error"] == "" {
				t.Fatalf("%v: %d %s (%v)", c.err, ctx.Response.StatusCode(), ctx.Response.Body(), err)
			}
			if strings.Contains(string(ctx.Response.Body()), "10.1.2.3") {
				t.Errorf("%v: the cause leaks into the body %s", c.err, ctx.Response.Body())
			}
			seen[string(ctx.Response.Header.Peek("Retry-After"))] = true
		}
		if c.status == 503 || c.status == 429 {
			if len(seen) < 2 || seen[""] || !(seen["1"] || seen["2"] || seen["3"]) {
				t.Errorf("%d: Retry-After values %v, want jittered 1-3", c.status, seen)
			}
		} else if !seen[""] || len(seen) != 1 {
			t.Errorf("%d: Retry-After %v, want none", c.status, seen)
		}
	}
}
