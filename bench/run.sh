#!/usr/bin/env bash
# The throughput benchmark, one command: set up .venv with the `bench` extra (pandas, psutil), then run
# bench/benchmark.py. The data (~0.5 GB at 1x, ~2 GB at 4x) is generated once into bench/.cache/.
# Arguments pass through, e.g. `bash bench/run.sh --reps 5` or `bash bench/run.sh --only transform,duckdb`.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=bench
case " $* " in *spark*) extras=bench,spark ;; esac  # --only ...,spark: PySpark too (and a Java 17 runtime)
bash scripts/setup.sh "$extras"
exec .venv/bin/python -m bench.benchmark "$@"
