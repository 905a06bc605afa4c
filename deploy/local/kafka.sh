#!/usr/bin/env bash
# Start a local Kafka broker on 127.0.0.1:9092 (KAFKA_PORT; KRaft controller on KAFKA_PORT+1).
#
#   deploy/local/kafka.sh [real|embedded|auto]     (default: auto)
#
# real      Apache Kafka ${KAFKA_VERSION:-4.1.1}, single-node KRaft (broker+controller), heap
#           ${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}; jars fetched once from Maven Central with mvn
#           into .cache/kafka/lib, state and log under .local/kafka/. Needs Java 17+ and
#           Maven (installed with apt-get when missing).
# embedded  franz-go's kfake broker (cmd/devkafka serve), state under .local/kafka/kfake.
# auto      real when it can be fetched and started, else embedded. With
#           KAFKA_REQUIRE_REAL=1, auto never falls back: it fails instead.
#
# Idempotent: if a broker already answers on 127.0.0.1:9092 it is reused (an embedded
# broker started by this script is replaced when a real one is required). Prints
# "KAFKA: ..." naming the broker and writes real|embedded to .local/kafka/kind.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"

MODE=${1:-auto}
case "$MODE" in real | embedded | auto) ;; *) die "usage: $0 [real|embedded|auto]" ;; esac
REQUIRE_REAL=${KAFKA_REQUIRE_REAL:-0}
[ "$REQUIRE_REAL" = 1 ] && [ "$MODE" = auto ] && MODE=real

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
SCALA_VERSION=2.13
PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
BROKER=127.0.0.1:$PORT

STATE="$LOCAL/kafka"
PIDFILE="$STATE/kafka.pid"
KINDFILE="$STATE/kind"
LOGFILE="$STATE/kafka.log"
CONF="$STATE/config"
DATA="$STATE/data"
KFAKE_DATA="$STATE/kfake"
LIB="$CACHE/kafka/lib"
DEVKAFKA="$LOCAL/bin/devkafka"

mkdir -p "$STATE"
lock kafka

# build_devkafka: build cmd/devkafka once into .local/bin (again only when its sources change).
build_devkafka() {
	if [ ! -x "$DEVKAFKA" ] || [ -n "$(find "$ROOT/cmd/devkafka" "$ROOT/go.mod" "$ROOT/go.sum" -newer "$DEVKAFKA" 2>/dev/null | head -n 1)" ]; then
		log "building $DEVKAFKA ..." >&2
		(cd "$ROOT" && go build -o "$DEVKAFKA" ./cmd/devkafka) || die "go build ./cmd/devkafka failed"
	fi
}
devkafka() {
	build_devkafka
	"$DEVKAFKA" "$@"
}

build_devkafka

announce() { # KIND
	echo "$1" >"$KINDFILE"
	if [ "$1" = real ]; then
		local v
		v=$(cat "$STATE/version" 2>/dev/null || echo "4.x")
		log "KAFKA: Apache Kafka $v (real) at $BROKER"
	else
		log "KAFKA: embedded kfake at $BROKER"
	fi
}

# --- already running? -------------------------------------------------------
if port_open 127.0.0.1 "$PORT"; then
	running=$(devkafka wait -brokers "$BROKER" -timeout 90s -kind) || die "something listens on $BROKER but does not answer as a Kafka broker"
	if [ "$running" = embedded ] && [ "$MODE" = real ]; then
		if pid_alive "$PIDFILE" devkafka; then
			log "replacing the embedded broker started earlier by the real one"
			stop_pidfile "embedded kfake" "$PIDFILE" devkafka || true
		else
			die "an embedded (kfake) broker not started by this script holds $BROKER; a real broker is required"
		fi
	else
		if pid_alive "$PIDFILE" "kafka.Kafka\|devkafka"; then
			log "Kafka already running at $BROKER (pid $(cat "$PIDFILE"))"
		else
			log "Kafka already answering at $BROKER (not started by these scripts)"
			if [ "$running" = real ]; then
				echo "$(devkafka wait -brokers "$BROKER" -timeout 10s -version) (by API versions; external)" >"$STATE/version"
			fi
		fi
		announce "$running"
		exit 0
	fi
fi

