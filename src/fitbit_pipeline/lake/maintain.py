"""Lake maintenance: small data files compacted, old snapshots expired, unreferenced files removed, old staging
and quarantine pruned. The caller holds the lake (no run in progress, see :mod:`fitbit_pipeline.maintenance`).

- **Compaction**: in each partition (an intraday table's day) the data files below ``target_bytes`` are
  rewritten as few files of about that size, sorted by participant and time, in one snapshot per table
  (``overwrite``, its summary carrying the maintenance id like a run's). The small daily tables are not
  partitioned; their files are compacted per calendar month (a file joins the month of its first day, and
  what it holds of later months is written to files of those months; a file alone in its month is rewritten
  too when it spans several, as the whole-history file an earlier version's compaction left does). A week's
  re-delivered days then rewrite the current month's file, found by its date statistics, not the year's
  history. The rows are the same: counted before the commit, which is refused otherwise.
- **Expiry**: snapshots older than the retention are expired (pyiceberg's ``expire_snapshots``); the current
  snapshot and tagged ones never are.
- **Orphans**: files below a table's location that no remaining snapshot, manifest or kept metadata file
  references (rewritten or replaced data files, a crashed attempt's files, old metadata) are deleted. On
  object storage, where no lock keeps a run out, only those older than a day.
- **Pruning**: the staging folders of ended runs and the quarantine folders of runs older than their
  retention (the run id starts with its UTC start time).
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table as IcebergTable

from .. import schema
from ..sources import filesystem, is_local
from ..transform import write_parquet
from . import journal
from .commit import Describer, data_path, day_of, swap_files
from .snapshot import MAINTENANCE_PREFIX, data_files

log = logging.getLogger(__name__)

COMPACT_TARGET_BYTES = 64 << 20
# Rows of one rewritten file. A row is ~130 bytes as Arrow (its strings decoded), and reading, sorting and
# writing a group hold ~4x that: 2,000,000 rows peaked at 1.2 GB at 1,000 participants, 500,000 hold ~250 MB.
COMPACT_MAX_ROWS = 500_000
_OBJECT_STORE_MIN_AGE = dt.timedelta(days=1)
_TABLE_FILES = (".parquet", ".parquet.tmp", ".avro", ".metadata.json")  # what pyiceberg and the commit write


@dataclass(frozen=True)
class Retention:
    """How long maintenance keeps things (days), and the size below which data files are merged."""

    snapshot_days: float = 7.0
    staging_days: float = 14.0
    quarantine_days: float = 180.0
    compact_target_bytes: int = COMPACT_TARGET_BYTES


@dataclass
class TableState:
    """What one table holds on storage: current data files and their bytes, snapshots, all files below it."""

    data_files: int
    data_bytes: int
    snapshots: int
    stored_files: int


@dataclass
class MaintenanceReport:
    before: dict[str, TableState] = field(default_factory=dict)
    after: dict[str, TableState] = field(default_factory=dict)
    compacted: dict[str, int] = field(default_factory=dict)  # files rewritten per table
    expired: dict[str, int] = field(default_factory=dict)  # snapshots expired per table
    orphans_removed: int = 0
    staging_removed: list[str] = field(default_factory=list)  # run ids
    quarantine_removed: list[str] = field(default_factory=list)


def table_state(table: IcebergTable) -> TableState:
    tasks = list(table.scan().plan_files()) if table.current_snapshot() is not None else []
    return TableState(
        data_files=len(tasks),
        data_bytes=sum(int(t.file.file_size_in_bytes) for t in tasks),
        snapshots=len(table.snapshots()),
        stored_files=len(_stored(table)),
    )


# ---- compaction ---------------------------------------------------------------------------------


def compact(table: IcebergTable, t: schema.Table, op_id: str, target_bytes: int = COMPACT_TARGET_BYTES) -> int:
    """Rewrite the small data files of each partition of ``table`` as few files (one snapshot); files rewritten."""
    if table.current_snapshot() is None:
        return 0
    groups: dict[tuple, list[DataFile]] = defaultdict(list)
    months = _months(table) if t.kind != "intraday" else lambda f: (None, None)
    for task in table.scan().plan_files():
        if task.file.file_size_in_bytes < target_bytes:
            groups[(*task.file.partition, months(task.file)[0])].append(task.file)
    removed: list[DataFile] = []
    added: list[DataFile] = []
    describe = Describer(table)
    for files in groups.values():
        for batch in _bins(sorted(files, key=lambda f: f.file_path), target_bytes):
            if len(batch) < 2 and len(set(months(batch[0]))) < 2:  # one file, and within one month
                continue
            added += _rewrite(table, t, batch, op_id, describe)
            removed += batch
    if not removed:
        return 0
    swap_files(table, op_id, removed, added, rows=0)
    return len(removed)


def _rewrite(
    table: IcebergTable, t: schema.Table, batch: list[DataFile], op_id: str, describe: Describer
) -> list[DataFile]:
    """The rows of ``batch`` sorted and written as new files (one per month of a daily table). A function of its
    own so that nothing of one group is still referenced while the next is read (that held a third group's
    worth of rows at the peak)."""
    rows = pa.concat_tables(_read(f.file_path, t) for f in batch)
    expected = sum(int(f.record_count) for f in batch)
    if rows.num_rows != expected:
        raise RuntimeError(f"{t.name}: read {rows.num_rows} rows of files that hold {expected}")
    order = "ts" if t.kind == "intraday" else "date"
    rows = rows.sort_by([("participant_id", "ascending"), (order, "ascending")])
    out = []
    for piece in _pieces(rows, t):
        target = data_path(table, t, f"{op_id}-compact-{uuid.uuid4().hex[:12]}.parquet", day_of(piece))
        write_parquet(piece, target)
        out.append(describe(target))
    return out


def _months(table: IcebergTable) -> Callable[[DataFile], tuple[int | None, int | None]]:
    """Of a data file: the months (``year * 12 + month - 1``) of its first and last day, from its statistics."""
    field = table.schema().find_field("date")

    def month(bound: bytes | None) -> int | None:
        if bound is None:
            return None
        day = dt.date(1970, 1, 1) + dt.timedelta(days=from_bytes(field.field_type, bound))
        return day.year * 12 + day.month - 1

    def months(f: DataFile) -> tuple[int | None, int | None]:
        return month((f.lower_bounds or {}).get(field.field_id)), month((f.upper_bounds or {}).get(field.field_id))

    return months


def _pieces(rows: pa.Table, t: schema.Table) -> list[pa.Table]:
    """The rows of one compacted group as files: one for an intraday day, one per calendar month of a daily table."""
    if t.kind == "intraday":
        return [rows]
    months = pc.floor_temporal(rows["date"], unit="month")
    return [rows.filter(pc.equal(months, m)) for m in pc.unique(months)]


def _bins(files: list[DataFile], target_bytes: int) -> Iterable[list[DataFile]]:
    """Consecutive files in groups of at most about ``target_bytes`` and ``COMPACT_MAX_ROWS`` (a group is read
    whole and sorted: the rows bound its memory)."""
    current: list[DataFile] = []
    size = rows = 0
    for f in files:
        if current and (size + f.file_size_in_bytes > target_bytes or rows + f.record_count > COMPACT_MAX_ROWS):
            yield current
            current, size, rows = [], 0, 0
        current.append(f)
        size += f.file_size_in_bytes
        rows += f.record_count
    if current:
        yield current


def _read(path: str, t: schema.Table) -> pa.Table:
    fs, local = filesystem(path)
    with fs.open(local, "rb") as fh:
        return pq.read_table(fh, columns=t.columns).cast(t.schema)


# ---- snapshots and files ------------------------------------------------------------------------


def expire(table: IcebergTable, older_than: dt.datetime) -> int:
    """Expire the snapshots of ``table`` older than ``older_than`` (never the current or a tagged one)."""
    cutoff_ms = int(older_than.timestamp() * 1000)
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}  # the current one, and tags
    doomed = [s.snapshot_id for s in table.snapshots() if s.timestamp_ms < cutoff_ms and s.snapshot_id not in protected]
    if doomed:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
    return len(doomed)


def referenced_files(table: IcebergTable) -> set[str]:
    """Every file the table's metadata references: kept metadata files, and of each remaining snapshot its
    manifest list, manifests and data files."""
    keep = {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}
    for snap in table.snapshots():
        keep.add(snap.manifest_list)
        for manifest in snap.manifests(table.io):
            keep.add(manifest.manifest_path)
        keep.update(data_files(table, snap.snapshot_id))
    return {filesystem(p)[1] for p in keep}


def _stored(table: IcebergTable) -> list[str]:
    """Every file below the table's location (data and metadata)."""
    fs, root = filesystem(table.location())
    if not fs.exists(root):
        return []
    return [p for p in fs.find(root) if not p.endswith("/")]


