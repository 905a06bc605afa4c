package main

import (
	"os"
	"strings"
	"testing"

	"github.com/redpacket/rain/internal/app/apiproc"

	"github.com/redpacket/rain/internal/config"
)

func bind(env map[string]string) (apiproc.MainConfig, *config.Set) {
	var c apiproc.MainConfig
	s := config.New(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	c.Bind(s)
	return c, s
}

func TestConfigFailsFastNamingTheVariable(t *testing.T) {
	_, s := bind(map[string]string{"RING_SIZE": "0", "REDIS_ADDR": "no-port", "PRODUCER_LINGER": "soon", "KAFKA_DLQ_TOPIC": "claim_events"})
	err := s.Err()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, name := range []string{"ADMIN_TOKEN", "RING_SIZE", "REDIS_ADDR", "PRODUCER_LINGER", "KAFKA_DLQ_TOPIC"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, s := bind(map[string]string{"ADMIN_TOKEN": "a, b", "CLAIM_MEMO_SIZE": "0", "SOLD_OUT_TTL": "0"})
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8080" || c.Kafka.Topic != "claim_events" || c.Kafka.DLQTopic != "claim_events.dlq" || c.Producer.RingSize != 65536 ||
		len(c.Server.AdminTokens) != 2 || c.Engine.ClaimMemo != 0 || c.Engine.SoldOutTTL != 0 || c.Boot.KeyPrefix != "rp" {
		t.Errorf("defaults: %+v", c)
	}
	if c, _ := bind(map[string]string{"PORT": "9000"}); c.Listen != ":9000" {
		t.Errorf("PORT=9000: listen %q", c.Listen)
	}
	if c, _ := bind(map[string]string{"PORT": "9000", "LISTEN_ADDR": "127.0.0.1:7000"}); c.Listen != "127.0.0.1:7000" {
		t.Errorf("LISTEN_ADDR: listen %q", c.Listen)
	}
}

// TestDocListsEveryVariable: docs/configuration.md's api table is exactly what
// `api -help` lists (regenerate it with the expected text below).
func TestDocListsEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, s := bind(nil)
	if err := s.CheckDoc(string(doc), "### api (`cmd/api`)"); err != nil {
		t.Error(err)
	}
}
