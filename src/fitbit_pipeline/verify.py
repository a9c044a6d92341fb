"""Lake against warehouse, per data table and participant-day: row count and a content checksum.

Both sides are digested by DuckDB with the same expression (the sum of a hash of every column, cast to
the model's type), so values compare exactly whatever engine holds them: the lake's current snapshot is
read from its data files, an embedded warehouse in place, another warehouse's rows through Arrow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from . import schema
from .lake import Lake
from .sources import filesystem, is_local
from .sql import ident, literal, sql_type
from .warehouse import DuckDBWarehouse, Warehouse

Digest = dict[tuple[str, dt.date], tuple[int, str]]


@dataclass(frozen=True)
class Difference:
    table: str
    participant_id: str
    date: dt.date
    lake_rows: int
    warehouse_rows: int
    same_rows_other_content: bool

    def describe(self) -> str:
        what = "content differs" if self.same_rows_other_content else f"{self.lake_rows} vs {self.warehouse_rows} rows"
        return f"{self.table} {self.participant_id} {self.date}: lake/warehouse {what}"


def _digest_sql(t: schema.Table, source: str) -> str:
    columns = ", ".join(f"CAST({ident(f.name)} AS {sql_type(f.type)})" for f in t.schema)
    return (
        f"SELECT participant_id, date, COUNT(*), CAST(SUM(hash({columns})) AS VARCHAR) "
        f"FROM {source} GROUP BY participant_id, date"
    )


def _collect(rows: list[tuple]) -> Digest:
    return {(str(p), d): (int(n), str(h)) for p, d, n, h in rows}


@contextmanager
def parquet_reader(files: list[str]) -> Iterator[tuple[duckdb.DuckDBPyConnection, str]]:
    """A DuckDB connection able to read ``files`` (object storage through fsspec: DuckDB's httpfs is not
    needed) and the SQL source naming them (the files must be non-empty)."""
    with duckdb.connect(config={"autoinstall_known_extensions": "false", "memory_limit": "256MB"}) as con:
        con.execute("SET enable_progress_bar = false")
        if not is_local(files[0]):
            con.register_filesystem(filesystem(files[0])[0])
        yield con, f"read_parquet([{', '.join(literal(f) for f in files)}])"


def lake_digest(files: list[str], t: schema.Table) -> Digest:
    if not files:
        return {}
    with parquet_reader(files) as (con, source):
        return _collect(con.execute(_digest_sql(t, source)).fetchall())


# The content checksum of a release's table. It is kept for years: its definition never changes (a new one gets a
# new name). The order of rows and of their files does not matter; any changed, added or removed row changes it.
CHECKSUM_ALGORITHM = "md5-rows-v1"
CHECKSUM_DEFINITION = (
    "every row's columns cast to the table's types, as text (DuckDB's CAST AS VARCHAR) joined by U+001F, null as \\N; "
    "the lower 64 bits of the MD5 of that text as an unsigned integer; their sum modulo 2**64 in hexadecimal"
)


def content_checksum(files: list[str], t: schema.Table) -> tuple[int, str]:
    """Rows and content checksum (:data:`CHECKSUM_ALGORITHM`) of the Parquet ``files`` holding rows of ``t``."""
    if not files:
        return 0, f"{CHECKSUM_ALGORITHM}:{0:016x}"
    text = ", ".join(f"COALESCE(CAST(CAST({ident(f.name)} AS {sql_type(f.type)}) AS VARCHAR), '\\N')" for f in t.schema)
    with parquet_reader(files) as (con, source):
        rows, total = con.execute(
            f"SELECT COUNT(*), CAST(COALESCE(SUM(md5_number_lower(concat_ws(chr(31), {text}))), 0) AS VARCHAR) "
            f"FROM {source}"
        ).fetchone()  # type: ignore[misc]
    return int(rows), f"{CHECKSUM_ALGORITHM}:{int(total) % 2**64:016x}"


def warehouse_digest(wh: Warehouse, t: schema.Table) -> Digest:
    if not wh.query(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [wh.names.schema, t.name]
    ):
        return {}
    if isinstance(wh, DuckDBWarehouse):
        return _collect(wh.query(_digest_sql(t, wh.names.q(t.name))))
    # Streamed: DuckDB aggregates the batches as they arrive, so memory does not grow with the table.
    batches = (b.cast(t.schema) for b in wh.stream_arrow(f"SELECT {wh.names.column_list(t)} FROM {wh.names.q(t.name)}"))
    rows = pa.RecordBatchReader.from_batches(t.schema, batches)
    with duckdb.connect(config={"autoinstall_known_extensions": "false", "memory_limit": "256MB"}) as con:
        con.register("warehouse_rows", rows)
        return _collect(con.execute(_digest_sql(t, "warehouse_rows")).fetchall())


def compare_table(lake_files: list[str], wh: Warehouse, t: schema.Table) -> list[Difference]:
    ours, theirs = lake_digest(lake_files, t), warehouse_digest(wh, t)
    out = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key, (0, "")), theirs.get(key, (0, ""))
        if a != b:
            out.append(Difference(t.name, key[0], key[1], a[0], b[0], a[0] == b[0]))
    return out


def compare(lake: Lake, wh: Warehouse) -> list[Difference]:
    """Every participant-day whose rows differ between the lake's current snapshot and the warehouse."""
    files = lake.files()
    return [d for t in schema.DATA_TABLES for d in compare_table(files[t.name], wh, t)]
