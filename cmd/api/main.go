// Command api serves the red packet rain HTTP API: campaign admin and the
// open hot path (Redis claim script → ring buffer → Kafka).
//
// Configuration is by environment; `api -help` lists every variable with
// its default and meaning (docs/configuration.md's tables are the same list).
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/redpacket/rain/internal/app/apiproc"

	"github.com/redpacket/rain/internal/app"
	"github.com/redpacket/rain/internal/config"
)

func main() {
	var cfg apiproc.MainConfig
	os.Exit(app.Main("api", os.Args[1:], os.Stderr, func(s *config.Set) { cfg.Bind(s) }, func(ctx context.Context, log *slog.Logger, _ []string) error {
		return run(ctx, cfg, log)
	}))
}

// run serves until ctx ends or the server fails, then shuts down within
// SHUTDOWN_TIMEOUT.
func run(ctx context.Context, cfg apiproc.MainConfig, log *slog.Logger) error {
	m := apiproc.NewMain(cfg, log)
	if err := m.Open(ctx); err != nil {
		return err
	}
	var err error
	select {
	case err = <-m.Done():
	case <-ctx.Done():
	}
	log.Info("shutting down: stop HTTP, drain ring, flush kafka")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Boot.ShutdownTimeout)
	defer cancel()
	_ = m.Close(sctx) // logged by Close; what Kafka lacks is the reconciler's
	return err
}
