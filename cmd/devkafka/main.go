// Command devkafka is the local-development Kafka helper.
//
// It has two subcommands:
//
//	devkafka serve [-addr 127.0.0.1:9092] [-partitions 6] [-data DIR] [-log-level none]
//	devkafka wait  [-brokers 127.0.0.1:9092] [-timeout 60s] [-create topic:partitions,...] [-kind|-version|-q]
//
// serve runs franz-go's kfake, a Kafka-protocol broker written in Go, as a
// single broker with automatic topic creation; it is the embedded broker that
// `make run` uses when KAFKA_BROKERS is not given. wait checks that a broker
// (kfake or a real Apache Kafka) answers metadata requests from a real client,
// and can create topics once it does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redpacket/rain/pipeline"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// embeddedClusterID is the cluster ID that `devkafka serve` reports. `devkafka
// wait -kind` uses the "kfake" prefix to tell the embedded broker from a real one.
const embeddedClusterID = "kfake-devkafka"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "wait":
		err = wait(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "devkafka: unknown subcommand %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "devkafka %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  devkafka serve [-addr %[1]s] [-partitions 6] [-data DIR] [-log-level none|error|warn|info|debug]
  devkafka wait  [-brokers %[1]s] [-timeout 60s] [-create topic:partitions,...] [-kind|-version|-q]
`, pipeline.DefaultBrokers)
}

// serve runs the embedded kfake broker until SIGINT or SIGTERM.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", pipeline.DefaultBrokers, "listen address (host:port)")
	partitions := fs.Int("partitions", 6, "partitions of auto-created topics")
	dataDir := fs.String("data", "", "persist broker state in this directory (empty: in memory only)")
	logLevel := fs.String("log-level", "warn", "broker log level: none, error, warn, info, debug")
	_ = fs.Parse(args)

	_, portStr, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", *addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("-addr %q: port must be 1-65535", *addr)
	}
	if *partitions < 1 {
		return fmt.Errorf("-partitions must be at least 1, got %d", *partitions)
	}
	level, err := parseLogLevel(*logLevel)
	if err != nil {
		return err
	}

	opts := []kfake.Opt{
		kfake.Ports(port), // one broker
		// kfake always listens on 127.0.0.1; honour the host given in -addr.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, *addr) }),
		kfake.ClusterID(embeddedClusterID),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(*partitions),
		kfake.WithLogger(kfake.BasicLogger(os.Stderr, level)),
	}
	if *dataDir != "" {
		opts = append(opts, kfake.DataDir(*dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	persist := "in memory"
	if *dataDir != "" {
		persist = "data in " + *dataDir
	}
	fmt.Printf("devkafka: kfake broker listening on %s (%d partitions per auto-created topic, %s)\n",
		strings.Join(c.ListenAddrs(), ","), *partitions, persist)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	sig := <-sigs
	fmt.Printf("devkafka: %v received, shutting down\n", sig)
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-sigs:
		return errors.New("forced shutdown")
	case <-time.After(30 * time.Second):
		return errors.New("shutdown timed out")
	}
	return nil
}

func parseLogLevel(s string) (kfake.LogLevel, error) {
	switch strings.ToLower(s) {
	case "none":
		return kfake.LogLevelNone, nil
	case "error":
		return kfake.LogLevelError, nil
	case "warn":
		return kfake.LogLevelWarn, nil
	case "info":
		return kfake.LogLevelInfo, nil
	case "debug":
		return kfake.LogLevelDebug, nil
	}
	return kfake.LogLevelNone, fmt.Errorf("-log-level %q: want none, error, warn, info or debug", s)
}

// topicSpec is one entry of the -create flag.
type topicSpec struct {
	name       string
	partitions int32
}

func parseTopics(s string) ([]topicSpec, error) {
	var out []topicSpec
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, parts, ok := strings.Cut(item, ":")
		p := int64(-1) // broker default
		if ok {
			var err error
			if p, err = strconv.ParseInt(parts, 10, 32); err != nil || p < 1 {
				return nil, fmt.Errorf("-create %q: partitions must be a positive integer", item)
			}
		}
		if name == "" {
			return nil, fmt.Errorf("-create %q: empty topic name", item)
		}
		out = append(out, topicSpec{name: name, partitions: int32(p)})
	}
	return out, nil
}

// wait retries a metadata request until the broker answers or the timeout
// passes, then optionally creates topics and waits until they have leaders.
func wait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	brokers := fs.String("brokers", pipeline.DefaultBrokers, "comma-separated seed brokers")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	create := fs.String("create", "", "topics to create once ready: name:partitions,... (existing ones are kept)")
	kind := fs.Bool("kind", false, "print only 'embedded' (kfake) or 'real' once the broker answers")
	version := fs.Bool("version", false, "print only the Kafka version the broker's API versions match, e.g. 'v4.1'")
	quiet := fs.Bool("q", false, "print nothing on success")
	_ = fs.Parse(args)

	topics, err := parseTopics(*create)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.DialTimeout(2*time.Second),
		kgo.RequestRetries(1),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	start := time.Now()
	var md kadm.Metadata
	for {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		md, err = adm.BrokerMetadata(actx)
		acancel()
		if err == nil && len(md.Brokers) > 0 {
			break
		}
		if err == nil {
			err = errors.New("no brokers in metadata")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no broker answered at %s within %v: %w", *brokers, *timeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	brokerKind := "real"
	if strings.HasPrefix(md.Cluster, "kfake") {
		brokerKind = "embedded"
	}
	switch {
	case *kind:
		fmt.Println(brokerKind)
	case *version:
		fmt.Println(versionGuess(ctx, adm))
	case !*quiet:
		api := ""
		if brokerKind == "real" {
			api = ", API of Kafka " + versionGuess(ctx, adm)
		}
		fmt.Printf("devkafka: %s broker ready at %s (cluster %s, %d broker(s)%s) after %v\n",
			brokerKind, *brokers, md.Cluster, len(md.Brokers), api, time.Since(start).Round(time.Millisecond))
	}
	if len(topics) == 0 {
		return nil
	}
	return createTopics(ctx, adm, topics, *quiet || *kind || *version)
}

// versionGuess names the Kafka release whose API versions the first broker
// matches (franz-go's kversion guess), or "unknown".
func versionGuess(ctx context.Context, adm *kadm.Client) string {
	vs, err := adm.ApiVersions(ctx)
	if err != nil {
		return "unknown"
	}
	for _, v := range vs.Sorted() {
		if v.Err == nil {
			return v.VersionGuess()
		}
	}
	return "unknown"
}

func createTopics(ctx context.Context, adm *kadm.Client, topics []topicSpec, quiet bool) error {
	names := make([]string, 0, len(topics))
	for _, t := range topics {
		names = append(names, t.name)
		resp, err := adm.CreateTopic(ctx, t.partitions, -1, nil, t.name)
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists) || errors.Is(resp.Err, kerr.TopicAlreadyExists):
			if !quiet {
				fmt.Printf("devkafka: topic %s already exists\n", t.name)
			}
		case err != nil:
			return fmt.Errorf("create topic %s: %w", t.name, err)
		case resp.Err != nil:
			return fmt.Errorf("create topic %s: %w (%s)", t.name, resp.Err, resp.ErrMessage)
		default:
			if !quiet {
				fmt.Printf("devkafka: created topic %s with %d partition(s)\n", t.name, resp.NumPartitions)
			}
		}
	}
	// Creation is asynchronous in real Kafka: wait until every partition has a leader.
	for {
		details, err := adm.ListTopics(ctx, names...)
		if err == nil && topicsReady(details, names) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v not ready: %w", names, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func topicsReady(details kadm.TopicDetails, names []string) bool {
	for _, n := range names {
		d, ok := details[n]
		if !ok || d.Err != nil || len(d.Partitions) == 0 {
			return false
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}
