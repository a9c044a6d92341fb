"""Upgrade in place: production partitions written by the previous version become the tables' first snapshot.

The previous version kept ``production/<table>/date=<d>/data*.parquet`` without Iceberg metadata, some of them
without column statistics (which Iceberg needs for partition values and pruning). Their rows are copied into the
(empty) table as new data files, one day per file, sorted as before; the sources are not read again. The
warehouse then checks the adopted lake against its own rows and replaces whatever differs (``pipeline.recover``).
The old files stay where they are, unreferenced; delete ``production/<table>/date=*`` once satisfied.
"""

from __future__ import annotations

import logging
import posixpath

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import Table as IcebergTable

from .. import schema
from ..sources import filesystem, full_uri
from .commit import write_rows
from .paths import production_uri
from .snapshot import ROWS_PROPERTY, RUN_PROPERTY

log = logging.getLogger(__name__)
ADOPTED = "adopted-legacy-lake"


def legacy_files(lake: str, table: str) -> list[str]:
    fs, root = filesystem(production_uri(lake, table))
    return [full_uri(fs, p) for p in sorted(fs.glob(posixpath.join(root, "date=*", "*.parquet")))]


def adopt_legacy(tables: dict[str, IcebergTable], lake: str) -> dict[str, int]:
    """Add the legacy partitions of every still-empty table; rows adopted per table."""
    adopted = {}
    fs, tmp = filesystem(posixpath.join(lake, "production", "_tmp"))
    if fs.exists(tmp):  # what an interrupted publication of the previous version left: never data
        fs.rm(tmp, recursive=True)
    for t in schema.DATA_TABLES:
        table = tables[t.name]
        if table.current_snapshot() is not None:
            continue
        files = legacy_files(lake, t.name)
        if not files:
            continue
        added, rows = [], 0
        for f in files:
            fs, path = filesystem(f)
            with fs.open(path, "rb") as fh:
                data = pq.read_table(fh)
            added += write_rows(table, t, ADOPTED, _with_columns(data, t))
            rows += data.num_rows
        with (
            table.transaction() as tx,
            tx.update_snapshot(
                snapshot_properties={RUN_PROPERTY: ADOPTED, ROWS_PROPERTY: str(rows)}
            ).fast_append() as op,
        ):
            for data_file in added:
                op.append_data_file(data_file)
        adopted[t.name] = rows
        log.info("adopted %d legacy files of %s", len(files), t.name)
    return adopted


def _with_columns(data: pa.Table, t: schema.Table) -> pa.Table:
    """``data`` with every column of ``t`` (null where a file of an earlier version lacks a nullable one)."""
    for f in t.schema:
        if f.name not in data.column_names:
            data = data.append_column(f.name, pa.nulls(data.num_rows, f.type))
    return data.select(t.columns)
