package main

import (
	"strings"
	"testing"
)

func TestConfigFailsFastNamingTheVariable(t *testing.T) {
	t.Setenv("ADMIN_TOKEN", "")
	t.Setenv("RING_SIZE", "0")
	t.Setenv("REDIS_ADDR", "no-port")
	t.Setenv("PRODUCER_LINGER", "soon")
	_, err := loadConfig()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, name := range []string{"ADMIN_TOKEN", "RING_SIZE", "REDIS_ADDR", "PRODUCER_LINGER"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	for _, v := range []string{"PORT", "LISTEN_ADDR", "KAFKA_TOPIC", "KAFKA_DLQ_TOPIC", "RING_SIZE", "SOLD_OUT_TTL"} {
		t.Setenv(v, "")
	}
	t.Setenv("ADMIN_TOKEN", "a,b")
	t.Setenv("CLAIM_MEMO_SIZE", "0")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.addr != ":8080" || c.topic != "claim_events" || c.dlqTopic != "claim_events.dlq" || c.ringSize != 65536 ||
		len(c.edge.AdminTokens) != 2 || c.edge.ClaimMemo != -1 || c.edge.SoldOutTTL <= 0 {
		t.Errorf("defaults: %+v", c)
	}
}
