// Command dev runs the local development stack (internal/dev/stack):
//
//	dev services [-kafka auto|real|embedded]  start Redis, PostgreSQL and Kafka where they are not up
//	dev status                                what runs where, and who started it
//	dev stop                                  stop the services dev started (others are left alone)
//	dev env                                   the environment `make test` runs go test with
//	dev run                                   services, then the consumer and the api until Ctrl-C
//
// run starts Kafka only when KAFKA_BROKERS is unset (then the embedded
// broker, or whatever Kafka already answers on 127.0.0.1:9092), builds
// bin/api and bin/consumer, and runs them as children with their output
// on this terminal. Ctrl-C or SIGTERM stops both; the services stay up
// until `dev stop` (make stop).
//
// Settings come from the environment: REDIS_ADDR, PGPORT, KAFKA_PORT,
// KAFKA_MODE, KAFKA_REQUIRE_REAL=1, KAFKA_VERSION, KAFKA_HEAP_OPTS (see
// internal/dev/stack), and for run ADMIN_TOKEN (default dev-token), PORT
// (default 8080) and the api's and consumer's own variables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redpacket/rain/internal/dev/stack"
)

const usage = `usage: dev services [-kafka auto|real|embedded] | status | stop | env | run`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "services":
		err = services(ctx, args)
	case "status":
		err = status(ctx, os.Stdout)
	case "stop":
		err = stopServices(ctx)
	case "env":
		err = env(ctx, os.Stdout, os.Stderr)
	case "run":
		stop() // run handles the signals itself
		err = run(args)
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
	default:
		fmt.Fprintf(os.Stderr, "dev: unknown command %q\n%s\n", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "dev %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// newStack is the stack the environment describes, with the Kafka mode
// given (when not "").
func newStack(mode string) (*stack.Stack, error) {
	cfg, err := stack.FromEnv()
	if err != nil {
		return nil, err
	}
	if mode != "" {
		m, err := stack.ParseKafkaMode(mode)
		if err != nil {
			return nil, err
		}
		cfg.KafkaMode = m
	}
	return stack.New(cfg)
}

func services(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("services", flag.ContinueOnError)
	mode := fs.String("kafka", os.Getenv("KAFKA_MODE"), "Kafka to start when none answers: auto, real or embedded (default auto)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := newStack(*mode)
	if err != nil {
		return err
	}
	if err := s.Up(ctx); err != nil {
		return err
	}
	fmt.Println()
	return status(ctx, os.Stdout)
}

// status prints one line per service, then where the logs are and how to
// stop what was started here.
func status(ctx context.Context, w io.Writer) error {
	s, err := newStack("")
	if err != nil {
		return err
	}
	var down []string
	for _, st := range s.Status(ctx) {
		fmt.Fprintln(w, st)
		if !st.Up {
			down = append(down, st.Name)
			continue
		}
		if st.Log != "" {
			fmt.Fprintf(w, "         log: %s\n", st.Log)
		}
		if st.Owned && st.Stop != "" {
			fmt.Fprintf(w, "         stop: make stop (or: %s)\n", st.Stop)
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("not up: %s (start them with make services)", strings.Join(down, ", "))
	}
	return nil
}

func stopServices(ctx context.Context) error {
	s, err := newStack("")
	if err != nil {
		return err
	}
	stopped, err := s.Stop(ctx)
	if len(stopped) > 0 {
		fmt.Printf("stopped: %s\n", strings.Join(stopped, ", "))
	} else if err == nil {
		fmt.Println("nothing to stop (no service started by dev is running)")
	}
	return err
}

// env prints the test environment as shell export lines (for eval), and
// which broker the tests get on errOut. With KAFKA_REQUIRE_REAL=1 an
// embedded broker is an error.
func env(ctx context.Context, out, errOut io.Writer) error {
	s, err := newStack("")
	if err != nil {
		return err
	}
	vars, err := s.TestEnv(ctx)
	if err != nil {
		return err
	}
	kind := ""
	for _, v := range vars {
		name, value, _ := strings.Cut(v, "=")
		if name == "KAFKA_KIND" {
			kind = value
		}
		fmt.Fprintf(out, "export %s=%s\n", name, shellQuote(value))
	}
	fmt.Fprintf(errOut, "Kafka for tests: %s (%s at %s)\n", kind, s.Kafka().Describe(kind), s.Kafka().Addr())
	if os.Getenv("KAFKA_REQUIRE_REAL") == "1" && kind != stack.KindReal {
		return fmt.Errorf("KAFKA_REQUIRE_REAL=1 but the broker is %s", kind)
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// run starts the services (Kafka only when KAFKA_BROKERS is unset), builds
// and starts the consumer and the api, and stops both on SIGINT or SIGTERM,
// or when either exits by itself.
func run(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("run takes no arguments")
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-sigs; cancel() }() // a signal during start-up

	s, err := newStack(string(stack.KafkaEmbedded))
	if err != nil {
		return err
	}
	if err := s.Redis().Start(ctx); err != nil {
		return err
	}
	if err := s.Postgres().Start(ctx); err != nil {
		return err
	}
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		if err := s.Kafka().Start(ctx); err != nil {
			return err
		}
		brokers = s.Kafka().Addr()
	} else {
		fmt.Printf("KAFKA: using KAFKA_BROKERS=%s (nothing started)\n", brokers)
	}
	bins, err := s.Build(ctx, "api", "consumer")
	if err != nil {
		return err
	}
	envs := childEnv(os.Environ(), map[string]string{
		"KAFKA_BROKERS": brokers,
		"REDIS_ADDR":    s.Redis().Addr(),
		"POSTGRES_DSN":  s.Postgres().DSN("rain"),
		"ADMIN_TOKEN":   "dev-token",
	})
	apiAddr, err := probeAddr(lookup(envs, "LISTEN_ADDR", ":"+lookup(envs, "PORT", "8080")))
	if err != nil {
		return err
	}
	consumer := &stack.Proc{Name: "consumer", Path: bins["consumer"], Env: envs, Output: os.Stderr}
	api := &stack.Proc{Name: "api", Path: bins["api"], Env: envs, Output: os.Stderr, Ready: stack.TCPReady(apiAddr)}
	fmt.Printf("KAFKA_BROKERS=%s REDIS_ADDR=%s ADMIN_TOKEN=%s (Ctrl-C stops api and consumer; services stay up until make stop)\n",
		brokers, s.Redis().Addr(), lookup(envs, "ADMIN_TOKEN", ""))
	stopAll := func() {
		for _, p := range []*stack.Proc{api, consumer} {
			if p.Pid() != 0 {
				if err := p.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "dev run: %v\n", err)
				}
			}
		}
	}
	defer stopAll()
	if err := consumer.Start(); err != nil {
		return err
	}
	fmt.Printf("consumer started (pid %d)\n", consumer.Pid())
	if err := api.Start(); err != nil {
		return err
	}
	fmt.Printf("api started (pid %d)\n", api.Pid())
	if err := api.WaitReady(ctx, time.Minute); err != nil {
		return err
	}
	fmt.Printf("api ready at http://%s\n", apiAddr)

	select {
	case <-ctx.Done():
		fmt.Println("\nstopping api and consumer ...")
		stopAll()
		fmt.Println("stopped api and consumer; the services stay up (make stop stops them)")
		return nil
	case <-api.Done():
	case <-consumer.Done():
	}
	stopAll()
	return errors.New(strings.Join(append(api.Crashes(), consumer.Crashes()...), "; "))
}

// probeAddr is the loopback address that reaches a listen address
// (":8080" or "0.0.0.0:8080" → 127.0.0.1:8080).
func probeAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("api listen address %q: %w", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	addr := net.JoinHostPort(host, port)
	return addr, stack.CheckAddr(addr)
}

// childEnv is base with the defaults added where base lacks them.
func childEnv(base []string, defaults map[string]string) []string {
	out := append([]string(nil), base...)
	for name, v := range defaults {
		if lookup(base, name, "") == "" {
			out = append(out, name+"="+v)
		}
	}
	return out
}

// lookup is the value of name in env (the last one wins), or def.
func lookup(env []string, name, def string) string {
	v := def
	for _, kv := range env {
		if n, val, ok := strings.Cut(kv, "="); ok && n == name && val != "" {
			v = val
		}
	}
	return v
}
