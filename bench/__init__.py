"""Throughput benchmark of the pipeline against DuckDB and a naive script (``python -m bench.benchmark``)."""
