"""The Parquet lake: a staging area per run and a production layer partitioned by date.

Layout below the lake URI::

    staging/run_id=<run>/<table>/part-<chunk>.parquet     what the warehouse loads
    production/<table>/date=<YYYY-MM-DD>/data.parquet     the current data, one file per day
    quarantine/run_id=<run>/<digest>.json                 raw bytes of rejected files

The production layer is refreshed after the warehouse merge with the same winners: for each
affected day the partition is rebuilt (kept rows + new deliveries) in a temporary folder and
then moved into place with a rename, so readers never see a half-written file.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import posixpath
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import schema
from .sources import filesystem, is_local
from .sql import ident, sql_type


def staging_uri(lake: str, run_id: str) -> str:
    return posixpath.join(lake, "staging", f"run_id={run_id}")


def quarantine_uri(lake: str, run_id: str) -> str:
    return posixpath.join(lake, "quarantine", f"run_id={run_id}")


def production_uri(lake: str, table: str) -> str:
    return posixpath.join(lake, "production", table)


def _download(fs: Any, folder: str, into: str) -> None:
    """Copy the files below remote ``folder`` to ``into/<basename of folder>/...``."""
    if not fs.exists(folder):
        return
    base = posixpath.dirname(folder.rstrip("/"))
    for path in fs.find(folder):
        target = posixpath.join(into, posixpath.relpath(path, base))
        os.makedirs(posixpath.dirname(target), exist_ok=True)
        fs.get_file(path, target)


def _parquet_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def publish(lake: str, staging: str, winners: pa.Table, run_id: str) -> dict[str, int]:
    """Rebuild the production partitions touched by ``winners``; partitions rewritten per table."""
    publication = Publication(lake, staging, run_id, speculate=False)
    try:
        return publication.finish(winners)
    finally:
        publication.close()


class Publication:
    """The refresh of the production lake after one merge, whose heavy part can start before the merge.

    The winners' staging rows are streamed part by part (one chunk in memory at a time) into one file per
    day, sorted by participant and time, in a folder of the run below ``production/_tmp``. A day that
    already has production data (a re-delivery) or whose rows do not arrive in that order is rebuilt by
    DuckDB instead: the kept production rows plus the new ones, sorted, within DuckDB's memory limit.
    Then each day's partition is moved into place (:meth:`finish`); nothing is visible before.

    With ``speculate`` the streaming starts at once, in a background thread, on the assumption that every
    staged document wins (the usual case), so that it overlaps the warehouse merge. :meth:`finish` checks
    the assumption against the real winners and streams again any table where it did not hold.
    """

    def __init__(self, lake: str, staging: str, run_id: str, *, speculate: bool = True) -> None:
        self.lake, self.staging, self.run_id = lake, staging, run_id
        self.tmp_root = posixpath.join(lake, "production", "_tmp", f"run_id={run_id}")
        self._pool: ThreadPoolExecutor | None = None
        self._streamed: dict[str, Future[tuple[set[dt.date], set[str]]]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._deliveries: dict[str, set[str]] | None = None
        if is_local(lake):
            shutil.rmtree(self.tmp_root, ignore_errors=True)  # what an interrupted attempt of this run left
        if speculate and is_local(lake):
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")
            for t in schema.DATA_TABLES:
                self._streamed[t.name] = self._pool.submit(self._stream, t, None)

    def _stream(self, t: schema.Table, files: set[str] | None) -> tuple[set[dt.date], set[str]]:
        """The new files of ``t`` (rows of ``files``, None: all staged rows) in ``<tmp>/<table>/new/date=<d>/``.

        Returns the days whose rows are not sorted, and the source files whose rows are included. The
        transform writes the intraday staging one sorted file per day: when every staged document of the
        activity is wanted, those files are linked, not rewritten.
        """
        fs, _ = filesystem(self.lake)
        parts = sorted(fs.glob(posixpath.join(self.staging, t.name, "*.parquet")))
        folder = posixpath.join(self.tmp_root, t.name, "new")
        shutil.rmtree(folder, ignore_errors=True)
        by_day = _day_parts(parts) if t.kind == "intraday" else None
        if by_day is not None:
            staged = self._staged_files(t.activity)
            if files is None or staged <= files:
                _link_days(by_day, folder)
                return set(), staged
        return _stream_days(parts, files, t, folder, self._stop)

    def _staged_files(self, activity: str | None) -> set[str]:
        """The documents of ``activity`` this run staged (whether or not they have intraday rows)."""
        with self._lock:
            if self._deliveries is None:
                fs, _ = filesystem(self.lake)
                parts = sorted(fs.glob(posixpath.join(self.staging, schema.PIPELINE_DELIVERIES.name, "*.parquet")))
                tables = [pq.ParquetFile(p).read(columns=["activity", "source_file"]) for p in parts]
                self._deliveries = {}
                for table in tables:
                    for a, f in zip(table["activity"].to_pylist(), table["source_file"].to_pylist(), strict=True):
                        self._deliveries.setdefault(a, set()).add(f)
            return self._deliveries.get(activity or "", set())

    def finish(self, winners: pa.Table) -> dict[str, int]:
        """Bring the production partitions touched by ``winners`` up to date; partitions rewritten per table."""
        if not is_local(self.lake):
            return self._finish_remote(winners)
        fs, _ = filesystem(self.lake)
        todo: list[tuple[schema.Table, pa.Table, set[str]]] = []
        for t in schema.DATA_TABLES:
            mine = winners.filter(pc.equal(winners["activity"], t.activity))
            if mine.num_rows:
                todo.append((t, mine, set(mine["source_file"].to_pylist())))
        streamed: dict[str, set[dt.date]] = {}
        again = []
        for t, _mine, files in todo:
            future = self._streamed.get(t.name)
            result = future.result() if future is not None else None
            if result is not None and result[1] <= files:  # every streamed row belongs to a winner
                streamed[t.name] = result[0]
            else:
                again.append((t, files))
        if again:  # in parallel (pyarrow releases the GIL)
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                for (t, _files), (unsorted, _seen) in zip(
                    again, pool.map(lambda job: self._stream(*job), again), strict=True
                ):
                    streamed[t.name] = unsorted
        rewritten: dict[str, int] = {}
        con: duckdb.DuckDBPyConnection | None = None
        try:
            for t, mine, _files in todo:
                days = sorted(set(mine["date"].to_pylist()))
                prod = production_uri(self.lake, t.name)
                tmp = posixpath.join(self.tmp_root, t.name)
                new_dir = posixpath.join(tmp, "new")
                old = {d: sorted(fs.glob(posixpath.join(prod, f"date={d.isoformat()}", "*.parquet"))) for d in days}
                rebuild = [d for d in days if old[d] or d in streamed[t.name]]
                sources = {d: posixpath.join(new_dir, f"date={d.isoformat()}") for d in days}
                if rebuild:
                    if con is None:
                        con = duckdb.connect(config=_DUCKDB_CONFIG)
                    rebuilt = posixpath.join(tmp, "rebuilt")
                    _rebuild_days(con, t, mine, rebuild, old, sources, rebuilt)
                    sources.update({d: posixpath.join(rebuilt, f"date={d.isoformat()}") for d in rebuild})
                for d in days:
                    _swap_partition(fs, sources[d], posixpath.join(prod, f"date={d.isoformat()}"))
                rewritten[t.name] = len(days)
        finally:
            if con is not None:
                con.close()
        return rewritten

    def _finish_remote(self, winners: pa.Table) -> dict[str, int]:
        """Object storage: the same publication in a local workspace, then each rebuilt partition uploaded.

        Only what the run touches is copied down: its staging and the current files of the affected days.
        Each file goes up with one PUT, which S3 makes visible whole or not at all (never half-written);
        files a partition no longer has are deleted after the new ones are in place.
        """
        fs, _ = filesystem(self.lake)
        _, staging = filesystem(self.staging)
        _, lake = filesystem(self.lake)
        with tempfile.TemporaryDirectory(prefix="fitbit-publish-") as workspace:
            local_lake = posixpath.join(workspace, "lake")
            local_staging = staging_uri(local_lake, self.run_id)
            _download(fs, posixpath.join(staging, schema.PIPELINE_DELIVERIES.name), local_staging)
            touched: list[tuple[str, str]] = []  # (remote partition, local partition)
            for t in schema.DATA_TABLES:
                mine = winners.filter(pc.equal(winners["activity"], t.activity))
                if not mine.num_rows:
                    continue
                _download(fs, posixpath.join(staging, t.name), local_staging)
                for d in sorted(set(mine["date"].to_pylist())):
                    part = posixpath.join("production", t.name, f"date={d.isoformat()}")
                    touched.append((posixpath.join(lake, part), posixpath.join(local_lake, part)))
                    _download(fs, touched[-1][0], posixpath.dirname(touched[-1][1]))
            with Publication(local_lake, local_staging, self.run_id, speculate=False) as local:
                rewritten = local.finish(winners)
            for remote, local_dir in touched:
                names = sorted(os.listdir(local_dir)) if os.path.isdir(local_dir) else []
                for name in names:
                    fs.put_file(posixpath.join(local_dir, name), posixpath.join(remote, name))
                stale = [
                    p for p in (fs.find(remote) if fs.exists(remote) else []) if posixpath.basename(p) not in names
                ]
                if stale:
                    fs.rm(stale)
        return rewritten

    def close(self) -> None:
        """Stop the background work (if any) and remove the run's temporary files."""
        if self._pool is not None:
            self._stop.set()
            for future in self._streamed.values():
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        if is_local(self.lake):
            shutil.rmtree(self.tmp_root, ignore_errors=True)

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_DUCKDB_CONFIG = {
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
    "memory_limit": "256MB",
    "threads": os.cpu_count() or 1,
}
_STRINGS = ("participant_id", "source_file", "run_id")  # read as dictionaries: never one string per row
_FLUSH_ROWS = 1 << 18  # rows buffered over all days before they are written out


