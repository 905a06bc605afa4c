#!/usr/bin/env bash
# bucket-shards.sh: Redis Cluster masters for BenchmarkClaimBuckets's
# scaling runs, each redis-server in a cgroup (v1 cpu controller) of its
# own with the same CPU quota, so that on a small machine every shard is a
# "core" of the same size and Redis, not the driver, is the bottleneck.
#
#   lua/testdata/bucket-shards.sh start 7111             # 1 master, every slot
#   lua/testdata/bucket-shards.sh start 7101 7102 7103   # 3 masters, a third each
#   lua/testdata/bucket-shards.sh stats 7101 7102 7103   # CPU used and throttling per shard
#   lua/testdata/bucket-shards.sh stop 7101 7102 7103
#
# QUOTA_US (default 1500) of every PERIOD_US (default 10000): 0.15 core
# each. Data under /tmp/bucket-shards/<port>. Needs root and a writable
# /sys/fs/cgroup/cpu (cgroup v1); loopback only.
set -euo pipefail
cmd=${1:?start, stats or stop}; shift
[ $# -ge 1 ] || { echo "ports?" >&2; exit 2; }
QUOTA_US=${QUOTA_US:-1500}
PERIOD_US=${PERIOD_US:-10000}
CG=/sys/fs/cgroup/cpu
CGA=/sys/fs/cgroup/cpuacct
base=/tmp/bucket-shards

case $cmd in
start)
	for p in "$@"; do
		d=$base/$p
		rm -rf "$d"; mkdir -p "$d"
		redis-server --bind 127.0.0.1 --port "$p" --cluster-enabled yes --cluster-config-file "$d/nodes.conf" \
			--appendonly yes --appendfsync everysec --save '' --dir "$d" --daemonize yes \
			--pidfile "$d/redis.pid" --logfile "$d/redis.log"
		for _ in $(seq 50); do [ -s "$d/redis.pid" ] && redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
		pid=$(cat "$d/redis.pid")
		mkdir -p "$CG/rbshard$p" "$CGA/rbshard$p"
		echo "$PERIOD_US" > "$CG/rbshard$p/cpu.cfs_period_us"
		echo "$QUOTA_US" > "$CG/rbshard$p/cpu.cfs_quota_us"
		echo "$pid" > "$CG/rbshard$p/cgroup.procs"
		echo "$pid" > "$CGA/rbshard$p/cgroup.procs"
		echo 0 > "$CGA/rbshard$p/cpuacct.usage"
	done
	if [ $# -eq 1 ]; then
		redis-cli -p "$1" cluster addslotsrange 0 16383 >/dev/null
	else
		nodes=(); for p in "$@"; do nodes+=("127.0.0.1:$p"); done
		redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
	fi
	for _ in $(seq 100); do
		ok=1
		for p in "$@"; do redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0; done
		[ $ok = 1 ] && break; sleep 0.1
	done
	[ $ok = 1 ] || { echo "cluster not ok" >&2; exit 1; }
	echo "REDIS_ADDR=127.0.0.1:$1 ($# masters, $QUOTA_US/$PERIOD_US µs of CPU each)"
	;;
stats)
	for p in "$@"; do
		usage=$(cat "$CGA/rbshard$p/cpuacct.usage")
		thr=$(awk '/nr_throttled/ {print $2}' "$CG/rbshard$p/cpu.stat")
		echo "shard $p: cpu $(awk -v u="$usage" 'BEGIN {printf "%.2f", u / 1e9}') s, throttled $thr periods"
	done
	;;
stop)
	for p in "$@"; do
		d=$base/$p
		if [ -s "$d/redis.pid" ]; then
			pid=$(cat "$d/redis.pid")
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
		rmdir "$CG/rbshard$p" "$CGA/rbshard$p" 2>/dev/null || true
		rm -rf "$d"
	done
	;;
*) echo "start, stats or stop" >&2; exit 2 ;;
esac
