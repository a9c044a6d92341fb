"""SQL derived from the table model: quoted identifiers, bound parameters, one code path.

Statements use ``?`` placeholders; a backend whose driver wants another style converts
them (:func:`placeholders`). Nothing here interpolates a value into SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from . import schema
from .schema import Table


def ident(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def sql_type(t: pa.DataType) -> str:
    if pa.types.is_string(t):
        return "VARCHAR"
    if pa.types.is_date32(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_int32(t):
        return "INTEGER"
    if pa.types.is_int64(t):
        return "BIGINT"
    if pa.types.is_float64(t):
        return "DOUBLE PRECISION"
    raise TypeError(f"no SQL type for {t}")


def placeholders(sql: str, style: str) -> str:
    """Convert ``?`` placeholders to the driver's style (``%s`` for psycopg)."""
    return sql.replace("?", style) if style != "?" else sql


@dataclass(frozen=True)
class Names:
    """Qualified names of one warehouse schema."""

    schema: str

    def q(self, table: str) -> str:
        return f"{ident(self.schema)}.{ident(table)}"

    def create_schema(self) -> str:
        return f"CREATE SCHEMA IF NOT EXISTS {ident(self.schema)}"

    def create_table(self, table: Table, *, staging: bool = False) -> str:
        cols = ", ".join(f"{ident(f.name)} {sql_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in table.schema)
        name = table.staging_name if staging else table.name
        return f"CREATE TABLE IF NOT EXISTS {self.q(name)} ({cols})"

    def drop_staging(self, table: Table) -> str:
        return f"DROP TABLE IF EXISTS {self.q(table.staging_name)}"

    def column_list(self, table: Table, alias: str | None = None) -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + ident(c) for c in table.columns)

    # ---- the merge, as one ordered list of (sql, params); run inside one transaction ----
    def merge_statements(self) -> list[tuple[str, list[object]]]:
        d, f = schema.PIPELINE_DELIVERIES, schema.PIPELINE_FILES
        win = ident("_fitbit_winners")
        key = "w.participant_id = {t}.participant_id AND w.date = {t}.date"
        out: list[tuple[str, list[object]]] = [
            (f"DROP TABLE IF EXISTS {win}", []),
            (
                f"CREATE TEMPORARY TABLE {win} AS "
                "SELECT c.participant_id, c.activity, c.date, c.source_file, c.delivery_rank, c.run_id FROM ("
                "SELECT s.*, ROW_NUMBER() OVER (PARTITION BY s.participant_id, s.activity, s.date "
                "ORDER BY s.delivery_rank DESC) AS rn "
                f"FROM {self.q(d.staging_name)} s) c "
                f"LEFT JOIN {self.q(d.name)} p ON p.participant_id = c.participant_id "
                "AND p.activity = c.activity AND p.date = c.date "
                "WHERE c.rn = 1 AND (p.delivery_rank IS NULL OR c.delivery_rank >= p.delivery_rank)",
                [],
            ),
        ]
        for t in schema.DATA_TABLES:
            target = self.q(t.name)
            out.append(
                (
                    f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {win} w WHERE w.activity = ? AND "
                    + key.format(t=target)
                    + ")",
                    [t.activity],
                )
            )
            out.append(
                (
                    f"INSERT INTO {target} ({self.column_list(t)}) SELECT {self.column_list(t, 's')} "
                    f"FROM {self.q(t.staging_name)} s "
                    f"WHERE EXISTS (SELECT 1 FROM {win} w WHERE w.source_file = s.source_file)",
                    [],
                )
            )
        files = self.q(f.name)
        out += [
            # Files whose delivery is replaced by a different file are marked, never deleted.
            (
                f"UPDATE {files} SET status = 'replaced' WHERE status = 'loaded' AND source_file IN ("
                f"SELECT p.source_file FROM {self.q(d.name)} p JOIN {win} w ON w.participant_id = p.participant_id "
                "AND w.activity = p.activity AND w.date = p.date WHERE p.source_file <> w.source_file)",
                [],
            ),
            (
                f"DELETE FROM {self.q(d.name)} WHERE EXISTS (SELECT 1 FROM {win} w WHERE w.activity = "
                f"{self.q(d.name)}.activity AND " + key.format(t=self.q(d.name)) + ")",
                [],
            ),
            (
                f"INSERT INTO {self.q(d.name)} ({self.column_list(d)}) SELECT {self.column_list(d)} FROM {win}",
                [],
            ),
        ]
        for t in (schema.REJECTED_RECORDS, schema.DATA_QUALITY_FINDINGS, f):
            out.append(
                (
                    f"DELETE FROM {self.q(t.name)} WHERE source_file IN "
                    f"(SELECT source_file FROM {self.q(f.staging_name)})",
                    [],
                )
            )
        for t in (schema.REJECTED_RECORDS, schema.DATA_QUALITY_FINDINGS):
            out.append(
                (
                    f"INSERT INTO {self.q(t.name)} ({self.column_list(t)}) "
                    f"SELECT {self.column_list(t)} FROM {self.q(t.staging_name)}",
                    [],
                )
            )
        won = "s.status = 'staged' AND w.source_file IS NOT NULL"
        lost = "s.status = 'staged' AND w.source_file IS NULL"
        computed = {
            "status": f"CASE WHEN {won} THEN 'loaded' WHEN {lost} THEN 'superseded' ELSE s.status END",
            "rows_loaded": f"CASE WHEN {won} THEN s.rows_valid ELSE 0 END",
            "rows_superseded": f"CASE WHEN {lost} THEN s.rows_valid ELSE 0 END",
        }
        select = ", ".join(computed.get(c, f"s.{ident(c)}") for c in f.columns)
        out.append(
            (
                f"INSERT INTO {files} ({self.column_list(f)}) SELECT {select} "
                f"FROM {self.q(f.staging_name)} s LEFT JOIN {win} w ON w.source_file = s.source_file",
                [],
            )
        )
        return out

    def winners(self) -> str:
        return f"SELECT * FROM {ident('_fitbit_winners')}"

    def accounting_violations(self) -> str:
        return (
            f"SELECT source_file FROM {self.q(schema.PIPELINE_FILES.name)} WHERE run_id = ? AND rows_read <> "
            "rows_loaded + rows_rejected + rows_duplicate + rows_superseded"
        )

    def run_file_stats(self) -> str:
        return (
            "SELECT COALESCE(activity, 'unknown') AS activity, COUNT(*) AS files, "
            "SUM(CASE WHEN status = 'loaded' THEN 1 ELSE 0 END) AS loaded, "
            "SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) AS rejected, "
            "SUM(CASE WHEN status = 'superseded' THEN 1 ELSE 0 END) AS superseded, "
            "SUM(rows_read), SUM(rows_loaded), SUM(rows_rejected), SUM(rows_duplicate), SUM(rows_superseded) "
            f"FROM {self.q(schema.PIPELINE_FILES.name)} WHERE run_id = ? GROUP BY 1 ORDER BY 1"
        )

    def run_warnings(self) -> str:
        return (
            "SELECT COALESCE(activity, 'unknown'), COUNT(*) "
            f"FROM {self.q(schema.DATA_QUALITY_FINDINGS.name)} WHERE run_id = ? GROUP BY 1"
        )

    def run_rules(self) -> str:
        return (
            "SELECT rule_id, COUNT(*) "
            f"FROM {self.q(schema.REJECTED_RECORDS.name)} WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC, 1"
        )

    def known_files(self) -> str:
        return f"SELECT source_file, fingerprint FROM {self.q(schema.PIPELINE_FILES.name)}"
