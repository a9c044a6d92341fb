"""Warehouse backends: the same two-stage load (staging tables, then one merge) on each engine."""

from __future__ import annotations

from .base import MergeResult, Warehouse
from .duckdb_backend import DuckDBWarehouse


def open_warehouse(target: str, schema_name: str) -> Warehouse:
    """A warehouse for ``target``: a DuckDB file path (the embedded default)."""
    if target.startswith(("postgresql://", "postgres://", "redshift://")):
        raise NotImplementedError(f"warehouse URL scheme not supported yet: {target.split(':', 1)[0]}")
    return DuckDBWarehouse(target, schema_name)


__all__ = ["DuckDBWarehouse", "MergeResult", "Warehouse", "open_warehouse"]
