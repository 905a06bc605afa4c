package edge

import (
	"log/slog"

	"github.com/redpacket/rain/internal/config"
	"github.com/redpacket/rain/internal/ratelog"
)

// SecurityConfig bounds what hostile traffic can make the api do (README,
// "Security").
type SecurityConfig struct {
	// MaxConns caps the open connections; past it a new one gets a JSON
	// 503 and is closed.
	MaxConns int
}

// Bind declares the security variables.
func (c *SecurityConfig) Bind(s *config.Set) {
	s.Int(&c.MaxConns, "MAX_CONNS", 16_384, 1, 1<<20,
		"open connections (about 20 KiB each when busy); past it a new connection gets a JSON 503 and is closed")
}

// guard is the server's state against hostile traffic.
type guard struct {
	cfg     SecurityConfig
	failLog *slog.Logger // warnings and errors of repeating failures, rate-limited
	conns   connLimit
}

func (g *guard) init(cfg SecurityConfig, log *slog.Logger) {
	g.cfg = cfg
	g.failLog = ratelog.Logger(log, ratelog.Every)
	g.conns.max = int64(cfg.MaxConns)
}
