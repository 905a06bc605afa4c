#!/usr/bin/env bash
# make bench: one reproducible benchmark run of the api on this machine (SPEC.md,
# "Performance"; issue 5). Everything is on 127.0.0.1 and bounded in time.
#
#   1. builds bin/api, bin/consumer (when cmd/consumer builds) and the report helper;
#   2. starts the local services if needed (deploy/local/up.sh), then its own api on
#      127.0.0.1:$BENCH_PORT and consumer, with a fresh Kafka topic and consumer group;
#   3. creates its campaigns: (A) large enough never to sell out, (B) a few packets,
#      sold out by a short warm-up, (C) for a fixed set of users who all opened it
#      during the warm-up, (W) a warm-up campaign;
#   4. measures with wrk, one phase after the other, each BENCH_DURATION long:
#        (a) GET /healthz, the trivial route of the same server (its ceiling)
#        (b) opens of (A) by unique users, consumer running; then how many of its
#            claims were in PostgreSQL when the load stopped and how long until all were
#        (c) opens of (B) by new users: the flood after sell-out (410)
#        (d) opens of (C) by its users again: the duplicate storm (409)
#   5. writes loadtest/results/bench-<UTC time>.json and .md (logs and raw wrk output in
#      loadtest/results/bench-<UTC time>/) and prints the Markdown table;
#   6. stops the api and consumer it started, deletes its campaigns (PostgreSQL rows and
#      Redis keys), Kafka topics and consumer group; the shared services keep running.
#
# Settings (environment):
#   BENCH_DURATION=15s  BENCH_CONNECTIONS=64  BENCH_THREADS=2  wrk, per phase
#   BENCH_WARMUP=2s            warm-up of the open path on (W); sells out (B), opens (C)
#   BENCH_PORT=18080  BENCH_METRICS_PORT=19091   api and consumer metrics ports
#   BENCH_DUP_USERS=64  BENCH_SOLDOUT_PACKETS=100  BENCH_OPEN_PACKETS=50000000
#   BENCH_PERSIST_TIMEOUT=60s  how long to wait for (b)'s claims in PostgreSQL
#   BENCH_KAFKA_MODE=auto      deploy/local/up.sh mode (real|embedded|auto)
#   BENCH_KEEP=1               keep the campaigns, claims and topics for inspection
#   BENCH_STRICT=1             exit 1 when a target of issue 5 is missed
#   BENCH_PPROF=1              the api serves pprof on 127.0.0.1:$BENCH_PPROF_PORT (16060;
#                              PPROF_ADDR); CPU and alloc profiles of phases (b), (c), (d)
#                              go to the run directory (the numbers include the profiler's cost)
#   REDIS_ADDR, POSTGRES_DSN, KAFKA_BROKERS: must be on 127.0.0.1 / localhost.
#   RING_SIZE, MAX_INFLIGHT, ... of the api and BATCH_SIZE, ... of the consumer pass through
#   from the environment. The consumer's reconciler is off (RECONCILE_INTERVAL=0) unless
#   RECONCILE_INTERVAL is set: a pass in the middle of a phase would make runs differ, and
#   (b)'s persistence is the consumer's alone.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-15s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
WARMUP=${BENCH_WARMUP:-2s}
API_PORT=${BENCH_PORT:-18080}
METRICS_PORT=${BENCH_METRICS_PORT:-19091}
DUP_USERS=${BENCH_DUP_USERS:-64}
SOLDOUT_PACKETS=${BENCH_SOLDOUT_PACKETS:-100}
OPEN_PACKETS=${BENCH_OPEN_PACKETS:-50000000}
PERSIST_TIMEOUT=${BENCH_PERSIST_TIMEOUT:-60s}
KAFKA_MODE=${BENCH_KAFKA_MODE:-auto}
KEEP=${BENCH_KEEP:-0}
PPROF=${BENCH_PPROF:-0}
PPROF_PORT=${BENCH_PPROF_PORT:-16060}
export REDIS_ADDR=${REDIS_ADDR:-127.0.0.1:6379}
export POSTGRES_DSN=${POSTGRES_DSN:-postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT:-9092}}
POSTGRES_PORT=5432

die() {
	echo "bench: $*" >&2
	exit 1
}
log() { echo "bench: $*"; }

