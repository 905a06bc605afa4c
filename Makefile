# Red packet rain: local development and CI entry points.
# Services and processes are started and stopped by Go (internal/dev/stack, through
# bin/dev from cmd/dev); deploy/local/install.sh only installs Debian packages.
# Service settings come from the environment: REDIS_ADDR, REDIS_MODE, PGPORT, KAFKA_PORT,
# KAFKA_REQUIRE_REAL=1, KAFKA_VERSION, KAFKA_HEAP_OPTS (see internal/dev/stack).
# REDIS_MODE=cluster: services, run, test and chaos use a local Redis Cluster (3 masters,
# 3 replicas on 127.0.0.1:7001-7006) instead of the one Redis on 6379; stop stops both.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# `make services`/`make test`: the Kafka to start when none answers on 127.0.0.1:9092:
# real|embedded|auto (auto: real Apache Kafka when it can be started, else the embedded
# kfake broker; KAFKA_REQUIRE_REAL=1 forbids the fallback).
KAFKA_MODE ?= auto
GOTEST_FLAGS ?= -race -count=1 -timeout 20m
PKGS ?= ./...
# Pinned; fetched through the Go module proxy on first use.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEV := bin/dev

.PHONY: help dev services build run test lint bench chaos torture stop fmt clean screenshots fuzz

help:
	@echo "make services  start Redis (AOF), PostgreSQL and Kafka (KAFKA_MODE=$(KAFKA_MODE)) on 127.0.0.1 where not up"
	@echo "make run       services (Kafka: KAFKA_BROKERS, else embedded), then consumer and api until Ctrl-C"
	@echo "make test      services (real Kafka where possible), go vet, go test $(GOTEST_FLAGS) $(PKGS)"
	@echo "make stop      stop the services make started (others are left alone)"
	@echo "make build     go build ./... and bin/{api,consumer,devkafka,dev}"
	@echo "make lint      go vet and staticcheck        make fmt    go fmt ./..."
	@echo "make bench     the benchmark                 make chaos  the fault-injection suite"
	@echo "make torture   faults in random order: SEED=n, SEEDS=n, SCHEDULE=file|kept, SHORT=1 (loadtest/torture)"
	@echo "make screenshots   the console's screenshots in docs/, taken by its browser test"
	@echo "make fuzz      the OpenAPI fuzzer, random seed: RAIN_FUZZ_SEED=n, FUZZ_EXAMPLES=n (default 100)"
	@echo "go test -short ./...   the pure tests only: no service needed"
	@echo "REDIS_MODE=cluster make services|run|test|chaos   the same on a local Redis Cluster (127.0.0.1:7001-7006)"

dev:
	@go build -o $(DEV) ./cmd/dev

services: dev
	@bash deploy/local/install.sh services kafka
	@$(DEV) services -kafka $(KAFKA_MODE)

build:
	go build ./...
	go build -o bin/ ./cmd/api ./cmd/consumer ./cmd/devkafka ./cmd/dev

# Ctrl-C or SIGTERM stops api and consumer; the services stay up until `make stop`.
run: dev
	@bash deploy/local/install.sh services
	@$(DEV) run

# Everything, never -short: a service or tool that is missing fails the run.
test: dev
	@bash deploy/local/install.sh
	@$(DEV) services -kafka $(KAFKA_MODE)
	@vars=$$($(DEV) env); eval "$$vars"; \
	echo "go vet $(PKGS)"; go vet $(PKGS); \
	echo "go test $(GOTEST_FLAGS) $(PKGS)"; go test $(GOTEST_FLAGS) $(PKGS)

# The OpenAPI fuzzer with a random seed and more cases than make test's
# fixed one (docs/api.md, "The fuzzer"); FUZZ_EXAMPLES per operation and phase.
FUZZ_EXAMPLES ?= 100
fuzz: dev
	@bash deploy/local/install.sh services kafka fuzz
	@$(DEV) services -kafka $(KAFKA_MODE)
	@vars=$$($(DEV) env); eval "$$vars"; \
	RAIN_FUZZ_SEED=$${RAIN_FUZZ_SEED:-random} RAIN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	go test -count=1 -timeout 60m -run TestOpenAPIFuzz -v ./deploy/deploycheck/

lint:
	go vet ./...
	go run $(STATICCHECK) ./...

bench: dev
	@bash deploy/local/install.sh services kafka bench
	go run ./loadtest/bench

# The fault-injection suite (loadtest/chaos): each scenario kills or stops a part under
# load (api, consumer, Kafka, PostgreSQL, Redis), heals it and checks that nothing was
# lost; it leaves the services up. CHAOS_SHORT=1: the short version CI runs; more
# settings in loadtest/chaos/README.md.
chaos: dev
	@$(DEV) services -kafka $(KAFKA_MODE)
	go run ./loadtest/chaos

# Faults in random order (loadtest/torture, docs/faults.md): per seed a drawn schedule of
# overlapping faults and merchant actions under load, on the torture's own Redis, Redis
# Cluster, PostgreSQL and Kafka (ports 6390, 7101-7106, 5440, 9192: never the shared ones),
# every answer judged against the final state. SEED=n (default 1; random), SEEDS=n (n seeds,
# tiers alternating; without it SEED on one Redis and on the cluster), SCHEDULE=file replays a
# schedule (SCHEDULE=kept: every kept one), SHORT=1 the short profile, KEPT=1 the kept
# schedules after the seeds, TORTURE_SHORT=1 CI's run (SHORT=1 KEPT=1); `go run
# ./loadtest/torture -h` lists the rest.
SEED ?=
SEEDS ?=
SCHEDULE ?=
SHORT ?=
KEPT ?=
TORTURE_SHORT ?=
torture: dev
	@bash deploy/local/install.sh services kafka
	SEED="$(SEED)" SEEDS="$(SEEDS)" SCHEDULE="$(SCHEDULE)" SHORT="$(SHORT)" KEPT="$(KEPT)" TORTURE_SHORT="$(TORTURE_SHORT)" go run ./loadtest/torture

# The console's screenshots (docs/console-desktop.png, docs/console-phone.png), taken by its
# browser test in headless Chromium at desktop and phone width.
screenshots: dev
	@bash deploy/local/install.sh services checks
	@$(DEV) services -kafka $(KAFKA_MODE)
	@vars=$$($(DEV) env); eval "$$vars"; \
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs go test -count=1 -run 'TestConsoleBrowser$$' ./edge/

stop: dev
	@$(DEV) stop

fmt:
	go fmt ./...

clean:
	rm -rf bin
