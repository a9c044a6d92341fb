"""Warehouse backends: the same two-stage load (staging tables, then one merge) on each engine."""

from __future__ import annotations

from .base import LakeApply, MergeResult, Warehouse
from .duckdb_backend import DuckDBWarehouse

POSTGRES_SCHEMES = ("postgresql", "postgres")
REDSHIFT_TARGETS = ("redshift", "redshift:", "redshift://")


def warehouse_kind(target: str) -> str:
    """``duckdb``, ``postgres`` or ``redshift`` for a warehouse target (raises on another URL scheme)."""
    if target.lower() in REDSHIFT_TARGETS:
        return "redshift"
    if "://" not in target:
        return "duckdb"
    scheme = target.split("://", 1)[0].lower()
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    if scheme == "redshift":
        return "redshift"
    raise ValueError(
        f"unsupported warehouse URL scheme {scheme!r}: use a DuckDB file, postgresql://... or redshift://..."
    )


def open_warehouse(target: str, schema_name: str) -> Warehouse:
    """A warehouse for ``target``: a DuckDB file path (the embedded default), a ``postgresql://``
    or ``postgres://`` URL, or ``redshift`` / a ``redshift://`` URL (connection from the settings,
    the URL, or the Airflow connection ``redshift_default``)."""
    kind = warehouse_kind(target)
    if kind == "postgres":
        from .postgres_backend import PostgresWarehouse

        return PostgresWarehouse(target, schema_name)
    if kind == "redshift":
        from .redshift_backend import RedshiftWarehouse

        return RedshiftWarehouse.connect(target, schema_name)
    return DuckDBWarehouse(target, schema_name)


__all__ = ["DuckDBWarehouse", "LakeApply", "MergeResult", "Warehouse", "open_warehouse", "warehouse_kind"]
