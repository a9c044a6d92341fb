"""``fitbit-pipeline export --release NAME --to URI``: a self-describing copy of a release for a collaborator.

One file per table (``<table>.parquet`` or ``<table>.csv``, rows in no particular order), streamed from the
release's files (memory holds one batch), and ``manifest.json``: the release (name, time, note, the pipeline
version that made it and the one that exported it), and per table its file, rows, content checksum (as recorded
at the release; :data:`.verify.CHECKSUM_ALGORITHM`, recomputable from a Parquet export), the SHA-256 and size of
the file, and its columns with types. A table whose exported rows differ in number from the release's is an
error, never a silently short copy.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import schema
from .errors import ConfigError, SafeError
from .releases import RELEASED_TABLES, Release, opened, pipeline_version, release_files
from .sources import filesystem
from .verify import CHECKSUM_ALGORITHM, CHECKSUM_DEFINITION, parquet_reader
from .warehouse.duckdb_backend import select_parquet

FORMATS = ("parquet", "csv")
MANIFEST = "manifest.json"


class ExportMismatch(SafeError):
    """An exported table does not hold the release's rows."""


@dataclass
class ExportedTable:
    file: str
    rows: int
    checksum: str
    sha256: str
    bytes: int
    snapshot_id: int | None
    columns: list[dict[str, Any]] = field(default_factory=list)


class _Hashing:
    """A write-only file that passes its bytes on and keeps their SHA-256 and count."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.sha, self.size, self.closed = raw, hashlib.sha256(), 0, False

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:  # the caller closes the underlying file
        self.closed = True


def export(
    lake_uri: str, warehouse: str, name: str, to: str, fmt: str = "parquet", schema_name: str = "rural"
) -> dict[str, Any]:
    """Write release ``name`` to the folder ``to``; its manifest."""
    if fmt not in FORMATS:
        raise ConfigError("--format", f"must be one of {', '.join(FORMATS)}")
    with opened(lake_uri, warehouse, name, schema_name) as (release, the_lake):
        files = release_files(the_lake, release)
    fs, root = filesystem(to)
    if fs.exists(root) and fs.ls(root):
        raise ConfigError("--to", "the folder is not empty (an export goes into a new or empty folder)")
    fs.makedirs(root, exist_ok=True)
    tables: dict[str, ExportedTable] = {}
    for t in RELEASED_TABLES:
        entry = release.tables[t.name]
        target = f"{t.name}.{fmt}"
        with fs.open(posixpath.join(root, target), "wb") as raw:
            sink = _Hashing(raw)
            rows = _write(files[t.name], t, sink, fmt)
        if rows != entry.row_count:
            raise ExportMismatch(f"{t.name}: {rows} rows exported, the release holds {entry.row_count}")
        columns = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in t.schema]
        tables[t.name] = ExportedTable(
            target, rows, entry.checksum, sink.sha.hexdigest(), sink.size, entry.snapshot_id, columns
        )
    manifest = _manifest(release, fmt, tables)
    with fs.open(posixpath.join(root, MANIFEST), "wb") as fh:
        fh.write(json.dumps(manifest, indent=2).encode())
    return manifest


def _write(files: list[str], t: schema.Table, sink: _Hashing, fmt: str) -> int:
    """Stream the rows of ``files`` into ``sink``; how many."""
    writer: pq.ParquetWriter | pacsv.CSVWriter
    if fmt == "parquet":
        writer = pq.ParquetWriter(sink, t.schema, compression="zstd")
    else:
        writer = pacsv.CSVWriter(sink, t.schema)
    rows = 0
    with writer:
        if files:
            with parquet_reader(files) as (con, _):
                for batch in con.sql(select_parquet(t, files)).to_arrow_reader(100_000):
                    writer.write_batch(batch.cast(t.schema))
                    rows += batch.num_rows
        elif fmt == "parquet":
            writer.write_table(pa.table({f.name: pa.array([], f.type) for f in t.schema}, schema=t.schema))
    return rows


def _manifest(release: Release, fmt: str, tables: dict[str, ExportedTable]) -> dict[str, Any]:
    return {
        "release": release.name,
        "created_at": release.created_at.isoformat(),
        "note": release.note,
        "rewritten": release.rewritten,
        "pipeline_version": release.pipeline_version,
        "exported_at": dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(),
        "exported_by": f"fitbit-pipeline {pipeline_version()}",
        "format": fmt,
        "checksum_algorithm": CHECKSUM_ALGORITHM,
        "checksum_definition": CHECKSUM_DEFINITION,
        "tables": {name: vars(entry) for name, entry in tables.items()},
    }