# --- refuse anything but loopback -------------------------------------------------------
is_loopback() { case "$1" in 127.0.0.1 | localhost) return 0 ;; *) return 1 ;; esac }
is_loopback "${REDIS_ADDR%:*}" || die "REDIS_ADDR=$REDIS_ADDR is not on 127.0.0.1"
if ! [[ $POSTGRES_DSN =~ ^postgres(ql)?://[^@/]*@([^:/?]+)(:([0-9]+))? ]] || ! is_loopback "${BASH_REMATCH[2]}"; then
	die "POSTGRES_DSN must be a postgres:// URL on 127.0.0.1"
fi
POSTGRES_PORT=${BASH_REMATCH[4]:-5432}
IFS=, read -ra brokers <<<"$KAFKA_BROKERS"
for b in "${brokers[@]}"; do is_loopback "${b%:*}" || die "KAFKA_BROKERS=$KAFKA_BROKERS is not on 127.0.0.1"; done

# seconds turns a wrk duration (15, 15s, 2m, 1h) into whole seconds.
seconds() {
	[[ $1 =~ ^([0-9]+)([smh]?)$ ]] || die "bad duration $1 (use e.g. 15s or 1m)"
	case "${BASH_REMATCH[2]}" in m) echo $((BASH_REMATCH[1] * 60)) ;; h) echo $((BASH_REMATCH[1] * 3600)) ;; *) echo "${BASH_REMATCH[1]}" ;; esac
}
DURATION_S=$(seconds "$DURATION")
WARMUP_S=$(seconds "$WARMUP")
seconds "$PERSIST_TIMEOUT" >/dev/null
for v in CONNECTIONS THREADS API_PORT METRICS_PORT PPROF_PORT DUP_USERS SOLDOUT_PACKETS OPEN_PACKETS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v} is not a positive integer"
done
((CONNECTIONS >= THREADS)) || die "BENCH_CONNECTIONS must be at least BENCH_THREADS"
for tool in wrk curl jq psql redis-cli go ss; do
	command -v $tool >/dev/null || die "$tool is not installed"
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN=bench_$(date -u +%Y%m%d%H%M%S)_$$ # topic, group and user id prefix of this run
TOPIC=$RUN
GROUP=$RUN
TOKEN=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
BASE=http://127.0.0.1:$API_PORT
RESULTS=loadtest/results
WORK=$RESULTS/bench-$STAMP
mkdir -p "$WORK"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

API_PID=
CONSUMER_PID=
PERSIST_PID=
CAMPAIGNS=() # ours, Redis state included
SKIPPED=()   # created but their id had another database's state in Redis: PostgreSQL rows only

# stop_pid stops one process this script started: TERM, up to 20 s, then KILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "bench: pid $pid did not stop in 20 s; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