def remove_orphans(table: IcebergTable, now: dt.datetime) -> int:
    """Delete the files below the table's location that nothing references; how many."""
    referenced = referenced_files(table)
    fs, root = filesystem(table.location())
    orphans = [p for p in _stored(table) if p not in referenced and p.endswith(_TABLE_FILES)]
    if not is_local(table.location()):
        orphans = [p for p in orphans if _modified(fs, p) < now - _OBJECT_STORE_MIN_AGE]
    if orphans:
        fs.rm(orphans)
    return len(orphans)


def _modified(fs, path: str) -> dt.datetime:  # noqa: ANN001 - any fsspec filesystem
    info = fs.info(path)
    when = info.get("LastModified") or info.get("mtime") or info.get("created")
    if isinstance(when, int | float):
        return dt.datetime.fromtimestamp(when, dt.UTC).replace(tzinfo=None)
    return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when


# ---- staging and quarantine ---------------------------------------------------------------------


def run_started(run_id: str) -> dt.datetime | None:
    """The UTC start of a run, from its id (``20261207T031500Z-ab12cd``)."""
    try:
        return dt.datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ")
    except ValueError:
        return None


def prune(lake: str, folder: str, older_than: dt.datetime, ended_only: bool) -> list[str]:
    """Remove ``<lake>/<folder>/run_id=<run>/`` of runs started before ``older_than`` (with ``ended_only``,
    only runs whose journal has ended); the run ids removed."""
    fs, root = filesystem(posixpath.join(lake, folder))
    if not fs.exists(root):
        return []
    removed = []
    for path in sorted(fs.ls(root, detail=False)):
        name = posixpath.basename(path.rstrip("/"))
        run_id = name.removeprefix("run_id=")
        started = run_started(run_id)
        if not name.startswith("run_id=") or started is None or started >= older_than:
            continue
        if ended_only:
            state = journal.read_state(posixpath.join(lake, "staging", name))
            if state is not None and state["state"] not in journal.ENDED:
                continue
        fs.rm(path, recursive=True)
        removed.append(run_id)
    return removed


def maintenance_id(now: dt.datetime) -> str:
    return f"{MAINTENANCE_PREFIX}{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
