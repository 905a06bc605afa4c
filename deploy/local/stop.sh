#!/usr/bin/env bash
# Stop what deploy/local/{redis,postgres,kafka,up}.sh started, found by their pidfiles
# under .local/; PostgreSQL only if these scripts started the cluster
# (.local/postgres.started). Services started some other way are left alone.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"

stopped=0
lock kafka
stop_pidfile "Kafka ($(cat "$LOCAL/kafka/kind" 2>/dev/null || echo unknown))" "$LOCAL/kafka/kafka.pid" "kafka.Kafka\|devkafka" 60 && stopped=1
rm -f "$LOCAL/kafka/kind"
lock redis
# SIGTERM makes redis-server flush the AOF and exit cleanly.
stop_pidfile "Redis" "$LOCAL/redis/redis.pid" redis-server 30 && stopped=1

lock postgres
if [ -f "$LOCAL/postgres.started" ]; then
	read -r ver name <"$LOCAL/postgres.started"
	if pg_lsclusters -h 2>/dev/null | awk -v v="$ver" -v n="$name" '$1 == v && $2 == n && $4 == "online" {f = 1} END {exit !f}'; then
		log "stopping PostgreSQL cluster $ver/$name ..."
		as_root pg_ctlcluster "$ver" "$name" stop
		log "stopped PostgreSQL"
		stopped=1
	fi
	rm -f "$LOCAL/postgres.started"
fi
[ "$stopped" = 1 ] || log "nothing to stop (no service started by deploy/local scripts is running)"
