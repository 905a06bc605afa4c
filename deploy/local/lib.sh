# shellcheck shell=bash
# Helpers shared by the deploy/local scripts. Source it; do not run it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL="$ROOT/.local"
# shellcheck disable=SC2034 # used by the scripts that source this file
CACHE="$ROOT/.cache"
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
	printf 'ERROR: %s\n' "$*" >&2
	exit 1
}

# as_root CMD...: run as root (directly when we are root, else through sudo).
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# as_user USER CMD...: run as another OS user (e.g. postgres), from /.
as_user() {
	local user=$1
	shift
	if [ "$(id -un)" = "$user" ]; then
		(cd / && "$@")
	elif [ "$(id -u)" -eq 0 ] && command -v runuser >/dev/null 2>&1; then
		(cd / && runuser -u "$user" -- "$@")
	elif [ "$(id -u)" -eq 0 ]; then
		(cd / && su -s /bin/bash "$user" -c "$(printf '%q ' "$@")")
	else
		(cd / && sudo -n -u "$user" "$@")
	fi
}

APT_UPDATED=
# apt_install PKG...: install Debian packages non-interactively, without letting
# their maintainer scripts start system services (we start what we need ourselves).
apt_install() {
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
	local policy=/usr/sbin/policy-rc.d added=
	if [ ! -e "$policy" ]; then
		as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
		added=1
	fi
	local rc=0
	if [ -z "$APT_UPDATED" ]; then
		log "apt-get update ..."
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
		APT_UPDATED=1
	fi
	if [ "$rc" -eq 0 ]; then
		log "apt-get install -y $* ..."
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" </dev/null || rc=$?
	fi
	if [ -n "$added" ]; then as_root rm -f "$policy"; fi
	[ "$rc" -eq 0 ] || die "apt-get install $* failed (exit $rc)"
}

# pid_alive PIDFILE [PATTERN]: true if the pidfile names a live process whose
# command line contains PATTERN (guards against recycled pids).
pid_alive() {
	local file=$1 pattern=${2:-} pid
	[ -s "$file" ] || return 1
	pid=$(tr -dc '0-9' <"$file")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	if [ -n "$pattern" ]; then
		tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
	fi
	return 0
}

# stop_pidfile NAME PIDFILE PATTERN [SECONDS]: SIGTERM the process, wait, then SIGKILL.
stop_pidfile() {
	local name=$1 file=$2 pattern=$3 secs=${4:-30} pid i
	if ! pid_alive "$file" "$pattern"; then
		rm -f "$file"
		return 1
	fi
	pid=$(tr -dc '0-9' <"$file")
	log "stopping $name (pid $pid) ..."
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		warn "$name (pid $pid) did not stop in ${secs}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# Remove the pidfile only if it still names the process we stopped.
	[ "$({ tr -dc '0-9' <"$file"; } 2>/dev/null)" != "$pid" ] || rm -f "$file"
	log "stopped $name"
	return 0
}

# lock NAME: hold .local/NAME.lock on fd 9 until the script exits (or locks another
# name), so that concurrent runs of these scripts do not race. Daemons started while
# holding it must get 9>&- so that they do not keep the lock.
lock() {
	mkdir -p "$LOCAL"
	exec 9>"$LOCAL/$1.lock"
	flock -w 600 9 || die "timed out waiting for $LOCAL/$1.lock (another deploy/local script running?)"
}

# port_open HOST PORT: true if something accepts TCP connections there.
port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}
