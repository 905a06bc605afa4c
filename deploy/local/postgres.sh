#!/usr/bin/env bash
# Make the system PostgreSQL cluster serve 127.0.0.1:${PGPORT:-5432} with role rain
# (password rain, LOGIN CREATEDB) and databases rain and rain_test owned by it:
#   postgres://rain:rain@127.0.0.1:5432/rain?sslmode=disable
#   postgres://rain:rain@127.0.0.1:5432/rain_test?sslmode=disable
# Idempotent. Installs postgresql with apt-get if missing, starts the Debian cluster
# when it is down (recorded in .local/postgres.started so stop.sh stops only that).
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"

PORT=${PGPORT:-5432}
MARKER="$LOCAL/postgres.started"
ROLE=rain
PASSWORD=rain
DATABASES=(rain rain_test)

lock postgres
ready() { pg_isready -q -h 127.0.0.1 -p "$PORT" 2>/dev/null; }

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
	apt_install postgresql postgresql-client
fi

# The cluster on our port: "VERSION NAME STATUS"; create one if there is none.
cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p {print $1, $2, $4; exit}')
if [ -z "$cluster" ]; then
	ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
	log "POSTGRES: no cluster on port $PORT; creating $ver/main"
	as_root pg_createcluster --port "$PORT" "$ver" main >/dev/null 9>&-
	cluster=$(pg_lsclusters -h | awk -v p="$PORT" '$3 == p {print $1, $2, $4; exit}')
fi
read -r VER NAME STATUS <<<"$cluster"

if ready; then
	log "POSTGRES: cluster $VER/$NAME already accepting connections on 127.0.0.1:$PORT"
elif [ "$STATUS" = online ]; then
	log "POSTGRES: cluster $VER/$NAME is online but not ready yet; waiting"
else
	log "POSTGRES: starting cluster $VER/$NAME (port $PORT) ..."
	as_root pg_ctlcluster "$VER" "$NAME" start 9>&-
	mkdir -p "$LOCAL"
	echo "$VER $NAME" >"$MARKER"
fi

for ((i = 0; i < 150; i++)); do # up to 30 s
	ready && break
	sleep 0.2
done
ready || die "PostgreSQL $VER/$NAME not ready on 127.0.0.1:$PORT within 30s (see /var/log/postgresql/postgresql-$VER-$NAME.log)"

psql_admin() { as_user postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres "$@"; }

if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" = 1 ]; then
	psql_admin -c "ALTER ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD'"
else
	log "POSTGRES: creating role $ROLE (LOGIN CREATEDB)"
	psql_admin -c "CREATE ROLE $ROLE WITH LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
for db in "${DATABASES[@]}"; do
	if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
		log "POSTGRES: creating database $db owned by $ROLE"
		psql_admin -c "CREATE DATABASE $db OWNER $ROLE"
	fi
done

# TCP password authentication on 127.0.0.1 must work for the DSNs above. Debian's
# default pg_hba.conf has a scram-sha-256 rule for 127.0.0.1/32; add one if it is missing.
dsn_ok() { PGCONNECT_TIMEOUT=5 psql -X -q "postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$1?sslmode=disable" -tAc 'SELECT 1' 2>/dev/null | grep -qx 1; }
if ! dsn_ok rain; then
	hba=$(psql_admin -tAc 'SHOW hba_file')
	warn "password login for $ROLE on 127.0.0.1 failed; adding a scram-sha-256 rule to $hba"
	as_root sed -i "1i host all $ROLE 127.0.0.1/32 scram-sha-256 # added by deploy/local/postgres.sh" "$hba"
	psql_admin -c 'SELECT pg_reload_conf()' >/dev/null
	sleep 1
fi
for db in "${DATABASES[@]}"; do
	dsn_ok "$db" || die "cannot log in as $ROLE to $db over TCP on 127.0.0.1:$PORT"
done

log "POSTGRES: $(psql_admin -tAc 'SHOW server_version' | awk '{print $1}') cluster $VER/$NAME ready on 127.0.0.1:$PORT"
log "  POSTGRES_DSN=postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/rain?sslmode=disable"
log "  TEST_POSTGRES_DSN=postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/rain_test?sslmode=disable"
if [ -f "$MARKER" ]; then
	log "  started by these scripts; stop: deploy/local/stop.sh  (or: pg_ctlcluster $VER $NAME stop)"
fi
