"""PostgreSQL (psycopg 3): rows bulk-loaded with binary ``COPY ... FROM STDIN``, merges serialised per schema.

Rows travel as PostgreSQL's binary ``COPY`` format encoded from Arrow record batches by ``pgpq`` (no text
conversion on either side). The data tables are loaded once: the merge deletes the replaced participant-days
and copies the lake files holding the run's rows straight into them (the ``stg_*`` data tables stay empty);
the ledger, rejects and findings go through their ``stg_*`` tables as before.

The intraday tables are partitioned by week of ``date`` (``intraday_heart_w20240101``, ...), each partition
with its own indexes: a weekly load copies most of its rows into new partitions and builds their indexes once
afterwards, so its cost follows the new rows, not the table's size. Intraday tables an earlier version created
unpartitioned stay as they are, with their indexes on the table.

Concurrency: runs share the ``stg_*`` tables of a schema, so a run holds a session-level advisory
lock on the schema from loading its staging until it closes the warehouse, and every merge
transaction starts with ``pg_advisory_xact_lock`` on the same key (the merge may also run from a
separate connection, e.g. an Airflow task). A second run waits; it never interleaves.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import schema
from ..errors import ConfigError, mask_url, scrub_url
from ..schema import Table
from ..sql import Names, lock_key, placeholders
from .base import LakeApply, MergeResult, Warehouse

_DML = re.compile(r"\s*(INSERT|DELETE|UPDATE)\b", re.IGNORECASE)
_BATCH_ROWS = 1 << 16
CONNECT_TIMEOUT_S = 10
MERGE_WORK_MEM = "256MB"  # per sort or hash of the merge transaction (the server's default is 4 MB)

# PostgreSQL / Redshift type OIDs -> Arrow types (others are inferred from the values).
OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
}


def rows_to_arrow(description: Sequence[Any] | None, rows: Sequence[Sequence[Any]]) -> pa.Table:
    """A DB-API result (PostgreSQL type OIDs in ``description``) as an Arrow table."""
    if not description:
        return pa.table({})
    names = [d[0] for d in description]
    arrays = [pa.array([r[i] for r in rows], type=OID_TYPES.get(int(d[1]))) for i, d in enumerate(description)]
    return pa.Table.from_arrays(arrays, names=names)


def _open(part: str) -> Any:
    if "://" in part:
        from ..sources import filesystem

        fs, path = filesystem(part)
        return fs.open(path, "rb")
    return open(part, "rb")


# ``information_schema.columns.data_type`` -> the Arrow type whose binary form the column reads.
_COLUMN_TYPES: dict[str, pa.DataType] = {
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "bigint": pa.int64(),
    "integer": pa.int32(),
    "smallint": pa.int16(),
    "double precision": pa.float64(),
    "real": pa.float32(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"),
}


def _parquet_batches(parts: Sequence[str], columns: list[str]) -> Iterator[pa.RecordBatch]:
    for part in parts:
        with _open(part) as fh:
            pf = pq.ParquetFile(fh)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise ValueError(f"{part} has no column {missing[0]!r}")
            yield from pf.iter_batches(batch_size=_BATCH_ROWS, columns=columns)


def _rows_per_week(dates: pa.Array | pa.ChunkedArray) -> Counter[dt.date]:
    """Rows by the Monday of their ``date``'s week (the partition they go to)."""
    weeks: Counter[dt.date] = Counter()
    for item in pc.value_counts(dates).to_pylist():
        day = item["values"]
        if day is not None:  # a null date is refused by the table's NOT NULL
            weeks[day - dt.timedelta(days=day.weekday())] += item["counts"]
    return weeks


def _rebuild_pays(estimate: float, adding: int) -> bool:
    """Whether dropping a table's (or partition's) indexes and building them after copying ``adding`` rows in
    costs less than inserting every row through them: when it holds (``reltuples``, -1 unknown) no more rows
    than the copy brings."""
    return 0 <= estimate <= adding


def _file_weeks(parts: Sequence[str]) -> Counter[dt.date]:
    weeks: Counter[dt.date] = Counter()
    for part in parts:
        with _open(part) as fh:
            weeks.update(_rows_per_week(pq.ParquetFile(fh).read(columns=["date"]).column(0)))
    return weeks


