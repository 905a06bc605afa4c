package pipeline

import "github.com/redpacket/rain/internal/config"

// DefaultBrokers is KAFKA_BROKERS's default: the local broker that the
// development tooling starts.
const DefaultBrokers = "127.0.0.1:9092"

// KafkaConfig is where claim events go, shared by the api and the consumer.
type KafkaConfig struct {
	Brokers    []string
	Topic      string
	DLQTopic   string
	Partitions int
}

// Bind declares the Kafka variables.
func (c *KafkaConfig) Bind(s *config.Set) {
	s.List(&c.Brokers, "KAFKA_BROKERS", DefaultBrokers, "seed brokers, comma-separated")
	s.String(&c.Topic, "KAFKA_TOPIC", "claim_events", "claim events topic")
	s.String(&c.DLQTopic, "KAFKA_DLQ_TOPIC", "", "dead-letter topic (created at boot); empty: KAFKA_TOPIC + `.dlq`")
	s.Int(&c.Partitions, "KAFKA_PARTITIONS", 6, 1, 10_000, "partitions of the topics when created at boot")
	if c.DLQTopic == "" {
		c.DLQTopic = c.Topic + ".dlq"
	}
	if c.DLQTopic == c.Topic {
		s.Errorf("KAFKA_DLQ_TOPIC", "%q: want a topic other than KAFKA_TOPIC", c.DLQTopic)
	}
}
