"""DuckDB: the embedded default warehouse (a single file, no set-up)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pyarrow as pa

from ..schema import Table
from .base import Warehouse


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: str, schema_name: str) -> None:
        super().__init__(schema_name)
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self.con = duckdb.connect(path, config={"autoinstall_known_extensions": "false"})
        except duckdb.IOException as exc:
            raise RuntimeError(f"cannot open the DuckDB warehouse {path}: {exc} (is another run using it?)") from None
        self.path = path

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
        self.con.execute(f"INSERT INTO {self.names.q(table_name)} SELECT * FROM read_parquet(?)", [list(parts)])

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
