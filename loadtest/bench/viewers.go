package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The viewed phases measure what the merchant console's live view costs
// the open path: the open phase again, on a campaign of its own, while
// BENCH_VIEWERS clients hold its live route (GET /campaign/{id}/live, the
// stream the console reads) open and read every event. Next to the open
// phase of the same configuration and connections, the difference is the
// live view's cost (docs/benchmarks.md, "The console's live view").

// viewed runs the viewed phase of variant v at conns.
func (b *bench) viewed(ctx context.Context, v, conns int) error {
	id, err := b.createCampaign(ctx, fmt.Sprintf("viewed-v%d-%d", v+1, conns), map[string]int{"1": b.cfg.OpenPackets})
	if err != nil {
		return err
	}
	vctx, stop := context.WithCancel(ctx)
	watch, err := b.watch(vctx, id, b.cfg.Viewers)
	if err != nil {
		stop()
		return err
	}
	before := watch.events.Load()
	err = b.phase(ctx, Viewed, v, conns, id, Load{URL: b.openURL(id), Mode: "unique", Prefix: fmt.Sprintf("%sl%d-%d-", b.run, conns, v)})
	during := watch.events.Load() - before
	stop()
	watch.wg.Wait()
	if err != nil {
		return err
	}
	p := &b.res.Phases[len(b.res.Phases)-1]
	p.Viewers, p.ViewerEvents = b.cfg.Viewers, during
	logf("%d viewers read %d live events during the phase (%.1f a second each)", b.cfg.Viewers, during,
		div(float64(during), float64(b.cfg.Viewers)*p.Seconds))
	if watch.failed.Load() > 0 {
		return fmt.Errorf("viewed phase: %d of %d viewers lost their stream: %v", watch.failed.Load(), b.cfg.Viewers, watch.err.Load())
	}
	return nil
}

// watchers are the viewers of one campaign.
type watchers struct {
	wg     sync.WaitGroup
	events atomic.Int64 // live events read, by all
	failed atomic.Int64 // viewers whose stream ended before the phase did
	err    atomic.Value
}

// watch opens n streams of campaign id's live route and returns once each
// has read its first event; they read until ctx ends.
func (b *bench) watch(ctx context.Context, id int64, n int) (*watchers, error) {
	w := &watchers{}
	ready := make(chan error, n)
	url := b.base + "/campaign/" + strconv.FormatInt(id, 10) + "/live"
	for range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			first := true
			err := stream(ctx, url, b.token, func() {
				w.events.Add(1)
				if first {
					first = false
					ready <- nil
				}
			})
			if first {
				ready <- err
			}
			if ctx.Err() == nil {
				w.failed.Add(1)
				w.err.Store(fmt.Sprint(err))
			}
		}()
	}
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case err := <-ready:
			if err != nil {
				return w, fmt.Errorf("live viewer: %w", err)
			}
		case <-deadline:
			return w, fmt.Errorf("live viewers: no first event within 10 s")
		}
	}
	return w, nil
}

// stream reads url's server-sent events with token until ctx ends, calling
// onLive for each live event.
func stream(ctx context.Context, url, token string, onLive func()) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "event: live") {
			onLive()
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("GET %s: the stream ended", url)
}
