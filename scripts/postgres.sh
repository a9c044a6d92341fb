#!/usr/bin/env bash
# A throw-away local PostgreSQL for trying the pipeline against it (the tests start their own).
#   bash scripts/postgres.sh start    # initdb on first use, start, print the URL
#   bash scripts/postgres.sh stop     # stop (data kept)
#   bash scripts/postgres.sh destroy  # stop and delete the data
# Data in $FITBIT_PG_DIR (default /tmp/fitbit-pg), port $FITBIT_PG_PORT (default 55432), 127.0.0.1 only,
# trust authentication (no password anywhere), fsync off: for development, never for real data.
set -euo pipefail
cmd="${1:-start}"
dir="${FITBIT_PG_DIR:-/tmp/fitbit-pg}"
port="${FITBIT_PG_PORT:-55432}"
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$bindir" ] && command -v pg_ctl >/dev/null; then bindir="$(dirname "$(command -v pg_ctl)")"; fi
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
  echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 2
fi
as=()
if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi # initdb and postgres refuse to run as root
url="postgresql://postgres@127.0.0.1:$port/postgres"

case "$cmd" in
start)
  mkdir -p "$dir"
  if [ "${#as[@]}" -gt 0 ]; then chown postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    "${as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  fi
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o \
    "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" start >/dev/null
  echo "PostgreSQL is running: $url"
  echo "  pipeline: FITBIT_WAREHOUSE=$url .venv/bin/fitbit-pipeline run"
  echo "  tests:    FITBIT_TEST_POSTGRES_URL=$url bash scripts/test.sh"
  ;;
stop) "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop ;;
destroy)
  "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop 2>/dev/null || true
  rm -rf "$dir"
  ;;
*)
  echo "usage: $0 start|stop|destroy" >&2
  exit 2
  ;;
esac