def _order_key(t: schema.Table) -> str:
    return "ts" if t.kind == "intraday" else "date"


class _DayFiles:
    """One Parquet file per day, written a row group at a time, noting the days whose rows arrive unsorted."""

    def __init__(self, t: schema.Table, folder: str) -> None:
        self.t = t
        self.folder = folder
        self.writers: dict[int, pq.ParquetWriter] = {}
        self.buffers: dict[int, list[pa.Table]] = {}
        self.buffered = 0
        self.last: dict[int, tuple[str, int]] = {}  # day -> last (participant, order key) written
        self.unsorted: set[int] = set()

    def add(self, day: int, rows: pa.Table) -> None:
        self._check_order(day, rows)
        self.buffers.setdefault(day, []).append(rows)
        self.buffered += rows.num_rows
        if self.buffered >= _FLUSH_ROWS:
            self.flush()

    def _check_order(self, day: int, rows: pa.Table) -> None:
        if day in self.unsorted or not rows.num_rows:
            return
        participant = rows["participant_id"].combine_chunks()
        names = participant.dictionary.to_pylist()
        rank = np.empty(len(names), dtype=np.int64)
        rank[np.argsort(np.array(names, dtype=object), kind="stable")] = np.arange(len(names))
        order = rank[participant.indices.to_numpy(zero_copy_only=False)]
        column = rows[_order_key(self.t)].combine_chunks()
        if pa.types.is_date32(column.type):
            column = column.cast(pa.int32())
        key = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
        same = order[1:] == order[:-1]
        if (order[1:] < order[:-1]).any() or (same & (key[1:] < key[:-1])).any():
            self.unsorted.add(day)
            return
        first = (names[participant.indices[0].as_py()], int(key[0]))
        if day in self.last and first < self.last[day]:
            self.unsorted.add(day)
            return
        self.last[day] = (names[participant.indices[-1].as_py()], int(key[-1]))

    def flush(self) -> None:
        for day, tables in self.buffers.items():
            writer = self.writers.get(day)
            if writer is None:
                folder = posixpath.join(self.folder, f"date={_EPOCH + dt.timedelta(days=day)}")
                os.makedirs(folder, exist_ok=True)
                writer = pq.ParquetWriter(
                    posixpath.join(folder, "data.parquet"), tables[0].schema, **_parquet_options(self.t)
                )
                self.writers[day] = writer
            writer.write_table(pa.concat_tables(tables), row_group_size=_FLUSH_ROWS)
        self.buffers.clear()
        self.buffered = 0

    def close(self) -> set[dt.date]:
        self.flush()
        for writer in self.writers.values():
            writer.close()
        return {_EPOCH + dt.timedelta(days=d) for d in self.unsorted}


