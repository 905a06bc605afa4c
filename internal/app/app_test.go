package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/redpacket/rain/internal/config"
)

func bind(env map[string]string) (Config, error) {
	var c Config
	s := config.New(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	c.Bind(s)
	return c, s.Err()
}

// TestRedisAddr: one address (one Redis, or a cluster node) or a
// comma-separated list of cluster nodes; every entry must be host:port.
func TestRedisAddr(t *testing.T) {
	for v, want := range map[string][]string{
		"":           {"127.0.0.1:6379"},
		"redis:6379": {"redis:6379"},
		"127.0.0.1:7001, 127.0.0.1:7002,127.0.0.1:7003": {"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"},
		"[::1]:7001,": {"[::1]:7001"},
	} {
		c, err := bind(map[string]string{"REDIS_ADDR": v})
		if err != nil || !slices.Equal(c.RedisAddr, want) {
			t.Errorf("REDIS_ADDR=%q: %q, %v; want %q", v, c.RedisAddr, err, want)
		}
		if o := c.RedisOptions(); !slices.Equal(o.InitAddress, want) || o.ClusterOption.MaxMovedRedirections != MaxRedirects || o.DialCtxFn == nil {
			t.Errorf("REDIS_ADDR=%q: options %+v", v, o)
		}
	}
	for _, v := range []string{"no-port", "a:1,b", "a:0", "a:65536", "a:x", ","} {
		if _, err := bind(map[string]string{"REDIS_ADDR": v}); err == nil || !strings.Contains(err.Error(), "REDIS_ADDR") {
			t.Errorf("REDIS_ADDR=%q: %v, want an error naming REDIS_ADDR", v, err)
		}
	}
}

// TestKeyPrefixWithoutBraces: a brace in the prefix would make it the hash
// tag, and put every campaign on one cluster slot.
func TestKeyPrefixWithoutBraces(t *testing.T) {
	for _, v := range []string{"rp{", "a}b", "{x}"} {
		if _, err := bind(map[string]string{"REDIS_KEY_PREFIX": v}); err == nil || !strings.Contains(err.Error(), "REDIS_KEY_PREFIX") {
			t.Errorf("REDIS_KEY_PREFIX=%q: %v, want an error", v, err)
		}
	}
	if c, err := bind(map[string]string{"REDIS_KEY_PREFIX": "rp-eu:1"}); err != nil || c.KeyPrefix != "rp-eu:1" {
		t.Errorf("rp-eu:1: %q %v", c.KeyPrefix, err)
	}
}

func TestMultiplex(t *testing.T) {
	for conns, want := range map[int]int{0: -1, 1: -1, 2: 1, 3: 1, 4: 2, 64: 6} {
		if got := multiplex(conns); got != want {
			t.Errorf("multiplex(%d) = %d, want %d", conns, got, want)
		}
	}
}
