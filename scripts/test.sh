#!/usr/bin/env bash
# Set up and run the whole test suite (CI calls this through .ci/run).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test || exit $?
.venv/bin/python -m ruff check src tests || exit $?
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
