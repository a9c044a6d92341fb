#!/usr/bin/env bash
# Set up and run the whole test suite (CI calls this through .ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || exit $?
# The report test drives Debian's Chromium (no browser download): install it where we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium for the report test (apt-get)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "could not install chromium; the report browser test will fail in CI" >&2
fi
# The PostgreSQL tests start their own server from /usr/lib/postgresql/*/bin; in CI (where they must not
# be skipped) install the server when it is missing.
if [ "${CI:-}" = "true" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing postgresql for the warehouse tests (apt-get)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1 \
    || echo "could not install postgresql; the PostgreSQL tests will fail in CI" >&2
fi
.venv/bin/python -m ruff check . || exit $?
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
