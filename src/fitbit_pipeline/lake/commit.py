"""Commit a run into the Iceberg tables: its winning participant-day-activities replace what was there.

For each data table, one snapshot (``overwrite``, or ``append`` when nothing is replaced) whose summary
carries the run id: data files holding only replaced participant-days are dropped, files holding some are
rewritten without them, and the run's staging files join the table as they are (hard links locally, a
server-side copy on S3) when every row in them won, filtered otherwise. A table that already has a
snapshot of the run is left alone, so committing a run again (recovery) is a no-op where it had
succeeded. Files are named ``<run_id>-...`` so that recovery can tell a crashed attempt's leftovers.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.expressions import In
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.table import Table as IcebergTable

from .. import faults, schema
from ..sources import filesystem, is_local
from ..transform import iter_parts, write_parquet
from .overwrite import overwrite
from .snapshot import ROWS_PROPERTY, RUN_PROPERTY, current_snapshot_id, data_files, run_snapshot

log = logging.getLogger(__name__)
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class TableCommit:
    snapshot_id: int | None
    rows: int  # rows of the run's winners now in the table


def commit_run(tables: dict[str, IcebergTable], run_id: str, staging: str, winners: pa.Table) -> dict[str, TableCommit]:
    """Commit every data table for ``run_id`` (idempotent per table); the snapshot and rows of each."""
    out = {}
    staged = staged_files(staging)
    for t in schema.DATA_TABLES:
        mine = winners.filter(pc.equal(winners["activity"], t.activity))
        out[t.name] = commit_table(tables[t.name], t, run_id, staging, mine, staged.get(t.activity or "", set()))
        faults.point(f"lake-committed:{t.name}")
    return out


def commit_table(
    table: IcebergTable, t: schema.Table, run_id: str, staging: str, winners: pa.Table, staged: set[str]
) -> TableCommit:
    done = run_snapshot(table, run_id)
    if done is not None:
        return TableCommit(done.snapshot_id, int(done.summary.additional_properties.get(ROWS_PROPERTY, 0)))
    if not winners.num_rows:
        return TableCommit(current_snapshot_id(table), 0)
    added, rows = _added(table, t, staging, set(winners["source_file"].to_pylist()), staged, run_id)
    return replace_keys(table, t, run_id, participant_days(winners), added, rows)


def replace_keys(
    table: IcebergTable,
    t: schema.Table,
    run_id: str,
    keys: set[tuple[str, int]],
    added: list[DataFile],
    rows: int,
) -> TableCommit:
    """One snapshot of ``table``: the rows of ``keys`` (participant, days since 1970) give way to ``added``."""
    removed, kept = _replaced(table, t, keys, run_id)
    if not (removed or kept or added):
        return TableCommit(current_snapshot_id(table), 0)
    faults.point(f"lake-files-written:{t.name}")
    return swap_files(table, run_id, removed, [*kept, *added], rows)


def swap_files(
    table: IcebergTable, run_id: str, removed: list[DataFile], added: list[DataFile], rows: int
) -> TableCommit:
    """One snapshot of ``table`` without ``removed`` and with ``added`` (``overwrite``, or ``append`` when nothing
    is removed), its summary naming ``run_id`` and the ``rows`` it brought in."""
    properties = {RUN_PROPERTY: run_id, ROWS_PROPERTY: str(rows)}
    tx = table.transaction()
    op = overwrite(tx, properties) if removed else tx.update_snapshot(snapshot_properties=properties).fast_append()
    with op:
        for f in removed:
            op.delete_data_file(f)
        for f in added:
            op.append_data_file(f)
    committed = tx.commit_transaction()
    return TableCommit(current_snapshot_id(committed), rows)


def write_rows(table: IcebergTable, t: schema.Table, run_id: str, rows: pa.Table) -> list[DataFile]:
    """``rows`` as new data files of ``table`` (one per day for intraday tables), sorted by participant and time."""
    if not rows.num_rows:
        return []
    order = "ts" if t.kind == "intraday" else "date"
    rows = rows.select(t.columns).cast(t.schema).sort_by([("participant_id", "ascending"), (order, "ascending")])
    pieces = [rows]
    if t.kind == "intraday":
        pieces = [rows.filter(pc.equal(rows["date"], d)) for d in pc.unique(rows["date"]).to_pylist()]
    out = []
    describe = Describer(table)
    for piece in pieces:
        target = data_path(table, t, f"{run_id}-{uuid.uuid4().hex[:12]}.parquet", day_of(piece))
        write_parquet(piece, target)
        out.append(describe(target))
    return out


def participant_days(rows: pa.Table) -> set[tuple[str, int]]:
    days = rows["date"].combine_chunks().cast(pa.int32()).to_pylist()
    return set(zip(rows["participant_id"].to_pylist(), days, strict=True))


def _replaced(
    table: IcebergTable, t: schema.Table, keys: set[tuple[str, int]], run_id: str
) -> tuple[list[DataFile], list[DataFile]]:
    """Data files that hold replaced participant-days (to drop), and rewrites of their other rows (to add)."""
    if table.current_snapshot() is None:
        return [], []
    days = sorted({_EPOCH + dt.timedelta(days=d) for _, d in keys})
    removed: list[DataFile] = []
    kept: list[DataFile] = []
    describe = Describer(table)
    for task in table.scan(row_filter=In("date", [d.isoformat() for d in days])).plan_files():
        path = task.file.file_path
        fs, local = filesystem(path)
        with fs.open(local, "rb") as fh:
            pf = pq.ParquetFile(fh, read_dictionary=["participant_id"])
            replaced = row_flags(pf.read(columns=["participant_id", "date"]), keys)
            if not replaced.any():
                continue
            removed.append(task.file)
            if replaced.all():
                continue
            rest = pf.read(columns=t.columns).filter(pa.array(~replaced))
        target = data_path(table, t, f"{run_id}-rw-{uuid.uuid4().hex[:12]}.parquet", day_of(rest))
        write_parquet(rest.cast(t.schema), target)
        kept.append(describe(target))
    return removed, kept


def row_flags(rows: pa.Table, keys: set[tuple[str, int]]) -> np.ndarray:
    """Per row: whether its (participant, day) is in ``keys`` (decided once per distinct pair)."""
    participant = rows["participant_id"].combine_chunks()
    if not pa.types.is_dictionary(participant.type):
        participant = participant.dictionary_encode()
    names = participant.dictionary.to_pylist()
    days = rows["date"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    codes = (participant.indices.to_numpy(zero_copy_only=False).astype(np.int64) << 32) | days
    pairs, inverse = np.unique(codes, return_inverse=True)
    flags = np.fromiter(((names[c >> 32], int(c & 0xFFFFFFFF)) in keys for c in pairs), dtype=bool, count=len(pairs))
    return flags[inverse]


def _added(
    table: IcebergTable, t: schema.Table, staging: str, files: set[str], staged: set[str], run_id: str
) -> tuple[list[DataFile], int]:
    """The run's staging rows of ``t`` from the winning ``files``, as data files in the table's location.

    When every document the run staged for the activity won (the usual case), the staging files join the
    table as they are, unread; otherwise each file is checked and, where some of its rows lost, filtered.
    """
    out: list[DataFile] = []
    rows = 0
    describe = Describer(table)
    everything = staged <= files
    for part in iter_parts(staging, t.name):
        data, won = None, None
        if not everything:
            data, won = _winning_rows(part, t, files)
            if won == 0:
                continue
        day = _part_day(part) if data is None else day_of(data)
        target = data_path(table, t, f"{run_id}-{posixpath.basename(part)}", day)
        if data is None:
            _link(part, target)
        else:
            write_parquet(data.cast(t.schema), target)
        entry = describe(target)
        out.append(entry)
        rows += int(entry.record_count)
    return out, rows


def _winning_rows(part: str, t: schema.Table, files: set[str]) -> tuple[pa.Table | None, int]:
    """The rows of ``part`` from ``files``: None when all of them are (the file can join as it is), and how many."""
    fs, path = filesystem(part)
    with fs.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh, read_dictionary=["source_file"])
        source = pf.read(columns=["source_file"])["source_file"].combine_chunks()
        won = np.fromiter((f in files for f in source.dictionary.to_pylist()), dtype=bool)
        mask = won[source.indices.to_numpy(zero_copy_only=False)] if len(source) else np.zeros(0, dtype=bool)
        if mask.all():
            return None, len(mask)
        if not mask.any():
            return None, 0
        return pf.read(columns=t.columns).filter(pa.array(mask)), int(mask.sum())


def staged_files(staging: str) -> dict[str, set[str]]:
    """Per activity, the documents the run staged (whether or not they have rows in a given table)."""
    out: dict[str, set[str]] = {}
    for part in iter_parts(staging, schema.PIPELINE_DELIVERIES.name):
        fs, path = filesystem(part)
        with fs.open(path, "rb") as fh:
            rows = pq.read_table(fh, columns=["activity", "source_file"])
        for a, f in zip(rows["activity"].to_pylist(), rows["source_file"].to_pylist(), strict=True):
            out.setdefault(a, set()).add(f)
    return out


_DAY_PART = re.compile(r"-(\d{4}-\d{2}-\d{2})\.parquet$")


def _part_day(part: str) -> dt.date | None:
    """The day of an intraday staging file, from its name (``part-<chunk>-<YYYY-MM-DD>.parquet``)."""
    m = _DAY_PART.search(part)
    return dt.date.fromisoformat(m[1]) if m else None


class Describer:
    """Data-file entries of one table's new Parquet files: partition and column statistics from each footer.

    What ``pyiceberg.io.pyarrow.parquet_file_to_data_file`` does, with the schema check and the statistics plan
    done once per table instead of once per file (every file of a run has the table's schema; the check was
    most of the commit's time).
    """

    def __init__(self, table: IcebergTable) -> None:
        from pyiceberg.io.pyarrow import compute_statistics_plan, parquet_path_to_id_mapping  # see catalog.py

        self.metadata = table.metadata
        self.schema = self.metadata.schema()
        self.plan = compute_statistics_plan(self.schema, self.metadata.properties)
        self.mapping = parquet_path_to_id_mapping(self.schema)
        self.checked = False

    def __call__(self, path: str) -> DataFile:
        from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible, data_file_statistics_from_parquet_metadata

        fs, local = filesystem(path)
        with fs.open(local, "rb") as fh:
            footer = pq.read_metadata(fh)
        if not self.checked:
            _check_pyarrow_schema_compatible(
                self.schema, footer.schema.to_arrow_schema(), format_version=self.metadata.format_version
            )
            self.checked = True
        stats = data_file_statistics_from_parquet_metadata(
            parquet_metadata=footer, stats_columns=self.plan, parquet_column_mapping=self.mapping
        )
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=stats.partition(self.metadata.spec(), self.schema),
            file_size_in_bytes=fs.size(local),
            sort_order_id=None,
            spec_id=self.metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **stats.to_serialized_dict(),
        )


def day_of(rows: pa.Table) -> dt.date | None:
    """The single day of a file's rows (intraday files hold one), None for several."""
    days = pc.unique(rows["date"].combine_chunks())
    return days[0].as_py() if len(days) == 1 else None


def data_path(table: IcebergTable, t: schema.Table, name: str, day: dt.date | None) -> str:
    folder = posixpath.join(table.location(), "data")
    if t.kind == "intraday" and day is not None:
        folder = posixpath.join(folder, f"date={day.isoformat()}")
    return posixpath.join(folder, name)


def _link(source: str, target: str) -> None:
    """``target`` becomes the same bytes as ``source``: a hard link locally (a copy across devices), a
    server-side copy on object storage. An earlier attempt's file at ``target`` is replaced."""
    if is_local(source) and is_local(target):
        os.makedirs(posixpath.dirname(target), exist_ok=True)
        if os.path.exists(target):
            os.remove(target)
        try:
            os.link(source, target)
        except OSError:
            import shutil

            shutil.copyfile(source, target)
        return
    fs, src = filesystem(source)
    _, dst = filesystem(target)
    fs.copy(src, dst)


def leftovers(tables: Iterable[IcebergTable], run_id: str) -> list[str]:
    """Files a crashed attempt of ``run_id`` wrote that no current snapshot references."""
    out = []
    for table in tables:
        fs, root = filesystem(posixpath.join(table.location(), "data"))
        if not fs.exists(root):
            continue
        current = {filesystem(f)[1] for f in data_files(table)}
        out += [p for p in fs.glob(posixpath.join(root, "**", f"{run_id}-*")) if p not in current]
    return out
