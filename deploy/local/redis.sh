#!/usr/bin/env bash
# Start a local Redis on 127.0.0.1:${REDIS_PORT:-6379} with AOF (appendfsync everysec),
# its data, pidfile and log under .local/redis/. Idempotent: a Redis that already
# answers PING there is left alone. Installs redis-server with apt-get if missing.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=${REDIS_PORT:-6379}
DIR="$LOCAL/redis"
PIDFILE="$DIR/redis.pid"
LOGFILE="$DIR/redis.log"

lock redis
ping() { redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null | grep -q PONG; }

if command -v redis-cli >/dev/null 2>&1 && ping; then
	aof=$(redis-cli -h 127.0.0.1 -p "$PORT" config get appendonly 2>/dev/null | tail -n 1 || true)
	if pid_alive "$PIDFILE" redis-server; then
		log "REDIS: already running at 127.0.0.1:$PORT (started by deploy/local/redis.sh, pid $(cat "$PIDFILE"), appendonly=$aof)"
	else
		log "REDIS: something already answers PING at 127.0.0.1:$PORT (not started by these scripts; appendonly=$aof) - using it"
	fi
	[ "$aof" = yes ] || warn "Redis at 127.0.0.1:$PORT runs without AOF; the project expects appendonly yes"
	exit 0
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
	apt_install redis-server redis-tools
fi

mkdir -p "$DIR"
rm -f "$PIDFILE"
redis-server \
	--bind 127.0.0.1 --port "$PORT" --protected-mode yes \
	--daemonize yes --pidfile "$PIDFILE" --logfile "$LOGFILE" --dir "$DIR" \
	--appendonly yes --appendfsync everysec \
	--save "3600 1 300 100 60 10000" 9>&-

for ((i = 0; i < 100; i++)); do # up to 20 s
	ping && break
	sleep 0.2
done
if ! ping; then
	tail -n 20 "$LOGFILE" >&2 || true
	die "redis-server did not answer PING on 127.0.0.1:$PORT within 20s (log: $LOGFILE)"
fi

log "REDIS: started $(redis-server --version | awk '{print $3}') at 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
log "  appendonly=$(redis-cli -h 127.0.0.1 -p "$PORT" config get appendonly | tail -n 1) appendfsync=$(redis-cli -h 127.0.0.1 -p "$PORT" config get appendfsync | tail -n 1)"
log "  data: $DIR  log: $LOGFILE"
log "  stop: deploy/local/stop.sh  (or: kill \$(cat $PIDFILE))"
