package main

import (
	"bytes"
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/redpacket/rain/internal/dev/stack"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"a": "'a'", "": "''", "it's": `'it'\''s'`, "$HOME x": "'$HOME x'"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
		if out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(in)).Output(); err != nil || string(out) != in {
			t.Errorf("sh reads %s back as %q (%v), want %q", shellQuote(in), out, err, in)
		}
	}
}

func TestChildEnv(t *testing.T) {
	base := []string{"PATH=/bin", "ADMIN_TOKEN=mine", "PORT="}
	got := childEnv(base, map[string]string{"ADMIN_TOKEN": "dev-token", "KAFKA_BROKERS": "127.0.0.1:9092", "PORT": "8080"})
	if lookup(got, "ADMIN_TOKEN", "") != "mine" || lookup(got, "KAFKA_BROKERS", "") != "127.0.0.1:9092" || lookup(got, "PORT", "") != "8080" {
		t.Errorf("childEnv = %v", got)
	}
	if !slices.Equal(got[:3], base) {
		t.Errorf("childEnv changed the base: %v", got)
	}
}

func TestProbeAddr(t *testing.T) {
	for listen, want := range map[string]string{":8080": "127.0.0.1:8080", "0.0.0.0:9000": "127.0.0.1:9000",
		"[::]:81": "127.0.0.1:81", "127.0.0.2:82": "127.0.0.2:82", "[::1]:83": "[::1]:83"} {
		if got, err := probeAddr(listen); err != nil || got != want {
			t.Errorf("probeAddr(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	for _, bad := range []string{"8080", "10.0.0.1:8080", ":x"} {
		if _, err := probeAddr(bad); err == nil {
			t.Errorf("probeAddr(%q): want an error", bad)
		}
	}
}

func TestRunTakesNoArguments(t *testing.T) {
	if err := run([]string{"x"}); err == nil {
		t.Error("run x: want an error")
	}
}

func TestNewStackRefusesBadMode(t *testing.T) {
	if _, err := newStack("cloud"); err == nil {
		t.Error("mode cloud: want an error")
	}
	t.Setenv("REDIS_ADDR", "10.0.0.1:6379")
	if _, err := newStack(""); err == nil {
		t.Error("a non-loopback REDIS_ADDR: want an error")
	}
}

// TestEnv runs an embedded broker of its own (state in a temporary
// directory) and checks what env prints, and that KAFKA_REQUIRE_REAL=1
// refuses that broker.
func TestEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the go command (builds and runs cmd/devkafka)")
	}
	addr, err := stack.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s, err := stack.New(stack.Config{KafkaAddr: addr, KafkaMode: stack.KafkaEmbedded, State: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Kafka().Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Kafka().Stop(ctx) })
	_, port, _ := strings.Cut(addr, ":")
	t.Setenv("KAFKA_PORT", port)
	t.Setenv("KAFKA_REQUIRE_REAL", "")
	var out, errOut bytes.Buffer
	if err := env(ctx, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"export KAFKA_KIND='embedded'\n", "export KAFKA_BROKERS='" + addr + "'\n",
		"export POSTGRES_DSN='postgres://rain:rain@127.0.0.1:5432/rain_test?sslmode=disable'\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("env lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "Kafka for tests: embedded (kfake at "+addr+")") {
		t.Errorf("env says %q", errOut.String())
	}
	t.Setenv("KAFKA_REQUIRE_REAL", "1")
	if err := env(ctx, &out, &errOut); err == nil || !strings.Contains(err.Error(), "KAFKA_REQUIRE_REAL=1 but the broker is embedded") {
		t.Errorf("env with KAFKA_REQUIRE_REAL=1 and an embedded broker: %v", err)
	}
}
