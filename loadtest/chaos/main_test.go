package main

import (
	"testing"
	"time"

	"github.com/redpacket/rain/internal/dev/stack"
)

func TestSettings(t *testing.T) {
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	st, s := settings(env(map[string]string{"CHAOS_SHORT": "1", "CHAOS_RATE": "200"}))
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if st.Profile.Name != "short" || st.Profile.Rate != 200 || st.Profile.Duration != 20*time.Second || st.KeyPrefix != "rpchaos" {
		t.Errorf("settings = %+v", st)
	}
	if scs, _ := selected(st.Scenarios, false); len(scs) != 5 {
		t.Errorf("default scenarios: %d, want the 5 that are not optional", len(scs))
	}
	if scs, _ := selected("", true); len(scs) != 7 || !scs[0].Cluster {
		t.Errorf("default scenarios on a cluster: %d, want the 7 cluster ones", len(scs))
	}
	if _, err := selected("reshard-hot", false); err == nil {
		t.Error("a cluster scenario selected without a cluster")
	}
	if st, s := settings(env(map[string]string{"REDIS_MODE": "cluster"})); s.Err() != nil || st.RedisAddr != stack.DefaultClusterAddrs {
		t.Errorf("REDIS_MODE=cluster: %v, REDIS_ADDR %s", s.Err(), st.RedisAddr)
	}
	for name, bad := range map[string]map[string]string{
		"default key prefix":     {"CHAOS_KEY_PREFIX": "rp"},
		"unknown scenario":       {"CHAOS_SCENARIOS": "api-kill9,meteor"},
		"outage longer than run": {"CHAOS_DURATION": "10s", "CHAOS_OUTAGE": "30s"},
		"api elsewhere":          {"CHAOS_API_ADDR": "10.1.2.3:18090"},
		"PostgreSQL elsewhere":   {"POSTGRES_DSN": "postgres://rain:rain@db.example/rain"},
		"rate out of range":      {"CHAOS_RATE": "5"},
		"Redis elsewhere":        {"REDIS_ADDR": "127.0.0.1:7001,10.0.0.2:7002"},
		"unknown Redis mode":     {"REDIS_MODE": "sentinel"},
	} {
		if _, s := settings(env(bad)); s.Err() == nil {
			t.Errorf("%s (%v): want an error", name, bad)
		}
	}
}
