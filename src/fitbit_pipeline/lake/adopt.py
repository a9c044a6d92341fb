"""Upgrade in place: production partitions written by the previous version become the tables' first snapshot.

The previous version kept ``production/<table>/date=<d>/data*.parquet`` without Iceberg metadata. Those files
are added to the (empty) table as they are, without copying or re-reading the sources; the warehouse then
checks the adopted lake against its own rows and replaces whatever differs (see ``pipeline.recover``).
"""

from __future__ import annotations

import logging
import posixpath

import pyarrow.parquet as pq
from pyiceberg.table import Table as IcebergTable

from .. import schema
from ..sources import filesystem, full_uri
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
    for t in schema.DATA_TABLES:
        table = tables[t.name]
        if table.current_snapshot() is not None:
            continue
        files = legacy_files(lake, t.name)
        if not files:
            continue
        rows = 0
        for f in files:
            fs, path = filesystem(f)
            with fs.open(path, "rb") as fh:
                rows += pq.ParquetFile(fh).metadata.num_rows
        table.add_files(files, snapshot_properties={RUN_PROPERTY: ADOPTED, ROWS_PROPERTY: str(rows)})
        adopted[t.name] = rows
        log.info("adopted %d legacy files of %s", len(files), t.name)
    return adopted
