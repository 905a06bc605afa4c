package consumer

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Handler serves /metrics (Prometheus text) and /healthz: 200
// {"status":"OK"}, or 503 {"status":"DEGRADED","error":"..."} while health
// reports a failure (PostgreSQL writes failing, Kafka fetches failing).
// The error is the short reason only (see shortReason): addresses and
// driver messages stay in the logs.
func Handler(health func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		metrics.WritePrometheus(w, true)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(struct {
				Status string `json:"status"`
				Error  string `json:"error"`
			}{"DEGRADED", shortReason(err)})
			return
		}
		_, _ = io.WriteString(w, `{"status":"OK"}`+"\n")
	})
	return mux
}

// NewMetricsServer is the server of /metrics and /healthz: every phase of a
// request bounded, and idle connections closed, so slow or idle clients hold
// nothing for long.
func NewMetricsServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10}
}

// maxReason bounds the reason /healthz shows.
const maxReason = 96

// shortReason is the text of err before its first ": " (by the wrapping
// convention, what failed; the cause follows), at most maxReason bytes.
func shortReason(err error) string {
	s := err.Error()
	if i := strings.Index(s, ": "); i >= 0 {
		s = s[:i]
	}
	return cutText(s, maxReason)
}
