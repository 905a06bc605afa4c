package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The identity phases measure what checking who opens costs: opens by new
// users, each with the user token the merchant's app would have signed,
// against the last api configuration of BENCH_API_ENV as it is (the api
// ignores the header: user tokens and limits off), then against the same
// configuration with USER_TOKEN_SECRET and the per-user limit set
// (identityEnv). Both send the same requests, so the ratio of the two
// opens-to-trivial ratios is the check's cost.

// identityVariant is the variant index of the api with the check on: one
// past BENCH_API_ENV's.
func (b *bench) identityVariant() int { return len(b.cfg.Variants) }

// openRate is the req/s of variant v's open phase at conns, to size token
// files by; the trivial route's when there is none.
func (b *bench) openRate(v, conns int) float64 {
	for _, kind := range []string{Open, Trivial} {
		if p := b.res.find(kind, v, conns); p != nil && p.RPS > 0 {
			return p.RPS
		}
	}
	return 100_000
}

// tokens writes the token file of campaign id for n users named
// <what><i> (new users: the campaign is new) and returns its path; the
// caller removes it.
func (b *bench) tokens(id int64, what string, n int) (string, error) {
	path := filepath.Join(b.work, fmt.Sprintf("tokens-%d.txt", id))
	t0 := time.Now()
	if err := tokenFile(path, []byte(b.secret), id, what, n, time.Now().Add(tokenTTL)); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("token file: %w", err)
	}
	logf("campaign %d: %s users' tokens signed in %s", id, thousands(float64(n)), time.Since(t0).Round(time.Millisecond))
	return path, nil
}

// signed is the phase of opens with user tokens of variant v at conns, on
// a new campaign: wrk sends each user's token whether the api checks it
// (the identity variant) or not.
func (b *bench) signed(ctx context.Context, v, conns int) error {
	id, err := b.createCampaign(ctx, fmt.Sprintf("signed-v%d-%d", v+1, conns), map[string]int{"1": b.cfg.OpenPackets})
	if err != nil {
		return err
	}
	path, err := b.tokens(id, fmt.Sprintf("signed-v%d-", v+1), tokenUsers(b.openRate(b.identityVariant()-1, conns), b.cfg.Duration))
	if err != nil {
		return err
	}
	defer os.Remove(path)
	return b.phase(ctx, Signed, v, conns, id, Load{URL: b.openURL(id), Mode: "tokens", Tokens: path})
}

// identity restarts the api with the check and limits on, warms it up
// with signed opens of a campaign of its own, then measures the trivial
// route and the signed opens at the first connections.
func (b *bench) identity(ctx context.Context) error {
	last, v, conns := len(b.cfg.Variants)-1, b.identityVariant(), b.cfg.Connections[0]
	if err := b.startAPI(ctx, fmt.Sprintf("%s with user tokens and limits on", variantText(b.cfg.Variants[last])),
		append(b.cfg.variantEnv(last), identityEnv(b.secret)...)); err != nil {
		return err
	}
	id, err := b.createCampaign(ctx, "warmup-identity", map[string]int{"1": b.cfg.OpenPackets})
	if err != nil {
		return err
	}
	path, err := b.tokens(id, "warmup-", tokenUsers(b.openRate(last, conns), b.cfg.Warmup))
	if err != nil {
		return err
	}
	defer os.Remove(path)
	logf("warm-up: %s of signed opens, user tokens checked", b.cfg.Warmup)
	w, _, err := runWrk(ctx, b.script, Load{URL: b.openURL(id), Mode: "tokens", Tokens: path,
		Threads: b.cfg.Threads, Connections: conns, Duration: b.cfg.Warmup})
	if err != nil {
		return fmt.Errorf("identity warm-up: %w", err)
	}
	if err := warmupRefused(w); err != nil {
		return err
	}
	if _, err := persisted(ctx, b.db, id, b.claims(id), time.Now(), 30*time.Second, 100*time.Millisecond); err != nil {
		return err
	}
	if err := b.phase(ctx, Trivial, v, conns, 0, Load{URL: b.base + "/healthz", Mode: "get", Prefix: "x"}); err != nil {
		return err
	}
	if err := b.signed(ctx, v, conns); err != nil {
		return err
	}
	if text, err := get(ctx, b.base+"/metrics", ""); err == nil {
		_ = os.WriteFile(filepath.Join(b.work, fmt.Sprintf("api-metrics-v%d.txt", v+1)), text, 0o644)
	}
	return nil
}

// warmupRefused fails the run when the api refused the bench's tokens
// (401) or limited its users (429) in the warm-up: the phase would
// measure refusals.
func warmupRefused(w WrkResult) error {
	if n := w.Statuses["401"] + w.Statuses["429"]; n > 0 {
		return fmt.Errorf("identity warm-up: the api answered %d of %d signed opens 401 or 429 (%s): the bench's tokens or limits are wrong",
			n, w.Requests, counts(w.Statuses))
	}
	return nil
}
