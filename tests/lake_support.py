"""Reading the production lake in tests: the current snapshot's data files of an Iceberg table."""

from __future__ import annotations

import os

from fitbit_pipeline.lake import Lake


def lake_files(lake: os.PathLike[str] | str, table: str, schema: str = "rural") -> list[str]:
    """The data files of ``table``'s current snapshot (what a reader of the lake sees)."""
    return Lake(str(lake), schema).files()[table]


def read_lake(lake: os.PathLike[str] | str, table: str, schema: str = "rural") -> str:
    """A DuckDB table expression over ``table``'s current snapshot (an empty one when it has no rows)."""
    files = lake_files(lake, table, schema)
    if not files:
        return "(SELECT * FROM " + _empty(table) + ")"
    return "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"


def _empty(table: str) -> str:
    from fitbit_pipeline import schema
    from fitbit_pipeline.sql import ident, sql_type

    t = schema.BY_NAME[table]
    return (
        "(SELECT "
        + ", ".join(f"CAST(NULL AS {sql_type(f.type)}) AS {ident(f.name)}" for f in t.schema)
        + " WHERE false)"
    )