_EPOCH = dt.date(1970, 1, 1)


def _parquet_options(t: schema.Table) -> dict[str, Any]:
    options: dict[str, Any] = {
        "compression": "zstd",
        "compression_level": 1,
        "store_schema": False,  # plain strings for every reader
        "use_dictionary": [c for c in (*_STRINGS, "date") if c in t.columns],
        "write_statistics": [c for c in ("participant_id", "date", "ts") if c in t.columns],  # for pruning
    }
    if t.kind == "intraday":
        options["column_encoding"] = {"ts": "DELTA_BINARY_PACKED"}
    return options


_DAY_PART = re.compile(r"-(\d{4}-\d{2}-\d{2})\.parquet$")


def _day_parts(parts: Sequence[str]) -> dict[dt.date, list[str]] | None:
    """Staging files by day, when every one holds a single day (``part-<chunk>-<YYYY-MM-DD>.parquet``)."""
    out: dict[dt.date, list[str]] = {}
    for part in parts:
        m = _DAY_PART.search(posixpath.basename(part))
        if m is None:
            return None
        out.setdefault(dt.date.fromisoformat(m[1]), []).append(part)
    return out


def _link_days(by_day: dict[dt.date, list[str]], folder: str) -> None:
    """Hard links (copies where links are not possible) to each day's files in ``folder/date=<d>/``."""
    for day, parts in by_day.items():
        target = posixpath.join(folder, f"date={day.isoformat()}")
        os.makedirs(target, exist_ok=True)
        for i, part in enumerate(parts):
            dst = posixpath.join(target, f"{i:05d}.parquet")
            try:
                os.link(part, dst)
            except OSError:
                shutil.copyfile(part, dst)


