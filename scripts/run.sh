#!/usr/bin/env bash
# Quick start: set up, then run the pipeline on the embedded default
# (./data/source -> ./data/lake -> ./data/warehouse.duckdb). When no source is configured and ./data/source
# holds no files, it asks for the sample explicitly (--sample-if-empty); the command itself never invents data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=()
if [ -z "${FITBIT_SOURCE:-}${FITBIT_SOURCE_BUCKET:-}" ] && ! grep -qsE '^[[:space:]]*FITBIT_SOURCE(_BUCKET)?=' .env \
  && [[ " $* " != *" --source"* ]] && [ -z "$(find data/source -type f -print -quit 2>/dev/null)" ]; then
  args+=(--sample-if-empty)
fi
exec .venv/bin/fitbit-pipeline run "${args[@]}" "$@"
