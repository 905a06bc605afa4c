package harness

import (
	"path/filepath"

	"github.com/redpacket/rain/internal/dev/stack"
)

// Procs are the settings the api and consumer processes of a fault run
// share: its own Kafka topic and consumer group, its own Redis key prefix,
// timings that let a fault show within seconds.
type Procs struct {
	APIBin, ConsumerBin string
	RedisAddr           string
	PostgresDSN         string
	Brokers             string
	Topic               string // KAFKA_TOPIC, and the consumer's KAFKA_GROUP
	KeyPrefix           string // REDIS_KEY_PREFIX: the run's own namespace
	Token               string // ADMIN_TOKEN
	Ack                 string // REDIS_ACK: master, replica, or "" (the api's default, auto)
	Dir                 string // the logs: <Dir>/<name>.log
}

func (p *Procs) common() []string {
	env := ChildEnv("REDIS_ADDR="+p.RedisAddr,
		"POSTGRES_DSN="+p.PostgresDSN, "REDIS_KEY_PREFIX="+p.KeyPrefix, "KAFKA_BROKERS="+p.Brokers, "KAFKA_TOPIC="+p.Topic,
		"SHUTDOWN_TIMEOUT=10s", "BOOT_TIMEOUT=90s")
	if p.Ack != "" {
		env = append(env, "REDIS_ACK="+p.Ack)
	}
	return env
}

// API is an api named name listening on addr, ready when /readyz answers
// 200. Its ring and producer buffer are small, so that a Kafka outage fills
// them and opens get the designed 503 within seconds.
func (p *Procs) API(name, addr string, extra ...string) *stack.Proc {
	env := append(p.common(), "LISTEN_ADDR="+addr, "ADMIN_TOKEN="+p.Token, "RING_SIZE=2048", "PRODUCER_MAX_BUFFERED=4096")
	return &stack.Proc{Name: name, Path: p.APIBin, Log: filepath.Join(p.Dir, name+".log"),
		Ready: stack.HTTPReady("http://" + addr + "/readyz"), Env: append(env, extra...)}
}

// Consumer is the consumer, serving /metrics and /healthz on metrics. Its
// reconciler closes gaps within a checker's wait, and a killed member's
// partitions move on quickly (the broker's minimum session).
func (p *Procs) Consumer(metrics string, extra ...string) *stack.Proc {
	env := append(p.common(), "METRICS_ADDR="+metrics, "KAFKA_GROUP="+p.Topic,
		"RECONCILE_INTERVAL=2s", "RECONCILE_GRACE=3s", "KAFKA_SESSION_TIMEOUT=6s", "PG_RETRY_MAX=1s")
	return &stack.Proc{Name: "consumer", Path: p.ConsumerBin, Log: filepath.Join(p.Dir, "consumer.log"),
		Ready: stack.HTTPReady("http://" + metrics + "/healthz"), Env: append(env, extra...)}
}