def _stream_days(
    parts: Sequence[str], files: set[str] | None, t: schema.Table, folder: str, stop: threading.Event | None = None
) -> tuple[set[dt.date], set[str]]:
    """Write the rows of ``files`` (None: all) in the staging ``parts`` to ``folder/date=<d>/data.parquet``.

    Returns the days whose rows did not arrive sorted, and the source files whose rows were written.
    """
    out = _DayFiles(t, folder)
    seen: set[str] = set()
    target = pa.schema(
        [pa.field(f.name, pa.dictionary(pa.int32(), f.type), f.nullable) if f.name in _STRINGS else f for f in t.schema]
    )
    try:
        for part in parts:
            if stop is not None and stop.is_set():
                raise RuntimeError("publication abandoned")
            dictionaries = [c for c in _STRINGS if c in t.columns]
            table = pq.ParquetFile(part, read_dictionary=dictionaries).read(columns=t.columns)
            table = table.cast(target)
            source = table["source_file"].combine_chunks()
            names = source.dictionary.to_pylist()
            keep = np.fromiter((files is None or n in files for n in names), dtype=bool, count=len(names))
            if not keep.any():
                continue
            indices = source.indices.to_numpy(zero_copy_only=False)
            if not keep.all():
                table = table.filter(pa.array(keep[indices]))
            seen.update(names[i] for i in np.unique(indices) if keep[i])
            days = table["date"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
            if not (np.diff(days) >= 0).all():  # staging parts come grouped by day: then only slices
                order = np.argsort(days, kind="stable")
                table, days = table.take(pa.array(order)), days[order]
            starts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist()]
            for first, end in zip(starts, [*starts[1:], len(days)], strict=True):
                out.add(int(days[first]), table.slice(first, end - first))
    finally:
        unsorted = out.close()
    return unsorted, seen


def _rebuild_days(
    con: duckdb.DuckDBPyConnection,
    t: schema.Table,
    winners: pa.Table,
    days: list[dt.date],
    old: dict[dt.date, list[str]],
    sources: dict[dt.date, str],
    out: str,
) -> None:
    """Kept production rows plus the new ones of ``days``, sorted, written to ``out/date=<d>/``."""
    cols = ", ".join(ident(c) for c in t.columns)
    selects = []
    old_files = [f for d in days for f in old[d]]
    new_files = [f for d in days for f in sorted(glob.glob(posixpath.join(sources[d], "*.parquet")))]
    con.register("winners", winners)
    try:
        if old_files:
            selects.append(
                f"SELECT {_old_columns(con, t, old_files)} FROM read_parquet({_parquet_list(old_files)}, "
                "union_by_name = true) o WHERE NOT EXISTS "
                "(SELECT 1 FROM winners w WHERE w.participant_id = o.participant_id AND w.date = o.date)"
            )
        if new_files:
            selects.append(f"SELECT {cols} FROM read_parquet({_parquet_list(new_files)})")
        os.makedirs(out, exist_ok=True)
        if selects:
            con.execute(
                f"COPY ({' UNION ALL '.join(selects)} ORDER BY participant_id, {_order_key(t)}) TO '{out}' "
                "(FORMAT parquet, PARTITION_BY (date), WRITE_PARTITION_COLUMNS true, COMPRESSION zstd, "
                "FILENAME_PATTERN 'data_{i}', OVERWRITE_OR_IGNORE true)"
            )
    finally:
        con.unregister("winners")


def _old_columns(con: duckdb.DuckDBPyConnection, t: schema.Table, files: list[str]) -> str:
    """The select list of ``t`` over production files, null for columns files written by an earlier version lack."""
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_parquet_list(files)}, union_by_name = true)")
    present = {r[0] for r in described.fetchall()}
    return ", ".join(
        ident(f.name) if f.name in present else f"CAST(NULL AS {sql_type(f.type)}) AS {ident(f.name)}" for f in t.schema
    )


def _swap_partition(fs: object, new_dir: str, part_dir: str) -> None:
    """Move a rebuilt partition into place file by file with atomic renames; drop what is stale."""
    new_files = sorted(fs.glob(posixpath.join(new_dir, "*.parquet")))  # type: ignore[attr-defined]
    keep: set[str] = set()
    if new_files:
        os.makedirs(part_dir, exist_ok=True)
    for i, src in enumerate(new_files):
        dst = posixpath.join(part_dir, "data.parquet" if i == 0 else f"data-{i}.parquet")
        os.replace(src, dst)
        keep.add(dst)
    if os.path.isdir(part_dir):
        for stale in os.listdir(part_dir):
            path = posixpath.join(part_dir, stale)
            if path not in keep:
                os.remove(path)
        if not keep:
            os.rmdir(part_dir)