class PostgresWarehouse(Warehouse):
    placeholder = "%s"

    def __init__(self, url: str, schema_name: str) -> None:
        super().__init__(schema_name)
        import psycopg

        self.names = Names(schema_name, "postgres")
        self.url = mask_url(url)
        # A bounded wait for an unreachable server (unless the URL sets its own connect_timeout).
        timeout = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT_S}
        try:
            self.con = psycopg.connect(url, autocommit=True, application_name="fitbit-pipeline", **timeout)
        except psycopg.Error as exc:  # a bad URL, an unknown host, refused, timed out, authentication
            message = " ".join(scrub_url(str(exc), url).split())
            raise ConfigError(
                "FITBIT_WAREHOUSE", f"cannot connect to the PostgreSQL warehouse {self.url}: {message}"
            ) from None
        self._lock_key = lock_key(schema_name)
        self._holds_schema = False
        self._weeks: dict[Table, Counter[dt.date]] | None = None  # the merge's rows by partition week

    # -- engine primitives ------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.con.cursor() as cur:
            cur.execute(placeholders(sql, self.placeholder), list(params))
            return cur.rowcount if _DML.match(sql) else -1

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.con.cursor() as cur:
            cur.execute(placeholders(sql, self.placeholder), list(params))
            return cur.fetchall()

    def query_arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        with self.con.cursor() as cur:
            cur.execute(placeholders(sql, self.placeholder), list(params))
            description = [(c.name, c.type_code) for c in cur.description or []]
            return rows_to_arrow(description, cur.fetchall())

    def stream_arrow(self, sql: str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """A server-side cursor: memory stays at one batch whatever the table's size."""
        with self.con.transaction(), self.con.cursor(name="fitbit_stream") as cur:
            cur.execute(placeholders(sql, self.placeholder), [])
            while rows := cur.fetchmany(batch_rows):
                description = [(c.name, c.type_code) for c in cur.description or []]
                yield from rows_to_arrow(description, rows).to_batches()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction (a savepoint when nested); rolled back on any exception."""
        with self.con.transaction():
            yield

    def load_table(self, table_name: str, parts: Sequence[str]) -> None:
        """Stream the Parquet parts into one binary ``COPY ... FROM STDIN``."""
        if parts:
            target = self._column_types(table_name)
            self._copy(table_name, _parquet_batches(parts, target.names), target)

    def insert_arrow(self, table: Table, data: pa.Table) -> None:
        rebuild = (
            self._prepare_partitions(table, _rows_per_week(data.column("date"))) if self._partitioned(table) else {}
        )
        self._copy_rebuilding(table.name, data.select(table.columns).to_batches(max_chunksize=_BATCH_ROWS), rebuild)

    def _column_types(self, table_name: str) -> pa.Schema:
        """The table's columns, typed as its binary ``COPY`` reads them (tables an earlier version made may
        differ from the model: rows are cast to what the table holds)."""
        found = self.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position",
            [self.names.schema, table_name],
        )
        if not found:
            raise ValueError(f"no table {table_name} in schema {self.names.schema}")
        unknown = [(c, t) for c, t in found if t not in _COLUMN_TYPES]
        if unknown:
            raise ValueError(f"{table_name}.{unknown[0][0]} has a type the loader does not write: {unknown[0][1]}")
        return pa.schema([pa.field(str(c), _COLUMN_TYPES[str(t)]) for c, t in found])

    def _copy(self, table_name: str, batches: Iterable[pa.RecordBatch], target: pa.Schema | None = None) -> int:
        """Binary ``COPY`` of ``batches`` (the table's columns, by name) into ``table_name``; rows copied.
        ``target``: the table's :meth:`_column_types`, when the caller has them already."""
        import pgpq

        target = target or self._column_types(table_name)
        encoder = pgpq.ArrowToPostgresBinaryEncoder(target)
        rows = 0
        statement = self.names.copy_from_stdin(table_name, target.names, binary=True)
        with self.con.cursor() as cur, cur.copy(statement) as copy:
            copy.write(encoder.write_header())
            for batch in batches:
                columns = [batch.column(f.name).cast(f.type) for f in target]
                copy.write(encoder.write_batch(pa.RecordBatch.from_arrays(columns, schema=target)))
                rows += batch.num_rows
            copy.write(encoder.finish())
        return rows

    def close(self) -> None:
        self.con.close()  # also releases the schema lock

    # -- PostgreSQL specifics -------------------------------------------------------------
    def _lock_schema(self) -> None:
        """Hold the schema's advisory lock (session level) until the connection closes."""
        if not self._holds_schema:
            self.execute("SELECT pg_advisory_lock(?)", [self._lock_key])
            self._holds_schema = True

    def ensure_schema(self) -> None:
        """Tables and their indexes. Creating takes the schema lock (concurrent CREATE ... IF NOT EXISTS
        can collide); when everything exists nothing is locked, so ``status`` never waits for a run."""
        if not self._missing_objects():
            return
        with self.transaction():
            for sql, params in self.names.merge_lock():
                self.execute(sql, params)
            super().ensure_schema()
            existing = self._existing_indexes()
            for name, statement in self._table_indexes().items():
                if name not in existing:  # CREATE INDEX IF NOT EXISTS would still lock the table
                    self.execute(statement)

    def _existing_indexes(self) -> set[str]:
        return {r[0] for r in self.query("SELECT indexname FROM pg_indexes WHERE schemaname = ?", [self.names.schema])}

    def _partitioned_tables(self) -> set[str]:
        return {
            r[0]
            for r in self.query(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ? AND c.relkind = 'p'",
                [self.names.schema],
            )
        }

    def _partitioned(self, t: Table) -> bool:
        return self.names.partitioned(t) and t.name in self._partitioned_tables()

    def _table_indexes(self) -> dict[str, str]:
        """The indexes on the tables themselves (a partitioned table's are on its partitions)."""
        partitioned = self._partitioned_tables()
        return {
            name: statement
            for t in schema.ALL_TABLES
            if t.name not in partitioned
            for name, statement in self.names.create_indexes(t).items()
        }

    def _missing_objects(self) -> bool:
        tables = {
            r[0]
            for r in self.query(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [self.names.schema]
            )
        }
        indexes = set(self._table_indexes())
        complete = {t.name for t in schema.ALL_TABLES} <= tables and indexes <= self._existing_indexes()
        return not complete or bool(self.missing_columns() or self.widened_columns() or self.relaxed_columns())

    def load_staging(self, parts_by_table: dict[str, list[str]]) -> None:
        """Replace the ``stg_*`` tables in one transaction, holding the schema until this run closes. The data
        rows are not staged: the merge copies them from the lake (:meth:`apply_data`)."""
        self._lock_schema()
        data = {t.name for t in schema.DATA_TABLES}
        with self.transaction():
            super().load_staging({name: parts for name, parts in parts_by_table.items() if name not in data})
            for t in schema.STAGED_TABLES:
                if t.name not in data:
                    self.execute(self.names.analyze(t.staging_name))

    def loads_lake_files(self) -> bool:
        return True

    def insert_run_rows(self, t: Table, lake: LakeApply) -> int:
        """Copy in the lake files holding the run's rows of ``t`` (once, straight into the production table),
        into weekly partitions made ready for them, or without the indexes a bulk copy is better off without."""
        files = lake.added.get(t.name, [])
        if not files:
            return 0
        weeks = (self._weeks if self._weeks is not None else self._partition_weeks(lake)).get(t)
        if weeks is not None:
            rebuild = self._prepare_partitions(t, weeks)
        else:
            rebuild = self._indexes_to_rebuild(t, lake.rows.get(t.name, 0))
        return self._copy_rebuilding(t.name, _parquet_batches(files, t.columns), rebuild)

    def _copy_rebuilding(self, table_name: str, batches: Iterable[pa.RecordBatch], rebuild: dict[str, str]) -> int:
        """Copy ``batches`` in without the indexes of ``rebuild`` (name -> DDL), then build those once."""
        for name in rebuild:
            self.execute(f"DROP INDEX IF EXISTS {self.names.q(name)}")
        copied = self._copy(table_name, batches)
        for statement in rebuild.values():
            self.execute(statement)
        return copied

    def _partitions(self, t: Table) -> dict[str, float]:
        """The partitions of ``t`` with their estimated rows (``reltuples``; -1 before any statistics)."""
        found = self.query(
            "SELECT c.relname, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(? AS regclass)",
            [self.names.q(t.name)],
        )
        return {str(name): float(rows) for name, rows in found}

    def _create_partitions(self, t: Table, weeks: Iterable[dt.date]) -> dict[str, float]:
        """Create the missing weekly partitions of ``t`` (empty, without indexes); then every partition of ``t``
        with its estimated rows (-1 for those just created)."""
        held = self._partitions(t)
        for monday in sorted(weeks):
            name, statement = self.names.partition(t, monday)
            if name not in held:
                self.execute(statement)
                held[name] = -1.0
        return held

    def _prepare_partitions(self, t: Table, weeks: Counter[dt.date]) -> dict[str, str]:
        """Create the missing weekly partitions of ``t`` for the rows to copy; the indexes to build after the
        copy: those of partitions without them (new ones) and of every partition the copy at least doubles
        (as :meth:`_indexes_to_rebuild` does for a whole table)."""
        held, indexes = self._create_partitions(t, weeks), self._existing_indexes()
        rebuild: dict[str, str] = {}
        for monday, adding in sorted(weeks.items()):
            name = self.names.partition(t, monday)[0]
            wanted = self.names.create_indexes(t, partition=name)
            if not set(wanted) <= indexes or _rebuild_pays(held[name], adding):
                rebuild |= wanted
        return rebuild

    def _partition_weeks(self, lake: LakeApply) -> dict[Table, Counter[dt.date]]:
        """Per partitioned table, the run's rows by week (read from the ``date`` column of its lake files)."""
        partitioned = self._partitioned_tables()
        return {
            t: _file_weeks(lake.added[t.name])
            for t in schema.DATA_TABLES
            if t.name in partitioned and lake.added.get(t.name)
        }

    def _indexes_to_rebuild(self, t: Table, adding: int) -> dict[str, str]:
        """The indexes of ``t`` to drop before copying ``adding`` rows in and build again after: when the table
        is empty or the copy brings at least as many rows as it holds, one sorted build costs less than
        inserting every row into the index (PostgreSQL's own advice for bulk loads). Readers of the table then
        wait for the apply to commit (dropping an index locks the table); an ordinary weekly load keeps its
        indexes."""
        indexes = self.names.create_indexes(t)
        if not indexes:
            return {}
        table = self.names.q(t.name)
        if not self.query(f"SELECT 1 FROM {table} LIMIT 1"):
            return indexes
        estimate = float(self.query("SELECT reltuples FROM pg_class WHERE oid = CAST(? AS regclass)", [table])[0][0])
        return indexes if _rebuild_pays(estimate, adding) else {}

    def merge(self, run_id: str, lake: LakeApply, valid_day_minutes: int = 600) -> MergeResult:
        """The shared merge in one transaction that first takes ``pg_advisory_xact_lock``.

        The weekly partitions the run's rows need are created before, empty and without indexes, in a short
        transaction of their own: creating a partition locks its whole table, and readers of the table would
        otherwise wait for the apply to commit. The apply then copies into them and indexes them, which
        readers do not wait for."""
        self._weeks = self._partition_weeks(lake)
        try:
            if self._weeks:
                with self.transaction():
                    for sql, params in self.names.merge_lock():
                        self.execute(sql, params)
                    for t, weeks in self._weeks.items():
                        self._create_partitions(t, weeks)
            with self.transaction():
                for sql, params in self.names.merge_lock():
                    self.execute(sql, params)
                # the wear aggregate groups every heart sample of the touched days by minute, and an index rebuilt
                # after a bulk copy sorts the table's keys: both in memory rather than spilled
                self.execute(f"SET LOCAL work_mem = '{MERGE_WORK_MEM}'")
                self.execute(f"SET LOCAL maintenance_work_mem = '{MERGE_WORK_MEM}'")
                return super().merge(run_id, lake, valid_day_minutes)
        finally:
            self._weeks = None