redis_cli() { timeout 30 redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR##*:}" "$@"; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$PERSIST_PID" ] && stop_pid "$PERSIST_PID"
	[ -n "$API_PID" ] && stop_pid "$API_PID"
	[ -n "$CONSUMER_PID" ] && stop_pid "$CONSUMER_PID"
	if [ "$KEEP" = 1 ]; then
		log "kept campaigns ${CAMPAIGNS[*]-} ${SKIPPED[*]-}, topic $TOPIC, group $GROUP (BENCH_KEEP=1)"
	elif [ $((${#CAMPAIGNS[@]} + ${#SKIPPED[@]})) -gt 0 ]; then
		local ids
		ids=$(
			IFS=,
			echo "${CAMPAIGNS[*]} ${SKIPPED[*]}" | xargs | tr ' ' ,
		)
		timeout 120 psql "$POSTGRES_DSN" -qX -v ON_ERROR_STOP=1 >/dev/null <<-SQL || echo "bench: could not delete campaigns $ids from PostgreSQL" >&2
			BEGIN;
			DELETE FROM claim_log WHERE campaign_id IN ($ids);
			DELETE FROM campaign_inventory WHERE campaign_id IN ($ids);
			DELETE FROM campaign WHERE id IN ($ids);
			COMMIT;
		SQL
		local id
		for id in ${CAMPAIGNS[@]+"${CAMPAIGNS[@]}"}; do
			redis_cli --scan --pattern "rp:{$id}:*" | xargs -r -n 100 redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR##*:}" unlink >/dev/null ||
				echo "bench: could not delete the Redis keys of campaign $id" >&2
		done
	fi
	if [ "$KEEP" != 1 ] && [ -x "$WORK/benchreport" ]; then
		timeout 30 "$WORK/benchreport" droptopics -brokers "$KAFKA_BROKERS" -topics "$TOPIC,$TOPIC.dlq" -group "$GROUP" >/dev/null 2>&1 ||
			echo "bench: could not delete topics $TOPIC, $TOPIC.dlq or group $GROUP" >&2
	fi
	rm -f "$WORK/benchreport"
	if [ "$rc" != 0 ]; then
		echo "bench: failed (exit $rc); logs in $WORK" >&2
		for f in api.log consumer.log; do
			[ -s "$WORK/$f" ] && { echo "--- last lines of $WORK/$f" >&2; tail -n 15 "$WORK/$f" >&2; }
		done
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build --------------------------------------------------------------------------------
log "building bin/api, bin/consumer, the report helper"
mkdir -p bin
go build -o bin/api ./cmd/api
if go build -o bin/consumer ./cmd/consumer >"$WORK/consumer-build.log" 2>&1; then
	CONSUMER=running
else
	CONSUMER="not running (cmd/consumer does not build: $(head -n 1 "$WORK/consumer-build.log"))"
	log "WARNING: consumer $CONSUMER; persistence is not measured"
fi
go build -o "$WORK/benchreport" ./loadtest/benchreport
REPORT=$WORK/benchreport

# --- services, api, consumer -------------------------------------------------------------------
log "services (deploy/local/up.sh $KAFKA_MODE)"
timeout 300 bash deploy/local/up.sh "$KAFKA_MODE"
if curl -s -m 1 -o /dev/null "$BASE/healthz"; then
	die "something already listens on 127.0.0.1:$API_PORT (set BENCH_PORT)"
fi

log "api on 127.0.0.1:$API_PORT, topic $TOPIC"
pprof_addr= # empty: no pprof server
[ "$PPROF" = 1 ] && pprof_addr=127.0.0.1:$PPROF_PORT
PPROF_ADDR=$pprof_addr LISTEN_ADDR=127.0.0.1:$API_PORT PORT=$API_PORT KAFKA_TOPIC=$TOPIC KAFKA_DLQ_TOPIC=$TOPIC.dlq ADMIN_TOKEN=$TOKEN \
	bin/api >"$WORK/api.log" 2>&1 &
API_PID=$!
for ((i = 0; ; i++)); do
	kill -0 "$API_PID" 2>/dev/null || { API_PID=; die "the api exited during start-up"; }
	curl -fs -m 1 -o /dev/null "$BASE/readyz" && break
	((i < 600)) || die "the api was not ready (GET /readyz) within 60 s"
	sleep 0.1
done

if [ "$CONSUMER" = running ]; then
	log "consumer, group $GROUP, metrics on 127.0.0.1:$METRICS_PORT"
	KAFKA_TOPIC=$TOPIC KAFKA_DLQ_TOPIC=$TOPIC.dlq KAFKA_GROUP=$GROUP METRICS_ADDR=127.0.0.1:$METRICS_PORT \
		RECONCILE_INTERVAL=${RECONCILE_INTERVAL:-0} \
		bin/consumer >"$WORK/consumer.log" 2>&1 &
	CONSUMER_PID=$!
	for ((i = 0; ; i++)); do
		kill -0 "$CONSUMER_PID" 2>/dev/null || { CONSUMER_PID=; die "the consumer exited during start-up"; }
		curl -fs -m 1 -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics" && break
		if ((i >= 300)); then
			log "WARNING: consumer metrics did not answer within 30 s; going on"
			break
		fi
		sleep 0.1
	done
fi

# --- campaigns -------------------------------------------------------------------------------
START_TIME=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)
END_TIME=$(date -u -d '+30 min' +%Y-%m-%dT%H:%M:%SZ)

# create NAME COUNT creates a campaign of COUNT packets of amount 1 and prints its id.
create() {
	local body id
	body=$(jq -nc --arg n "$RUN-$1" --arg s "$START_TIME" --arg e "$END_TIME" --argjson c "$2" \
		'{name: $n, start_time: $s, end_time: $e, inventory: {"1": $c}}')
	id=$(curl -fsS -m 10 -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		-d "$body" "$BASE/campaign" | jq -r .id) || die "POST /campaign ($1) failed"
	[[ $id =~ ^[0-9]+$ ]] || die "POST /campaign ($1) returned id '$id'"
	echo "$id"
}

# open_status ID USER prints the HTTP status of one open.
open_status() {
	curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		-d "{\"user_id\":\"$2\"}" "$BASE/campaign/$1/open"
}

# create_fresh NAME COUNT VAR: create a campaign whose Redis state is its own, and set VAR
# to its id. Redis is shared with the tests, whose campaigns (database rain_test) have
# ids from the same range as this database's: a new campaign whose id a test campaign
# already used finds that campaign's state in Redis (load.lua leaves an existing campaign
# alone). One probe open must get 200 and leave COUNT-1 packets and 1 claim; a campaign
# that fails this is skipped (its PostgreSQL rows are deleted at the end, its Redis keys
# are left alone) and another is created, at most 1000 times.
create_fresh() {
	local name=$1 count=$2 id tries view
	for ((tries = 1; tries <= 1000; tries++)); do
		id=$(create "$name" "$count")
		if [ "$(open_status "$id" "${RUN}-probe")" = 200 ]; then
			view=$(curl -fsS -m 10 -H "Authorization: Bearer $TOKEN" "$BASE/campaign/$id" | jq -c '[.remaining, .claims]') || view=
			if [ "$view" = "[$((count - 1)),1]" ]; then
				CAMPAIGNS+=("$id")
				printf -v "$3" %s "$id"
				((tries == 1)) || log "WARNING: ($name) skipped $((tries - 1)) new campaign(s) whose id already had state in Redis (another database's campaign; see create_fresh)"
				return 0
			fi
		fi
		SKIPPED+=("$id")
	done
	die "no campaign with a fresh Redis state after 1000 tries"
}

# campaign ID FIELD reads one field of the merchant view.
campaign() {
	curl -fsS -m 10 -H "Authorization: Bearer $TOKEN" "$BASE/campaign/$1" | jq -r ".$2"
}

# listener_pid PORT: the process listening on TCP port PORT (empty if none).
listener_pid() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2; }

# ticks PID...: CPU ticks (user + system, own and of reaped children) of those processes;
# 0 for a pid that is gone.
ticks() {
	local t=0 pid v
	for pid in "$@"; do
		v=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13 + $14 + $15}') || v=0
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# cpu_snapshot FILE: CPU ticks of the machine and of each part of the stack, for the
# "CPU during each phase" table. PostgreSQL is the whole cluster (postmaster, whose
# reaped backends count in its children's ticks, and its live children).
cpu_snapshot() {
	local pm u n s q sq
	read -r _ u n s _ _ q sq _ </proc/stat # user nice system idle iowait irq softirq ...
	pm=$(listener_pid "${POSTGRES_PORT}")
	{
		echo "time_ns $(date +%s%N)"
		echo "clk_tck $(getconf CLK_TCK)"
		echo "machine_busy $((u + n + s + q + sq))"
		echo "api $(ticks "$API_PID")"
		if [ -n "$CONSUMER_PID" ]; then echo "consumer $(ticks "$CONSUMER_PID")"; fi
		echo "redis $(ticks "$(listener_pid "${REDIS_ADDR##*:}")")"
		echo "kafka $(ticks "$(listener_pid "${KAFKA_BROKERS##*:}")")"
		if [ -n "$pm" ]; then echo "postgres $(ticks "$pm" $(pgrep -P "$pm"))"; fi
	} >"$1"
}

# wrk_run NAME SECONDS URL MODE PREFIX [USERS]: one wrk run of loadtest/wrk/bench.lua;
# its BENCH_JSON line goes to $WORK/NAME.json, the full output to $WORK/NAME.wrk.txt,
# CPU snapshots around it to NAME.cpu-before/-after and wrk's own CPU to NAME.wrk-cpu.
wrk_run() {
	local name=$1 secs=$2 url=$3 profilers=() ok=0 TIMEFORMAT='%U %S'
	shift 3
	if [ "$PPROF" = 1 ] && [[ $name =~ ^(open|soldout|duplicate)$ ]]; then
		profile "$name" "$secs" &
		profilers+=($!)
	fi
	cpu_snapshot "$WORK/$name.cpu-before"
	{ time timeout -s INT $((secs + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 2s --latency \
		-s loadtest/wrk/bench.lua "$url" -- "$@" >"$WORK/$name.wrk.txt" 2>&1 || ok=$?; } 2>"$WORK/$name.wrk-cpu"
	exec 3>&- # the load stopped: tell the persistence helper of phase (b), if any
	cpu_snapshot "$WORK/$name.cpu-after"
	[ "$ok" = 0 ] || die "wrk ($name) failed: $(tail -n 3 "$WORK/$name.wrk.txt")"
	if [ ${#profilers[@]} -gt 0 ]; then wait "${profilers[@]}" || true; fi
	grep '^BENCH_JSON ' "$WORK/$name.wrk.txt" | sed 's/^BENCH_JSON //' >"$WORK/$name.json"
	[ -s "$WORK/$name.json" ] || die "wrk ($name) printed no BENCH_JSON line; see $WORK/$name.wrk.txt"
}

# profile NAME SECONDS: CPU and alloc profiles of the api over the middle of a phase.
profile() {
	local secs=$(($2 > 3 ? $2 - 2 : 1)) pp=http://127.0.0.1:$PPROF_PORT/debug/pprof
	sleep 1
	curl -fsS -m $((secs + 15)) -o "$WORK/$1.cpu.pprof" "$pp/profile?seconds=$secs" &
	curl -fsS -m $((secs + 15)) -o "$WORK/$1.allocs.pprof" "$pp/allocs?seconds=$secs" &
	wait || true
}

# persisted ID OUT TIMEOUT: wait for the campaign's claims in claim_log.
persisted() {
	"$REPORT" persist -dsn "$POSTGRES_DSN" -base-url "$BASE" -token "$TOKEN" -campaign "$1" -o "$2" -timeout "$3"
}

log "campaigns"
create_fresh open "$OPEN_PACKETS" A
create_fresh soldout "$SOLDOUT_PACKETS" B
create_fresh duplicate $((DUP_USERS * 10)) C
create_fresh warmup "$OPEN_PACKETS" W
log "campaigns: (A) open $A, (B) sold out $B, (C) duplicates $C, (W) warm-up $W"

log "warm-up: ${WARMUP_S}s of opens on (W); sell out (B); every user of (C) opens it once"
wrk_run warmup "$WARMUP_S" "$BASE/campaign/$W/open" unique "${RUN}w"
wrk_run prep-soldout 1 "$BASE/campaign/$B/open" unique "${RUN}p"
wrk_run prep-duplicate 1 "$BASE/campaign/$C/open" fixed "${RUN}d" "$DUP_USERS"
[ "$(campaign "$B" remaining)" = 0 ] || die "campaign (B) $B is not sold out after its warm-up"
[ "$(campaign "$C" claims)" = $((DUP_USERS + 1)) ] || die "campaign (C) $C does not have $DUP_USERS claims (+ the probe) after its warm-up"
if [ "$CONSUMER" = running ]; then
	persisted "$W" "$WORK/warmup-persist.json" 30s
	[ "$(jq -r .all "$WORK/warmup-persist.json")" = true ] ||
		log "WARNING: the warm-up's claims were not all in PostgreSQL within 30 s: $(jq -c '{claims,final}' "$WORK/warmup-persist.json")"
fi

# --- measured phases ----------------------------------------------------------------------------
log "(a) GET /healthz, ${DURATION_S}s"
wrk_run trivial "$DURATION_S" "$BASE/healthz" get x
sleep 1
log "(b) open with unique users, ${DURATION_S}s"
if [ "$CONSUMER" = running ]; then
	# The persistence helper connects to PostgreSQL first and counts the moment the
	# FIFO closes, i.e. right when wrk has stopped.
	mkfifo "$WORK/stop.fifo"
	"$REPORT" persist -dsn "$POSTGRES_DSN" -base-url "$BASE" -token "$TOKEN" -campaign "$A" \
		-o "$WORK/persist.json" -timeout "$PERSIST_TIMEOUT" -wait-stdin <"$WORK/stop.fifo" &
	PERSIST_PID=$!
	exec 3>"$WORK/stop.fifo"
fi
wrk_run open "$DURATION_S" "$BASE/campaign/$A/open" unique "${RUN}o"
if [ "$CONSUMER" = running ]; then
	log "(b) waiting for its claims in PostgreSQL (at most $PERSIST_TIMEOUT)"
	wait "$PERSIST_PID" || die "measuring (b)'s persistence failed"
	PERSIST_PID=
	rm -f "$WORK/stop.fifo"
fi
sleep 1
log "(c) flood after sell-out, ${DURATION_S}s"
wrk_run soldout "$DURATION_S" "$BASE/campaign/$B/open" unique "${RUN}s"
sleep 1
log "(d) duplicate storm of $DUP_USERS users, ${DURATION_S}s"
wrk_run duplicate "$DURATION_S" "$BASE/campaign/$C/open" fixed "${RUN}d" "$DUP_USERS"

curl -fs -m 5 "$BASE/metrics" >"$WORK/api-metrics.txt" || true
[ "$CONSUMER" = running ] && { curl -fs -m 5 "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/consumer-metrics.txt" || true; }

# --- report -------------------------------------------------------------------------------------
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain 2>/dev/null | grep -v '^?? loadtest/results/' || true)" ] && commit="$commit + uncommitted changes"
settings=$(env | grep -E '^(BENCH_[A-Z_]+|RING_SIZE|MAX_INFLIGHT|REDIS_CONNS|PRODUCER_[A-Z_]+|BATCH_[A-Z_]+|RECONCILE_[A-Z_]+)=' | sort | tr '\n' ' ' || true)
kafka_kind=$(cat .local/kafka/kind 2>/dev/null || echo unknown)
if [ "$kafka_kind" = real ]; then
	kafka="Apache Kafka $(cat .local/kafka/version 2>/dev/null || echo '?')"
else kafka="$kafka_kind"; fi
jq -n \
	--arg started "$STAMP" --arg finished "$(date -u +%Y%m%dT%H%M%SZ)" \
	--arg command "${settings}make bench" --arg commit "$commit" \
	--argjson threads "$THREADS" --argjson connections "$CONNECTIONS" --arg duration "${DURATION_S}s" \
	--arg wrk "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)" --arg consumer "$CONSUMER" \
	--arg redis "$(redis_cli INFO server | tr -d '\r' | sed -n 's/^redis_version://p')" \
	--arg postgres "$(timeout 10 psql "$POSTGRES_DSN" -tAXc 'SHOW server_version' | cut -d' ' -f1)" \
	--arg kafka "$kafka" --arg go "$(go env GOVERSION)" \
	--arg reconciler "$([ "${RECONCILE_INTERVAL:-0}" = 0 ] && echo off || echo "every $RECONCILE_INTERVAL")" \
	--arg load_start "$LOAD_START" --arg load_end "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--argjson a "$A" --argjson b "$B" --argjson c "$C" --argjson w "$W" \
	--arg topic "$TOPIC" --arg group "$GROUP" --argjson skipped ${#SKIPPED[@]} \
	--argjson pprof "$([ "$PPROF" = 1 ] && echo true || echo false)" \
	'{started_at: $started, finished_at: $finished, command: $command, commit: $commit,
	  threads: $threads, connections: $connections, duration: $duration, wrk: $wrk, consumer: $consumer,
	  stack: {Redis: $redis, PostgreSQL: $postgres, Kafka: $kafka, Go: $go, "consumer reconciler": $reconciler},
	  loadavg_start: $load_start, loadavg_end: $load_end,
	  campaigns: {open: $a, soldout: $b, duplicate: $c, warmup: $w}, skipped_campaigns: $skipped,
	  topic: $topic, group: $group, pprof: $pprof}' \
	>"$WORK/run.json"
strict=()
[ "${BENCH_STRICT:-0}" = 1 ] && strict=(-strict)
echo
"$REPORT" report -dir "$WORK" -o "$RESULTS/bench-$STAMP" "${strict[@]}"
echo
log "results: $RESULTS/bench-$STAMP.json and .md (logs and wrk output in $WORK/)"
