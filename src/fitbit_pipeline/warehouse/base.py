"""The warehouse interface and the engine-neutral part of the two-stage load."""

from __future__ import annotations

import abc
import datetime as dt
import json
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from .. import faults, schema
from ..derived_sql import derived_statements
from ..errors import SafeError
from ..fitabase.bundles import container
from ..schema import Table
from ..sql import Names, WinnerDays


class AccountingError(SafeError):
    """Rows read did not equal rows loaded + rejected + duplicate + superseded."""


@dataclass
class MergeResult:
    inserted: dict[str, int] = field(default_factory=dict)


@dataclass
class LakeApply:
    """What the warehouse applies of a lake commit: per data table its snapshot, the run's rows in it, the
    snapshot's data files (for warehouses whose data tables are views) and the files holding the run's rows
    (for warehouses that load them: :meth:`Warehouse.loads_lake_files`)."""

    run_id: str
    snapshots: dict[str, int | None]
    rows: dict[str, int]
    files: dict[str, list[str]]
    added: dict[str, list[str]] = field(default_factory=dict)

    def state_rows(self, run_id: str) -> list[tuple[object, ...]]:
        """The ``pipeline_lake_state`` rows, in its column order (a dozen rows: bound as parameters; an Arrow
        table built from Python objects would import pandas, where installed, into the run's process before
        its transform, on a fresh lake)."""
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        values = [
            {"table_name": t, "snapshot_id": s, "run_id": run_id, "applied_at": now} for t, s in self.snapshots.items()
        ]
        return [tuple(v[c] for c in schema.PIPELINE_LAKE_STATE.columns) for v in values]


