"""DuckDB: the embedded default warehouse (a single file, no set-up)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from .. import schema
from ..errors import ConfigError, WarehouseBusy
from ..schema import Table
from ..sources import filesystem, is_local
from ..sql import ident, literal, sql_type
from .base import Warehouse

# Chosen, not DuckDB's defaults (80% of RAM): the pipeline's peak memory must not grow with the input.
# Loads, the merge and the derived tables stream or spill to disk within this limit; every core is used;
# insertion order is not kept (nothing relies on the order of rows without an ORDER BY), which lets
# the bulk inserts run in parallel without buffering.
MEMORY_LIMIT = "200MB"
CONFIG = {
    "autoinstall_known_extensions": "false",
    "memory_limit": MEMORY_LIMIT,
    "threads": os.cpu_count() or 1,
    "preserve_insertion_order": "false",
}


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: str, schema_name: str) -> None:
        super().__init__(schema_name)
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.con = duckdb.connect(path, config=dict(CONFIG))
            self.con.execute("SET enable_progress_bar = false")  # no progress bars on the pipeline's stderr
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():  # another process has the file open for writing
                raise WarehouseBusy(f"the DuckDB warehouse {path} is in use by another process (locked)") from None
            raise ConfigError("FITBIT_WAREHOUSE", f"cannot open the DuckDB warehouse {path}") from None
        except OSError as exc:  # the folder cannot be created (under a regular file, not writable)
            reason = exc.strerror or type(exc).__name__
            raise ConfigError("FITBIT_WAREHOUSE", f"cannot create the DuckDB warehouse {path}: {reason}") from None
        self.path = path
        self._views = False

    def follow_lake(self, lake_uri: str) -> None:
        self._views = is_local(lake_uri)

    def follows_lake_by_views(self) -> bool:
        """On a local lake the data tables are views over the current snapshot's files: no second copy."""
        return self._views

    def refresh_views(self, files: dict[str, list[str]]) -> None:
        """Point every data table's view at these files (a table of an earlier version is dropped first:
        the caller has made sure the lake holds its rows)."""
        for t in schema.DATA_TABLES:
            if self._object_type(t.name) == "BASE TABLE":
                self.execute(f"DROP TABLE {self.names.q(t.name)}")
            paths = _local_files(files.get(t.name, []))
            if paths is None:
                raise ValueError(f"the lake files of {t.name} cannot be named in a view")
            self.execute(f"CREATE OR REPLACE VIEW {self.names.q(t.name)} AS {select_parquet(t, paths)}")

    def _object_type(self, name: str) -> str | None:
        found = self.query(
            "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [self.names.schema, name],
        )
        return str(found[0][0]) if found else None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = self.con.execute(sql, list(params))
        if sql.lstrip().upper().startswith(("INSERT", "DELETE", "UPDATE")):
            row = cur.fetchone()
            return int(row[0]) if row else 0
        return -1

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, list(params)).fetchall()

    def query_arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        return self.con.sql(sql, params=list(params)).to_arrow_table()

    def stream_arrow(self, sql: str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """Batches as DuckDB produces them (nothing else may run on the connection until the last)."""
        yield from self.con.sql(sql).to_arrow_reader(batch_rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def load_table(self, table_name: str, parts: Sequence[str]) -> None:
        if all(is_local(p) for p in parts):
            self.con.execute(f"INSERT INTO {self.names.q(table_name)} SELECT * FROM read_parquet(?)", [list(parts)])
            return
        # Remote parts (s3://) are copied to a temporary folder through fsspec, whose retries absorb throttling
        # and dropped connections; DuckDB's own remote reads (httpfs) are not available offline.
        with tempfile.TemporaryDirectory(prefix="fitbit-load-") as tmp:
            local = []
            for i, part in enumerate(parts):
                fs, path = filesystem(part)
                local.append(os.path.join(tmp, f"{i:06d}.parquet"))
                fs.get_file(path, local[-1])
            self.load_table(table_name, local)

    def load_staging(self, parts_by_table: dict[str, list[str]]) -> None:
        """Replace every ``stg_*`` table with the run's staging Parquet.

        The intraday staging tables (nearly all the rows) are views over the run's local staging files,
        which stay in the lake: the merge then reads each file once, straight into production, instead of
        first copying every row into the warehouse file and then again out of it. The small tables, which
        the gate and the ledger work on, are loaded as before.
        """
        for t in schema.STAGED_TABLES:
            self._drop_staging(t)
            parts = parts_by_table.get(t.name, [])
            files = _local_files(parts) if t.kind == "intraday" else None
            if files:
                self.execute(f"CREATE VIEW {self.names.q(t.staging_name)} AS {select_parquet(t, files)}")
                continue
            self.execute(self.names.create_table(t, staging=True))
            if parts:
                self.load_table(t.staging_name, parts)

    def _drop_staging(self, t: Table) -> None:
        found = self._object_type(t.staging_name)
        if found:
            kind = "VIEW" if found == "VIEW" else "TABLE"
            self.execute(f"DROP {kind} {self.names.q(t.staging_name)}")

    def insert_arrow(self, table: Table, data: pa.Table) -> None:
        self.con.register("_fitbit_rows", data)
        try:
            self.con.execute(
                f"INSERT INTO {self.names.q(table.name)} ({self.names.column_list(table)}) "
                f"SELECT {self.names.column_list(table)} FROM _fitbit_rows"
            )
        finally:
            self.con.unregister("_fitbit_rows")

    def close(self) -> None:
        self.con.close()


def _local_files(parts: Sequence[str]) -> list[str] | None:
    """Absolute paths of ``parts`` when all are local files that can be named in SQL text, else None."""
    files = []
    for p in parts:
        if not is_local(p):
            return None
        path = os.path.abspath(p.removeprefix("file://"))
        try:
            literal(path)
        except ValueError:
            return None
        files.append(path)
    return files


def select_parquet(t: Table, files: list[str]) -> str:
    """The rows of ``files`` with exactly the columns and types of ``t`` (no rows without files)."""
    if not files:
        cols = ", ".join(f"CAST(NULL AS {sql_type(f.type)}) AS {ident(f.name)}" for f in t.schema)
        return f"SELECT {cols} WHERE false"
    cols = ", ".join(f"CAST({ident(f.name)} AS {sql_type(f.type)}) AS {ident(f.name)}" for f in t.schema)
    return f"SELECT {cols} FROM read_parquet([{', '.join(literal(f) for f in files)}])"
