"""What a table's snapshots hold: data files, and the snapshot a run committed."""

from __future__ import annotations

import posixpath

from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.table import Table as IcebergTable
from pyiceberg.table.snapshots import Snapshot

RUN_PROPERTY = "fitbit.run-id"  # snapshot summary: the run whose rows this snapshot brought in
ROWS_PROPERTY = "fitbit.rows"  # snapshot summary: how many of the run's rows it added
MAINTENANCE_PREFIX = "maintain-"  # the run id of a maintenance's snapshots (same rows, other files)


def is_maintenance(run_id: str | None) -> bool:
    return run_id is not None and run_id.startswith(MAINTENANCE_PREFIX)


def current_run(table: IcebergTable) -> str | None:
    """The run (or maintenance) that made the current snapshot of ``table``."""
    snap = table.current_snapshot()
    if snap is None or snap.summary is None:
        return None
    return snap.summary.additional_properties.get(RUN_PROPERTY)


def data_files(table: IcebergTable, snapshot_id: int | None = None) -> list[str]:
    """The data files of a snapshot (default: the current one), in a stable order."""
    if snapshot_id is None and table.current_snapshot() is None:
        return []
    return sorted(task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files())


def run_snapshot(table: IcebergTable, run_id: str) -> Snapshot | None:
    """The snapshot with which ``run_id`` was committed to ``table``, if it was."""
    for snap in reversed(table.snapshots()):
        if snap.summary is not None and snap.summary.additional_properties.get(RUN_PROPERTY) == run_id:
            return snap
    return None


def current_snapshot_id(table: IcebergTable) -> int | None:
    snap = table.current_snapshot()
    return snap.snapshot_id if snap is not None else None


def added_files(table: IcebergTable, run_id: str) -> list[str]:
    """The data files holding the rows ``run_id`` brought in: those its snapshot added, without the rewrites of
    files it replaced rows in (``<run_id>-rw-…``, rows already there before); empty when it has no snapshot."""
    snap = run_snapshot(table, run_id)
    if snap is None:
        return []
    rewrite = f"{run_id}-rw-"
    out = []
    for manifest in snap.manifests(table.io):
        if manifest.added_snapshot_id != snap.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            path = entry.data_file.file_path
            if entry.status == ManifestEntryStatus.ADDED and not posixpath.basename(path).startswith(rewrite):
                out.append(path)
    return sorted(out)
