package consumer

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/redpacket/rain/pipeline"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestCutText(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", 5000), strings.Repeat("红包", 1000), "a" + strings.Repeat("€", 400)} {
		got := cutText(s, dlqMaxError)
		switch {
		case len(got) > dlqMaxError:
			t.Errorf("%d bytes cut to %d, want at most %d", len(s), len(got), dlqMaxError)
		case !utf8.ValidString(got):
			t.Errorf("%d bytes cut inside a rune", len(s))
		case len(s) <= dlqMaxError && got != s:
			t.Errorf("%q changed to %q", s, got)
		case len(s) > dlqMaxError && (!strings.HasSuffix(got, "…") || !strings.HasPrefix(s, strings.TrimSuffix(got, "…"))):
			t.Errorf("cut of %d bytes is not a marked prefix: %.40q", len(s), got)
		}
	}
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// TestDLQRecordFit: each step carries less of a hostile record, and the
// last is small whatever the record was.
func TestDLQRecordFit(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 1<<20)
	rec := &kgo.Record{Topic: "claim_events", Partition: 3, Offset: 42, Key: big, Value: big,
		Headers: []kgo.RecordHeader{{Key: "h", Value: big}}}
	// A decode error quoting a huge input: its header is cut.
	_, err := pipeline.DecodeEvent([]byte(`{"v":1,"campaign_id":1,"user_id":"u","amount":1,"claimed_at":"` + string(big) + `"}`))
	d := newDeadLetter(rec, decodeReason(err), errors.New(string(big)+err.Error()))
	if len(d.err) > dlqMaxError || d.reason != pipeline.ReasonInvalid {
		t.Fatalf("dead letter: %d-byte error, reason %s", len(d.err), d.reason)
	}

	whole := dlqRecord("dlq", d, dlqWhole)
	if !bytes.Equal(whole.Value, big) || !bytes.Equal(whole.Key, big) || len(whole.Headers) != 6 || headers(whole)[HeaderDLQTruncated] != "" {
		t.Errorf("whole: not the record as read")
	}
	cut := dlqRecord("dlq", d, dlqCut)
	if len(cut.Value) != dlqMaxValue || len(cut.Key) != dlqMaxKey || headers(cut)["h"] != "" || headers(cut)[HeaderDLQTruncated] != "cut" {
		t.Errorf("cut: key %d, value %d bytes, headers %d", len(cut.Key), len(cut.Value), len(cut.Headers))
	}
	dropped := dlqRecord("dlq", d, dlqDropped)
	h := headers(dropped)
	if dropped.Key != nil || dropped.Value != nil || recordSize(dropped) > 2<<10 || h[HeaderDLQTruncated] != "dropped" {
		t.Errorf("dropped: %d bytes, headers %v", recordSize(dropped), len(h))
	}
	for _, r := range []*kgo.Record{whole, cut, dropped} {
		h := headers(r)
		if h[HeaderDLQTopic] != "claim_events" || h[HeaderDLQPartition] != "3" || h[HeaderDLQOffset] != "42" ||
			h[HeaderDLQReason] != pipeline.ReasonInvalid || len(h[HeaderDLQError]) > dlqMaxError || h[HeaderDLQError] == "" {
			t.Errorf("coordinates lost: topic %q partition %q offset %q reason %q error %d bytes", h[HeaderDLQTopic],
				h[HeaderDLQPartition], h[HeaderDLQOffset], h[HeaderDLQReason], len(h[HeaderDLQError]))
		}
	}

	// Small original headers survive a cut.
	rec.Headers = []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}}
	if got := headers(dlqRecord("dlq", d, dlqCut))["trace"]; got != "abc" {
		t.Errorf("cut dropped a small header: %q", got)
	}
}

// TestHealthzShortReason: /healthz names what fails, never the cause's
// addresses or driver text.
func TestHealthzShortReason(t *testing.T) {
	health := errors.New("postgres writes failing since 2025-01-01T00:00:00Z: failed to connect to `user=rain database=rain`: 10.1.2.3:5432: dial error: connection refused")
	srv := httptest.NewServer(Handler(func() error { return health }))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `{"status":"DEGRADED","error":"postgres writes failing since 2025-01-01T00:00:00Z"}`
	if resp.StatusCode != 503 || strings.TrimSpace(string(body)) != want {
		t.Errorf("got %d %s, want 503 %s", resp.StatusCode, body, want)
	}
	health = errors.New(strings.Repeat("x", 1000))
	if got := shortReason(health); len(got) > maxReason {
		t.Errorf("reason of %d bytes", len(got))
	}
}

// TestMetricsServerTimeouts: no phase of a request, and no idle connection,
// is held without limit.
func TestMetricsServerTimeouts(t *testing.T) {
	s := NewMetricsServer(http.NotFoundHandler())
	if s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || s.MaxHeaderBytes <= 0 {
		t.Errorf("unbounded: read header %v, read %v, write %v, idle %v, header bytes %d",
			s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes)
	}
}
