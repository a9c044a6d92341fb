#!/usr/bin/env bash
# Quick start: set up, then run the pipeline on the embedded default
# (./data/source -> ./data/lake -> ./data/warehouse.duckdb; sample data is generated when the source is empty).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/fitbit-pipeline run "$@"