# --- embedded ----------------------------------------------------------------
start_embedded() {
	rm -f "$KINDFILE"
	build_devkafka
	log "starting embedded kfake broker on $BROKER ..."
	mkdir -p "$KFAKE_DATA"
	setsid nohup "$DEVKAFKA" serve -addr "$BROKER" -partitions 6 -data "$KFAKE_DATA" >>"$STATE/kfake.log" 2>&1 </dev/null 9>&- &
	echo $! >"$PIDFILE"
	if ! devkafka wait -brokers "$BROKER" -timeout 30s -q; then
		tail -n 20 "$STATE/kfake.log" >&2 || true
		stop_pidfile "embedded kfake" "$PIDFILE" devkafka || true
		die "embedded broker did not become ready (log: $STATE/kfake.log)"
	fi
	announce embedded
	log "  state: $KFAKE_DATA  log: $STATE/kfake.log  pid: $(cat "$PIDFILE")"
	log "  stop: deploy/local/stop.sh  (or: kill \$(cat $PIDFILE))"
}

# --- real --------------------------------------------------------------------
java_major() { java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == 1 ? v[2] : v[1]); exit}'; }

ensure_java_maven() {
	local need=()
	if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then need+=(openjdk-17-jre-headless); fi
	command -v mvn >/dev/null 2>&1 || need+=(maven)
	[ ${#need[@]} -eq 0 ] || (apt_install "${need[@]}") || warn "could not install ${need[*]}"
	if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
		warn "Java 17+ is needed for Apache Kafka 4.x"
		return 1
	fi
	command -v mvn >/dev/null 2>&1 || {
		warn "mvn is needed to fetch the Kafka jars"
		return 1
	}
}

mvn_copy() { # POM OUTDIR [extra mvn args]
	local pom=$1 out=$2
	shift 2
	local mlog="${pom%.xml}.log"
	if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$out" "$@" >"$mlog" 2>&1; then
		sed 's/\x1b\[[0-9;]*m//g' "$mlog" | tail -n 30 >&2
		warn "mvn failed (log: $mlog)"
		return 1
	fi
}

# fetch_jars: resolve kafka_2.13 and its runtime dependencies plus a log4j2 binding
# matching the slf4j and log4j versions that release uses, once, into .cache/kafka/lib.
fetch_jars() {
	local stamp="$LIB/.kafka-$KAFKA_VERSION" work tmp slf4j log4j binding
	[ -f "$stamp" ] && return 0
	work="$CACHE/kafka/fetch"
	tmp="$CACHE/kafka/lib.tmp"
	rm -rf "$work" "$tmp"
	mkdir -p "$work" "$tmp"
	log "fetching Apache Kafka $KAFKA_VERSION jars with Maven into $LIB (once) ..."
	local t0=$SECONDS
	cat >"$work/kafka.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.rain</groupId><artifactId>kafka-broker</artifactId><version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$SCALA_VERSION</artifactId><version>$KAFKA_VERSION</version></dependency>
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>3.8.1</version>
  </plugin></plugins></build>
</project>
EOF
	mvn_copy "$work/kafka.xml" "$tmp" || return 1
	ls "$tmp"/kafka_"$SCALA_VERSION"-"$KAFKA_VERSION".jar >/dev/null 2>&1 || return 1

	# The binding must match the slf4j API the release uses (1.x: log4j-slf4j-impl,
	# 2.x: log4j-slf4j2-impl) and the log4j-api version it brings (default 2.24.3).
	slf4j=$(find "$tmp" -name 'slf4j-api-*.jar' | sed -E 's/.*slf4j-api-([0-9.]+)\.jar/\1/' | head -n 1)
	log4j=$(find "$tmp" -name 'log4j-api-*.jar' | sed -E 's/.*log4j-api-([0-9.]+)\.jar/\1/' | head -n 1)
	log4j=${log4j:-2.24.3}
	case "$slf4j" in 1.*) binding="log4j-slf4j-impl" ;; *) binding="log4j-slf4j2-impl" ;; esac
	local deps=""
	ls "$tmp"/log4j-slf4j*-impl-*.jar >/dev/null 2>&1 ||
		deps+="<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>$binding</artifactId><version>$log4j</version></dependency>"
	ls "$tmp"/log4j-core-*.jar >/dev/null 2>&1 ||
		deps+="<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$log4j</version></dependency>"
	ls "$tmp"/log4j-api-*.jar >/dev/null 2>&1 ||
		deps+="<dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$log4j</version></dependency>"
	if [ -n "$deps" ]; then
		sed -e "s#<dependencies>.*#<dependencies>$deps#" -e '/kafka_/d' -e 's/kafka-broker/kafka-logging/' "$work/kafka.xml" >"$work/logging.xml"
		# excludeTransitive: keep the slf4j-api/log4j-api versions that Kafka resolved.
		mvn_copy "$work/logging.xml" "$tmp" -DexcludeTransitive=true || return 1
	fi
	rm -rf "$LIB"
	mv "$tmp" "$LIB"
	echo "slf4j-api $slf4j, log4j $log4j, binding $binding" >"$LIB/.logging"
	touch "$stamp"
	log "fetched $(find "$LIB" -name '*.jar' | wc -l) jars ($(du -sh "$LIB" | cut -f1)) in $((SECONDS - t0))s; logging: slf4j-api $slf4j + $binding $log4j"
}