class Warehouse(abc.ABC):
    """Create tables, load staging, merge into production, record the ledger and runs."""

    placeholder = "?"

    def __init__(self, schema_name: str) -> None:
        self.names = Names(schema_name)

    # -- engine primitives ------------------------------------------------------------
    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abc.abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    def query_arrow(self, sql: str, params: Sequence[Any] = ()) -> pa.Table: ...

    def stream_arrow(self, sql: str, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """The result of ``sql`` in record batches (a driver with a server-side cursor streams it)."""
        yield from self.query_arrow(sql).to_batches(max_chunksize=batch_rows)

    @abc.abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]: ...

    @abc.abstractmethod
    def load_table(self, table_name: str, parts: Sequence[str]) -> None:
        """Append the rows of Parquet files ``parts`` to ``table_name`` (bulk, never row by row)."""

    @abc.abstractmethod
    def insert_arrow(self, table: Table, data: pa.Table) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- the pipeline's operations -------------------------------------------------------
    def ensure_schema(self) -> None:
        views = self.follows_lake_by_views()
        with self.transaction():
            self.execute(self.names.create_schema())
            for t in schema.ALL_TABLES:
                if not (views and t.data):  # views are made when the lake is first applied
                    self.execute(self.names.create_table(t))
            for statement in self.missing_columns() + self.widened_columns() + self.relaxed_columns():
                self.execute(statement)

    def missing_columns(self) -> list[str]:
        """``ALTER TABLE ... ADD COLUMN`` for the nullable columns that tables created by an earlier version
        lack (``ts_utc``, ``tz_flag``): their old rows read as null."""
        found = self.query(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = ?",
            [self.names.schema],
        )
        have = {(str(t), str(c)) for t, c in found}
        tables = {t for t, _ in have}
        return [
            self.names.add_column(t, f)
            for t in schema.ALL_TABLES
            if t.name in tables
            for f in t.schema
            if f.nullable and (t.name, f.name) not in have
        ]

    def widened_columns(self) -> list[str]:
        """``ALTER TABLE ... ALTER COLUMN ... TYPE`` for intraday measures an earlier version kept as integers
        (they hold fractions now: some exporters send 72.4 where Fitbit sends 72); integers convert exactly."""
        found = self.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = ?",
            [self.names.schema],
        )
        types = {(str(t), str(c)): str(d).lower() for t, c, d in found}
        return [
            self.names.alter_type(t, f)
            for t in schema.INTRADAY.values()
            for f in t.schema
            if pa.types.is_floating(f.type) and types.get((t.name, f.name), "double").startswith(("int", "bigint"))
        ]

    def relaxed_columns(self) -> list[str]:
        """``ALTER TABLE ... ALTER COLUMN ... DROP NOT NULL`` for intraday extras an earlier version declared
        NOT NULL (null now where a source does not give them). Redshift cannot: see README."""
        if self.names.dialect == "redshift":
            return []
        found = self.query(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND is_nullable = 'NO'",
            [self.names.schema],
        )
        required = {(str(t), str(c)) for t, c in found}
        return [
            self.names.drop_not_null(t, f)
            for t in schema.INTRADAY.values()
            for f in t.schema
            if f.nullable and (t.name, f.name) in required
        ]

    def known_files(self, listed: Collection[str]) -> dict[str, str]:
        """``source_file -> fingerprint`` of the ``listed`` files the ledger holds. The participant-day slices of a
        whole export (Fitabase, Fitbit account export) stand for their bundle (the listing names the bundle),
        with the fingerprint of the slice processed last: a day an older version of the export held and the
        newer one does not keeps its old fingerprint, and must not make the bundle look changed forever.

        The ledger grows by every file of every week (2.8 million rows after a year of 1,000 participants): the
        engine filters it by the listed names (one array parameter), so memory follows the listing, not the
        study's history. Redshift takes no array parameters: there every row comes back and is filtered here."""
        listed = set(listed)
        params = [] if self.names.dialect == "redshift" else [sorted(listed)]
        known: dict[str, str] = {}
        latest: dict[str, Any] = {}
        for source_file, fingerprint, processed_at in self.query(self.names.known_files(), params):
            bundle = container(source_file)
            if bundle is None:
                if source_file in listed:
                    known[source_file] = fingerprint  # one ledger row per file
            elif bundle in listed and (bundle not in latest or processed_at >= latest[bundle]):
                known[bundle], latest[bundle] = fingerprint, processed_at
        return known

    def files_with_rejects(self) -> set[str]:
        """Files rejected whole, or with rejected rows: candidates for ``--retry-rejected``."""
        files = self.names.q(schema.PIPELINE_FILES.name)
        found = self.query(f"SELECT source_file FROM {files} WHERE status = 'rejected' OR rows_rejected > 0")
        return {container(r[0]) or r[0] for r in found}

    def files_failed_to_read(self) -> set[str]:
        """Files whose last read hit a storage or network fault: every run retries them."""
        files = self.names.q(schema.PIPELINE_FILES.name)
        return {
            container(r[0]) or r[0]
            for r in self.query(f"SELECT source_file FROM {files} WHERE rule_id = 'read_failed'")
        }

    def staged_rule_counts(self) -> list[tuple[str, int]]:
        rejects = self.names.q(schema.REJECTED_RECORDS.staging_name)
        return [
            (r, int(n)) for r, n in self.query(f"SELECT rule_id, COUNT(*) FROM {rejects} GROUP BY 1 ORDER BY 2 DESC, 1")
        ]

    def load_staging(self, parts_by_table: dict[str, list[str]]) -> None:
        """Replace every ``stg_*`` table with the run's staging Parquet."""
        for t in schema.STAGED_TABLES:
            self.execute(self.names.drop_staging(t))
            self.execute(self.names.create_table(t, staging=True))
            parts = parts_by_table.get(t.name, [])
            if parts:
                self.load_table(t.staging_name, parts)

    def winners(self) -> pa.Table:
        """The staged deliveries that win their participant-day-activity (decided before the lake commit)."""
        for sql, params in self.names.winner_statements():
            self.execute(sql, params)
        return self.query_arrow(self.names.winners())

    def lake_state(self) -> dict[str, tuple[int | None, str]]:
        """Per data table, the lake snapshot this warehouse holds and the run that committed it."""
        return {str(t): (None if s is None else int(s), str(r)) for t, s, r in self.query(self.names.lake_state())}

    def applied(self, run_id: str) -> bool:
        return any(r == run_id for _, r in self.lake_state().values())

    def follow_lake(self, lake_uri: str) -> None:  # noqa: B027 - a hook: most warehouses need nothing
        """Called once the run knows its lake (the embedded DuckDB then reads it through views)."""

    def follows_lake_by_views(self) -> bool:
        """Whether the data tables are views over the lake's files (the embedded DuckDB on a local lake)."""
        return False

    def refresh_views(self, files: dict[str, list[str]]) -> None:
        raise NotImplementedError("this warehouse keeps its own copy of the data tables")

    def loads_lake_files(self) -> bool:
        """Whether :meth:`apply_data` loads the lake files of the run (``LakeApply.added``) rather than the
        ``stg_*`` data tables, which then stay empty."""
        return False

    def apply_data(self, lake: LakeApply, days: WinnerDays) -> dict[str, int]:
        """Per data table of a warehouse keeping its own copy, inside the merge transaction once the winners
        table is made: delete the participant-days its activity's winners replace (``days``: their first and
        last day), then insert the run's rows (:meth:`insert_run_rows`). Rows inserted per table."""
        inserted: dict[str, int] = {}
        for t in schema.DATA_TABLES:
            if t.activity in days:
                self.execute(*self.names.delete_replaced(t, days[t.activity]))
            inserted[t.name] = self.insert_run_rows(t, lake)
        return inserted

    def insert_run_rows(self, t: Table, lake: LakeApply) -> int:
        """Insert the run's rows of ``t``; how many. Here the rows of its ``stg_`` table from winning files."""
        return max(self.execute(*self.names.insert_staged(t)), 0)

    def winner_days(self) -> WinnerDays:
        """The first and last day of the winners of each activity that has any."""
        return {str(activity): (first, last) for activity, first, last in self.query(self.names.winner_days())}

    def merge(self, run_id: str, lake: LakeApply, valid_day_minutes: int = 600) -> MergeResult:
        """Apply a run the lake has committed, in one transaction; checks the accounting identity.

        The data tables follow the lake: views over its current files, or (a warehouse with its own copy)
        the winners' participant-days replaced by their staged rows, which are the rows the lake commit
        added. Deliveries, the ledger, rejects, findings and the derived tables (cross-file findings,
        ``daily_wear``) change in the same transaction, which also records the lake snapshots it holds.
        Applying a run that is already applied does nothing.
        """
        with self.transaction():
            if self.applied(run_id):
                return MergeResult(dict(lake.rows))
            views = self.follows_lake_by_views()
            if views:
                self.refresh_views(lake.files)
            self._execute_all(self.names.winner_statements())
            days = self.winner_days()
            inserted = {} if views else self.apply_data(lake, days)
            self._execute_all(self.names.ledger_statements())
            if days:
                span = (min(first for first, _ in days.values()), max(last for _, last in days.values()))
                self._execute_all(derived_statements(self.names, run_id, valid_day_minutes, span))
            if views:
                inserted = dict(lake.rows)
            self._check_accounting(run_id, inserted)
            self._record_lake_state(lake, run_id)
            faults.point("warehouse-before-commit")
        return MergeResult(inserted)

    def _execute_all(self, statements: list[tuple[str, list[object]]]) -> None:
        for sql, params in statements:
            self.execute(sql, params)

    def check_staged_accounting(self) -> None:
        """Every staged file: rows read = valid + rejected + duplicate (checked before the lake commit)."""
        files = self.names.q(schema.PIPELINE_FILES.staging_name)
        bad = self.query(
            f"SELECT source_file FROM {files} WHERE rows_read <> rows_valid + rows_rejected + rows_duplicate"
        )
        if bad:
            raise AccountingError(f"{len(bad)} staged file(s) break rows read = valid + rejected + duplicate")

    def _check_accounting(self, run_id: str, inserted: dict[str, int]) -> None:
        bad = self.query(self.names.accounting_violations(), [run_id])
        if bad:
            raise AccountingError(f"{len(bad)} file(s) break rows read = loaded + rejected: {bad[0][0]}")
        loaded = self.query(
            f"SELECT COALESCE(SUM(rows_loaded), 0) FROM {self.names.q('pipeline_files')} WHERE run_id = ?",
            [run_id],
        )[0][0]
        data_rows = sum(inserted.get(t.name, 0) for t in schema.DATA_TABLES)
        if int(loaded) != data_rows:
            raise AccountingError(f"ledger says {loaded} rows loaded, the lake and warehouse hold {data_rows}")

    def adopt_lake(self, lake: LakeApply) -> None:
        """Follow the lake from now on (first run of this version, once the lake holds every row)."""
        with self.transaction():
            if self.follows_lake_by_views():
                self.refresh_views(lake.files)
            self._record_lake_state(lake, lake.run_id)

    def forgotten(self) -> set[str]:
        """The hashes of the participants forgotten (their files are skipped when delivered again)."""
        table = self.names.q(schema.PIPELINE_FORGOTTEN.name)
        return {str(h) for (h,) in self.query(f"SELECT DISTINCT participant_hash FROM {table}")}

    def forget(
        self, participant: str, lake: LakeApply, audit: dict[str, Any], lake_rows: dict[str, int]
    ) -> dict[str, int]:
        """Remove every row of ``participant`` from every table holding participants, the data tables following
        the lake that no longer holds them, empty the ``stg_`` tables (the last run's staging, whose files are
        removed too), and record ``audit`` (no id), in one transaction; the rows removed per table (the lake's
        rows of a table that is a view over it)."""
        removed: dict[str, int] = {}
        views = self.follows_lake_by_views()
        with self.transaction():
            if views:
                self.refresh_views(lake.files)
            self.load_staging({})
            for t in schema.ALL_TABLES:
                if "participant_id" in t.columns and not (views and t.data):
                    gone = self.execute(f"DELETE FROM {self.names.q(t.name)} WHERE participant_id = ?", [participant])
                    if gone > 0:
                        removed[t.name] = gone
            if views:
                removed.update({name: n for name, n in lake_rows.items() if n})
            total = sum(removed.values())
            if total or not self.query(
                f"SELECT 1 FROM {self.names.q(schema.PIPELINE_FORGOTTEN.name)} WHERE participant_hash = ?",
                [audit["participant_hash"]],
            ):
                row = {**audit, "rows_removed": total, "tables": json.dumps(removed, sort_keys=True)}
                values = [row[c] for c in schema.PIPELINE_FORGOTTEN.columns]
                self.execute(self.names.insert_values(schema.PIPELINE_FORGOTTEN, 1), values)
            self._record_lake_state(lake, lake.run_id)
            faults.point("forget-before-commit")
        return removed

    def _record_lake_state(self, lake: LakeApply, run_id: str) -> None:
        """The snapshots this warehouse now holds (inside the caller's transaction)."""
        self.execute(self.names.clear_lake_state())
        rows = lake.state_rows(run_id)
        if rows:
            self.execute(self.names.insert_values(schema.PIPELINE_LAKE_STATE, len(rows)), [v for r in rows for v in r])

    def record_run(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Record a run's statistics, replacing what an earlier attempt of the same run recorded."""
        data = pa.Table.from_pylist(rows, schema=schema.PIPELINE_RUNS.schema)
        with self.transaction():
            self.execute(f"DELETE FROM {self.names.q(schema.PIPELINE_RUNS.name)} WHERE run_id = ?", [run_id])
            self.insert_arrow(schema.PIPELINE_RUNS, data)

    def file_stats(self, run_id: str) -> list[tuple[Any, ...]]:
        return self.query(self.names.run_file_stats(), [run_id])

    def warnings(self, run_id: str) -> dict[str, int]:
        return {a: int(n) for a, n in self.query(self.names.run_warnings(), [run_id])}

    def rule_counts(self, run_id: str) -> list[tuple[str, int]]:
        return [(r, int(n)) for r, n in self.query(self.names.run_rules(), [run_id])]

    def recent_runs(self, limit: int = 10) -> pa.Table:
        runs = self.names.q(schema.PIPELINE_RUNS.name)
        return self.query_arrow(
            f"SELECT * FROM {runs} WHERE activity = 'ALL' ORDER BY started_at DESC LIMIT ?", [limit]
        )

    def run_activities(self, run_id: str) -> pa.Table:
        runs = self.names.q(schema.PIPELINE_RUNS.name)
        return self.query_arrow(
            f"SELECT * FROM {runs} WHERE run_id = ? AND activity <> 'ALL' ORDER BY activity", [run_id]
        )

    def table_counts(self) -> dict[str, int]:
        return {
            t.name: int(self.query(f"SELECT COUNT(*) FROM {self.names.q(t.name)}")[0][0]) for t in schema.ALL_TABLES
        }

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
