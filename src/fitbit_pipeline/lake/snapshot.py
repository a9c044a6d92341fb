"""What a table's snapshots hold: data files, and the snapshot a run committed."""

from __future__ import annotations

from pyiceberg.table import Table as IcebergTable
from pyiceberg.table.snapshots import Snapshot

RUN_PROPERTY = "fitbit.run-id"  # snapshot summary: the run whose rows this snapshot brought in
ROWS_PROPERTY = "fitbit.rows"  # snapshot summary: how many of the run's rows it added


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
