"""``fitbit-pipeline maintain``: the lake kept small and tidy between runs, the warehouse following it.

Under the run lock (a run in progress makes it wait up to ``lock_timeout_s``, None: ``FITBIT_LAKE_LOCK_TIMEOUT``,
then refuse with :class:`~fitbit_pipeline.lake.LakeBusy`), after recovering any interrupted run: compaction,
then the warehouse follows the compacted tables in one transaction (the embedded DuckDB's views over the new
files, every warehouse's ``pipeline_lake_state``), and only then are expired snapshots and the files nothing
references deleted, so no reader is ever left with a view over a removed file. An interruption anywhere leaves
the lake and the warehouse agreeing once the next run or maintenance has recovered. See :mod:`.lake.maintain`.
"""

from __future__ import annotations

import datetime as dt

from . import faults, schema
from .lake.maintain import (
    MaintenanceReport,
    Retention,
    compact,
    expire,
    maintenance_id,
    prune,
    remove_orphans,
    table_state,
)
from .pipeline import held_lake
from .warehouse import LakeApply


def maintain(
    lake_uri: str,
    warehouse: str,
    schema_name: str = "rural",
    *,
    retention: Retention | None = None,
    lock_timeout_s: float | None = 0.0,
    valid_day_minutes: int = 600,
    now: dt.datetime | None = None,
) -> MaintenanceReport:
    """Compact, expire, remove unreferenced files and prune old staging and quarantine; what it found and did."""
    keep = retention or Retention()
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    held = held_lake(
        lake_uri, warehouse, schema_name, lock_timeout_s=lock_timeout_s, valid_day_minutes=valid_day_minutes
    )
    with held as (the_lake, wh):  # an interrupted run is completed first (recovery says so in the log)
        report = MaintenanceReport(before={name: table_state(t) for name, t in the_lake.tables.items()})
        op = maintenance_id(now)
        for t in schema.DATA_TABLES:
            report.compacted[t.name] = compact(the_lake.tables[t.name], t, op, keep.compact_target_bytes)
        the_lake.refresh()
        faults.point("maintain-compacted")
        wh.adopt_lake(LakeApply(op, the_lake.snapshots(), {}, the_lake.files()))
        faults.point("maintain-followed")
        cutoff = now - dt.timedelta(days=keep.snapshot_days)
        report.expired = {name: expire(table, cutoff) for name, table in the_lake.tables.items()}
        the_lake.refresh()
        report.orphans_removed = sum(remove_orphans(table, now) for table in the_lake.tables.values())
        report.staging_removed = prune(lake_uri, "staging", now - dt.timedelta(days=keep.staging_days), True)
        report.quarantine_removed = prune(lake_uri, "quarantine", now - dt.timedelta(days=keep.quarantine_days), False)
        report.after = {name: table_state(t) for name, t in the_lake.tables.items()}
    return report
