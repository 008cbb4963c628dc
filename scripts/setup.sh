#!/usr/bin/env bash
# Installs everything the service, the demo and the tests need on a fresh Debian machine.
# Idempotent: quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

need_apt=()
pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$pg_bindir" ]; then need_apt+=(postgresql); fi
pg_major=$(basename "$(dirname "${pg_bindir:-/usr/lib/postgresql/15/bin}")")
[ -e "/usr/lib/postgresql/$pg_major/lib/wal2json.so" ] || need_apt+=("postgresql-$pg_major-wal2json")
command -v pg_recvlogical >/dev/null || need_apt+=(postgresql-client)
command -v redis-server >/dev/null || need_apt+=(redis-server)
# chromium joins this list with the browser tests of the dashboard milestone
command -v node >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v -E '^WARNING: (Running pip as|Location)' || true
if [ -f clients/js/package.json ] && [ ! -d clients/js/node_modules ]; then
  (cd clients/js && npm install --no-audit --no-fund --silent)
fi
if [ -f bench/package.json ] && [ ! -d bench/node_modules ]; then
  (cd bench && npm install --no-audit --no-fund --silent)
fi
