#!/usr/bin/env bash
# Start the local services the project needs, each only if it is not already up:
#   Redis (AOF) on 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432 (role/databases rain,
#   rain_test), Kafka on 127.0.0.1:9092.
#
#   deploy/local/up.sh [real|embedded|auto|none]    (Kafka mode, default auto; see kafka.sh)
#
# A REDIS_ADDR on 127.0.0.1/localhost picks the Redis port; a REDIS_ADDR on another host
# is used as it is and no local Redis is started. Stop with deploy/local/stop.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

KAFKA_MODE=${1:-auto}
case "$KAFKA_MODE" in real | embedded | auto | none) ;; *)
	echo "usage: $0 [real|embedded|auto|none]" >&2
	exit 2
	;;
esac

if [ -n "${REDIS_ADDR:-}" ]; then
	case "${REDIS_ADDR%:*}" in
	127.0.0.1 | localhost | "") REDIS_PORT=${REDIS_ADDR##*:} bash "$HERE/redis.sh" ;;
	*) echo "REDIS: using $REDIS_ADDR (not local; nothing started)" ;;
	esac
else
	bash "$HERE/redis.sh"
fi
bash "$HERE/postgres.sh"
if [ "$KAFKA_MODE" = none ]; then
	echo "KAFKA: not started here (using KAFKA_BROKERS=${KAFKA_BROKERS:-})"
else
	bash "$HERE/kafka.sh" "$KAFKA_MODE"
fi
