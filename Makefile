# Red packet rain: local development and CI entry points.
# Services come from deploy/local/*.sh (Redis with AOF, PostgreSQL, Kafka); every
# variable below can be overridden from the environment or the command line.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export REDIS_ADDR ?= 127.0.0.1:6379
export POSTGRES_DSN ?= postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable
export TEST_POSTGRES_DSN ?= postgres://rain:rain@127.0.0.1:5432/rain_test?sslmode=disable
# Token for the merchant routes in `make run`.
ADMIN_TOKEN ?= dev-token
# `make services`/`make test`: real|embedded|auto (auto: real Apache Kafka when it can be
# started, else the embedded kfake broker; KAFKA_REQUIRE_REAL=1 forbids the fallback).
KAFKA_MODE ?= auto
# Port of the local broker that deploy/local/kafka.sh starts (127.0.0.1 only).
export KAFKA_PORT ?= 9092
GOTEST_FLAGS ?= -race -count=1 -timeout 20m
PKGS ?= ./...
BINS := api consumer devkafka

# `make run`: the brokers in KAFKA_BROKERS when given (nothing is started), else the
# embedded broker on 127.0.0.1:$(KAFKA_PORT) (or whatever Kafka already answers there).
ifeq ($(strip $(KAFKA_BROKERS)),)
RUN_KAFKA_MODE := embedded
RUN_KAFKA_BROKERS := 127.0.0.1:$(KAFKA_PORT)
else
RUN_KAFKA_MODE := none
RUN_KAFKA_BROKERS := $(KAFKA_BROKERS)
endif

.PHONY: help services build run test bench chaos stop fmt lint clean

help:
	@echo "make services  start Redis (AOF), PostgreSQL and Kafka (KAFKA_MODE=$(KAFKA_MODE)) locally"
	@echo "make build     go build ./... and bin/{api,consumer,devkafka}"
	@echo "make run       services (Kafka: KAFKA_BROKERS, else embedded), bin/consumer in the background, bin/api in the foreground"
	@echo "make test      services (real Kafka where possible), go vet, go test $(GOTEST_FLAGS) $(PKGS)"
	@echo "make bench     loadtest/bench.sh"
	@echo "make stop      stop the services the deploy/local scripts started"
	@echo "make fmt       go fmt ./...        make lint    go vet ./..."

services:
	@bash deploy/local/up.sh $(KAFKA_MODE)

build:
	go build ./...
	@mkdir -p bin
	@for b in $(BINS); do \
		if [ -d cmd/$$b ]; then echo "go build -o bin/$$b ./cmd/$$b"; go build -o bin/$$b ./cmd/$$b; fi; \
	done

run: build
	@KAFKA_BROKERS='$(RUN_KAFKA_BROKERS)' bash deploy/local/up.sh $(RUN_KAFKA_MODE)
	@[ -x bin/api ] || { echo "bin/api is missing (no cmd/api yet)" >&2; exit 1; }
	@export KAFKA_BROKERS='$(RUN_KAFKA_BROKERS)' ADMIN_TOKEN='$(ADMIN_TOKEN)'; \
	apid=; cpid=; \
	stop_apps() { \
		trap - INT TERM EXIT; \
		for p in $$apid $$cpid; do kill -TERM $$p 2>/dev/null || true; done; \
		for p in $$apid $$cpid; do wait $$p 2>/dev/null || true; done; \
	}; \
	trap 'stop_apps; exit 0' INT TERM; trap stop_apps EXIT; \
	echo "KAFKA_BROKERS=$$KAFKA_BROKERS REDIS_ADDR=$$REDIS_ADDR ADMIN_TOKEN=$$ADMIN_TOKEN (Ctrl-C stops api and consumer)"; \
	if [ -d cmd/consumer ] && [ -x bin/consumer ]; then \
		setsid bin/consumer & cpid=$$!; echo "consumer started (pid $$cpid)"; \
	fi; \
	setsid bin/api & apid=$$!; echo "api started (pid $$apid)"; \
	wait $$apid

test:
	@bash deploy/local/tools.sh
	@bash deploy/local/up.sh $(KAFKA_MODE)
	@kind=$$(cat .local/kafka/kind 2>/dev/null || echo unknown); \
	if [ "$$kind" = real ]; then what="Apache Kafka $$(cat .local/kafka/version 2>/dev/null)"; else what="kfake"; fi; \
	echo "Kafka for tests: $$kind ($$what at 127.0.0.1:$(KAFKA_PORT))"; \
	if [ "$${KAFKA_REQUIRE_REAL:-0}" = 1 ] && [ "$$kind" != real ]; then \
		echo "KAFKA_REQUIRE_REAL=1 but the broker is $$kind" >&2; exit 1; \
	fi; \
	export KAFKA_KIND=$$kind KAFKA_BROKERS=127.0.0.1:$(KAFKA_PORT) POSTGRES_DSN='$(TEST_POSTGRES_DSN)'; \
	echo "go vet $(PKGS)"; go vet $(PKGS); \
	echo "go test $(GOTEST_FLAGS) $(PKGS)"; go test $(GOTEST_FLAGS) $(PKGS)

bench: build
	@if [ -f loadtest/bench.sh ]; then bash loadtest/bench.sh; \
	else echo "loadtest/bench.sh is not there yet: no benchmark to run"; fi

# The fault-injection suite (loadtest/chaos, issue 6): each scenario kills or stops a part
# under load (api, consumer, Kafka, PostgreSQL, Redis), heals it and checks that nothing
# was lost. It stops and restarts the local services, and leaves them all up.
# CHAOS_SHORT=1: the short version CI runs; more settings in loadtest/chaos/README.md.
chaos:
	@bash deploy/local/up.sh $(KAFKA_MODE)
	go run ./loadtest/chaos

stop:
	@bash deploy/local/stop.sh

fmt:
	go fmt ./...

lint:
	go vet ./...

clean:
	rm -rf bin
