#!/usr/bin/env bash
# Install the tools the deployment checks (deploy/deploycheck, part of `make test`)
# run, when missing: promtool and prometheus (Debian package prometheus) and
# haproxy. Idempotent; installs with apt-get (as root, or through sudo) without
# starting the packages' services. Prints the versions found.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "$0")/lib.sh"

need=()
{ command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; } || need+=(prometheus)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
	apt_install "${need[@]}"
fi
log "TOOLS: $(promtool --version 2>&1 | head -n 1)"
log "TOOLS: $(prometheus --version 2>&1 | head -n 1)"
log "TOOLS: $(haproxy -v 2>&1 | head -n 1)"
