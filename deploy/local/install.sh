#!/usr/bin/env bash
# Install the Debian packages the local stack and its checks need, when missing, and the
# fuzzer's Python packages into .local/venv. Starting, stopping and checking the services
# is Go's job (internal/dev/stack, cmd/dev).
#
#   deploy/local/install.sh [GROUP...]     (default: services kafka checks fuzz)
#
#   services  redis-server, redis-tools, postgresql, postgresql-client
#   kafka     Java 17+ and Maven (real Apache Kafka; without them Kafka falls back to the
#             embedded broker, unless KAFKA_REQUIRE_REAL=1, which makes a failure fatal)
#   checks    prometheus (and promtool), haproxy, nodejs: the deployment and k6 script checks;
#             chromium: the console's browser test (edge/console_browser_test.go)
#   bench     wrk
#   fuzz      python3 and its venv module, then .local/venv with deploy/fuzz/requirements.txt
#             (schemathesis and openapi-spec-validator, pinned, from PyPI through pip): the
#             OpenAPI fuzz test and validator (deploy/deploycheck/fuzz_test.go); the venv is
#             made again when the requirements change
#
# Idempotent; apt-get runs as root (or through sudo) and only when something is missing,
# with a policy-rc.d that keeps the packages' own services from starting.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=(services kafka checks fuzz)
root=$(cd "$(dirname "$0")/../.." && pwd)

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
java_major() { java -version 2>&1 | sed -nE '1s/.*version "(1\.)?([0-9]+).*/\2/p'; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() { # PKG...
	local policy=/usr/sbin/policy-rc.d added= rc=0
	if [ ! -e "$policy" ]; then
		as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
		added=1
	fi
	echo "apt-get install $* ..."
	{ as_root apt-get update -qq &&
		as_root apt-get install -y -qq --no-install-recommends \
			-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" </dev/null; } || rc=$?
	[ -z "$added" ] || as_root rm -f "$policy"
	return "$rc"
}

for g in "${groups[@]}"; do
	need=()
	case "$g" in
	services)
		has redis-server && has redis-cli || need+=(redis-server redis-tools)
		{ has pg_lsclusters && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; } || need+=(postgresql postgresql-client)
		;;
	kafka)
		{ has java && [ "$(java_major)" -ge 17 ]; } || need+=(openjdk-17-jre-headless)
		has mvn || need+=(maven)
		;;
	checks)
		{ has promtool && has prometheus; } || need+=(prometheus)
		has haproxy || need+=(haproxy)
		has node || need+=(nodejs)
		has chromium || need+=(chromium)
		;;
	bench) has wrk || need+=(wrk) ;;
	fuzz) { has python3 && python3 -c 'import venv, ensurepip' 2>/dev/null; } || need+=(python3 python3-venv) ;;
	*)
		echo "usage: $0 [services|kafka|checks|bench|fuzz]..." >&2
		exit 2
		;;
	esac
	[ ${#need[@]} -gt 0 ] || continue
	if ! apt_install "${need[@]}"; then
		if [ "$g" = kafka ] && [ "${KAFKA_REQUIRE_REAL:-0}" != 1 ]; then
			echo "WARNING: could not install ${need[*]}; Kafka will fall back to the embedded broker" >&2
		else
			echo "ERROR: apt-get install ${need[*]} failed" >&2
			exit 1
		fi
	fi
done

# The fuzzer's Python packages, pinned: a venv of their own, made again when the pins change.
for g in "${groups[@]}"; do
	[ "$g" = fuzz ] || continue
	venv=$root/.local/venv req=$root/deploy/fuzz/requirements.txt
	want=$(sha256sum "$req" | cut -d' ' -f1)
	[ "$(cat "$venv/.requirements" 2>/dev/null)" = "$want" ] && [ -x "$venv/bin/schemathesis" ] && continue
	echo "python3 -m venv $venv; pip install -r deploy/fuzz/requirements.txt ..."
	rm -rf "$venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
	echo "$want" >"$venv/.requirements"
done