write_config() {
	mkdir -p "$CONF" "$DATA"
	cat >"$CONF/server.properties" <<EOF
# Generated by deploy/local/kafka.sh: single-node KRaft for local development and tests.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
log.dirs=$DATA
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=104857600
log.cleaner.dedupe.buffer.size=33554432
delete.topic.enable=true
EOF
	cat >"$CONF/log4j2.properties" <<EOF
# Generated by deploy/local/kafka.sh: broker logs go to $LOGFILE only.
status = warn
name = kafka-local
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $LOGFILE
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.zookeeper.name = org.apache.zookeeper
logger.zookeeper.level = WARN
EOF
}

read -r -a HEAP <<<"${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
JAVA_ARGS=("${HEAP[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
	-Dlog4j2.configurationFile="$CONF/log4j2.properties" -Dkafka.logs.dir="$STATE" -cp "$LIB/*")
kafka_java() { java "${JAVA_ARGS[@]}" "$@"; } # MAINCLASS ARGS...

# show_log_since LINE: the errors, then the last lines, that the broker logged after LINE.
show_log_since() {
	local from=$(($1 + 1))
	{
		tail -n "+$from" "$LOGFILE" | grep -E ' (ERROR|FATAL) |^Caused by|^[A-Za-z_.$]+(Error|Exception)' | tail -n 8
		echo "..."
		tail -n "+$from" "$LOGFILE" | tail -n 5
	} >&2 || true
}

start_real() {
	rm -f "$KINDFILE"
	ensure_java_maven || return 1
	fetch_jars || {
		warn "could not fetch the Apache Kafka $KAFKA_VERSION jars with Maven"
		return 1
	}
	write_config
	if port_open 127.0.0.1 "$CONTROLLER_PORT"; then
		warn "127.0.0.1:$CONTROLLER_PORT (the KRaft controller listener) is already in use"
		return 1
	fi
	touch "$LOGFILE"
	local mark
	mark=$(wc -l <"$LOGFILE")
	if [ ! -f "$DATA/meta.properties" ]; then
		local id
		id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$LOGFILE" | tail -n 1) || return 1
		log "formatting KRaft storage in $DATA (cluster id $id) ..."
		kafka_java kafka.tools.StorageTool format --standalone -t "$id" -c "$CONF/server.properties" >>"$LOGFILE" 2>&1 || {
			show_log_since "$mark"
			warn "kafka-storage format failed"
			return 1
		}
	fi
	log "starting Apache Kafka $KAFKA_VERSION on $BROKER (controller 127.0.0.1:$CONTROLLER_PORT) ..."
	local t0=$SECONDS pid
	setsid nohup java "${JAVA_ARGS[@]}" kafka.Kafka "$CONF/server.properties" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
	pid=$!
	echo "$pid" >"$PIDFILE"
	echo "$KAFKA_VERSION" >"$STATE/version"
	# Ready when a client gets metadata; give up early if the JVM died.
	local deadline=$((SECONDS + 120))
	until devkafka wait -brokers "$BROKER" -timeout 3s -q 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			show_log_since "$mark"
			rm -f "$PIDFILE"
			warn "Apache Kafka exited during start-up (log: $LOGFILE)"
			return 1
		fi
		if [ $SECONDS -ge $deadline ]; then
			show_log_since "$mark"
			stop_pidfile "Apache Kafka" "$PIDFILE" kafka.Kafka || true
			warn "Apache Kafka not ready within 120s (log: $LOGFILE)"
			return 1
		fi
	done
	announce real
	log "  ready after $((SECONDS - t0))s; pid: $pid  data: $DATA  log: $LOGFILE"
	log "  config: $CONF/server.properties  jars: $LIB"
	log "  stop: deploy/local/stop.sh  (or: kill \$(cat $PIDFILE))"
}

case "$MODE" in
embedded) start_embedded ;;
real)
	start_real || die "could not start a real Apache Kafka broker (mode real, KAFKA_REQUIRE_REAL=$REQUIRE_REAL); no fallback"
	;;
auto)
	if ! start_real; then
		warn "falling back to the embedded broker (set KAFKA_REQUIRE_REAL=1 to fail instead)"
		start_embedded
	fi
	;;
esac
