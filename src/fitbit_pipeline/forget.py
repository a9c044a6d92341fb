"""``fitbit-pipeline forget``: a participant who withdraws consent removed from the lake, the warehouse, the
quarantine and the kept staging, provably, and kept out of later runs.

Under the run lock, after recovering any interrupted run:

1. a journal ``<lake>/_forget/<hash>.json`` records the pending withdrawal (the id is needed to finish it; the
   file goes when it is done, and every run's recovery finishes a pending one first);
2. the lake: each data table's participant-days of the participant give way to nothing (one snapshot per
   table, run id ``forget-…``: files holding only them dropped, the others rewritten without them);
3. the warehouse, in one transaction: every table with a ``participant_id`` (data, ledger, deliveries,
   rejects, findings, wear, and the ``stg_`` tables) loses the participant's rows, the DuckDB views follow the
   lake, and ``pipeline_forgotten`` records a salted hash of the id, the time, the reason and the rows removed
   per table, never the id;
4. the lake's older snapshots are expired (tagged ones kept: releases) and the files they alone referenced deleted;
   the staging of ended runs is removed (it holds rows of every participant of its run) and so is every
   quarantined raw file that contains the id.

A release holding the participant is kept as it is and listed, unless asked to rewrite it (``--include-releases``:
before step 2, see :func:`.releases.rewrite_without`; its old snapshots then expire in step 4).

The hash is SHA-256 of a random salt kept in the lake (``<lake>/_forget_salt``) and the id: a later run skips
(and counts) a delivered file whose participant's hash is recorded, without the id being stored anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import faults, releases, schema
from .forgotten import SALT_FILE, participant_hash, read_salt
from .lake import Lake
from .lake.commit import replace_keys
from .lake.maintain import expire, prune, referenced_files, remove_orphans
from .sources import filesystem
from .warehouse import LakeApply, Warehouse

log = logging.getLogger(__name__)
PENDING = "_forget"
FORGET_PREFIX = "forget-"


@dataclass
class ForgetReport:
    participant_hash: str
    lake_rows: dict[str, int] = field(default_factory=dict)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    snapshots_expired: int = 0
    files_deleted: int = 0
    staging_removed: int = 0
    quarantine_removed: int = 0
    releases_kept: list[str] = field(default_factory=list)  # releases still holding the participant
    releases_rewritten: list[str] = field(default_factory=list)


def _salt(lake_uri: str) -> bytes:
    """The lake's salt, made on its first withdrawal."""
    salt = read_salt(lake_uri)
    if salt is None:
        salt = secrets.token_bytes(32)
        fs, path = filesystem(posixpath.join(lake_uri, SALT_FILE))
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(salt.hex().encode())
    return salt


def forget(
    lake_uri: str,
    warehouse: str,
    participant: str,
    schema_name: str = "rural",
    *,
    reason: str | None = None,
    include_releases: bool = False,
    lock_timeout_s: float | None = 0.0,
    valid_day_minutes: int = 600,
) -> ForgetReport:
    """Remove ``participant`` everywhere (see the module's description); what was removed. Releases holding the
    participant are kept as they are and listed, or with ``include_releases`` rewritten without them."""
    from .pipeline import held_lake

    participant = participant.strip()
    if not participant:
        raise ValueError("no participant id given")
    held = held_lake(
        lake_uri, warehouse, schema_name, lock_timeout_s=lock_timeout_s, valid_day_minutes=valid_day_minutes
    )
    with held as (the_lake, wh):
        digest = participant_hash(_salt(lake_uri), participant)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        held_by = releases.holding(the_lake, wh, participant)
        rewrite = held_by if include_releases else []
        journal = {"participant": participant, "reason": reason, "at": now.isoformat(), "releases": rewrite}
        _write_pending(lake_uri, digest, journal)
        report = complete(the_lake, wh, participant, digest, reason, now, rewrite)
        report.releases_kept = [name for name in held_by if name not in rewrite]
    return report


def complete(
    the_lake: Lake,
    wh: Warehouse,
    participant: str,
    digest: str,
    reason: str | None,
    now: dt.datetime,
    rewrite: Sequence[str] = (),
) -> ForgetReport:
    """Steps 2 to 4, the releases ``rewrite`` rewritten first (idempotent: a pending withdrawal interrupted
    anywhere is finished by running them again)."""
    report = ForgetReport(digest, releases_rewritten=list(rewrite))
    op = f"{FORGET_PREFIX}{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    before = {name: referenced_files(table) for name, table in the_lake.tables.items()}
    note = f"{now:%Y-%m-%d}: a withdrawn participant's rows removed (pipeline_forgotten {digest[:12]})"
    for name in rewrite:
        releases.rewrite_without(the_lake, wh, name, participant, op, note)
    for t in schema.DATA_TABLES:
        table = the_lake.tables[t.name]
        keys, rows = _participant_days(table, participant)
        if keys:
            replace_keys(table, t, op, keys, [], 0)
            report.lake_rows[t.name] = rows
    the_lake.refresh()
    faults.point("forget-lake-done")
    audit = {"participant_hash": digest, "forgotten_at": now, "reason": reason}
    apply = LakeApply(op, the_lake.snapshots(), {}, the_lake.files())
    report.warehouse_rows = wh.forget(participant, apply, audit, report.lake_rows)
    for table in the_lake.tables.values():  # every snapshot but the current (and tagged ones)
        report.snapshots_expired += expire(table, dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(1))
    the_lake.refresh()
    for name, table in the_lake.tables.items():
        gone = sorted(before[name] - referenced_files(table))  # committed once: no run can still need them
        if gone:
            fs, _ = filesystem(table.location())
            fs.rm(gone)
            report.files_deleted += len(gone)
        report.files_deleted += remove_orphans(table, now)  # what an interrupted attempt left
    report.staging_removed = len(prune(the_lake.uri, "staging", dt.datetime.max, ended_only=True))
    report.quarantine_removed = _drop_quarantined(the_lake.uri, participant)
    _remove_pending(the_lake.uri, digest)
    return report


def _participant_days(table, participant: str) -> tuple[set[tuple[str, int]], int]:  # noqa: ANN001 - an Iceberg table
    from pyiceberg.expressions import EqualTo

    if table.current_snapshot() is None:
        return set(), 0
    rows = table.scan(row_filter=EqualTo("participant_id", participant), selected_fields=("participant_id", "date"))
    data = rows.to_arrow()
    days = data["date"].cast("int32").to_pylist()
    return {(participant, d) for d in days}, data.num_rows


def _drop_quarantined(lake_uri: str, participant: str) -> int:
    """Quarantined raw files whose bytes contain the id."""
    fs, root = filesystem(posixpath.join(lake_uri, "quarantine"))
    if not fs.exists(root):
        return 0
    needle = participant.encode()
    doomed = []
    for path in fs.find(root):
        with fs.open(path, "rb") as fh:
            if needle in fh.read():
                doomed.append(path)
    if doomed:
        fs.rm(doomed)
    return len(doomed)


# ---- the journal of pending withdrawals -----------------------------------------------------------


def _write_pending(lake_uri: str, digest: str, data: dict[str, object]) -> None:
    fs, path = filesystem(posixpath.join(lake_uri, PENDING, f"{digest}.json"))
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        fh.write(json.dumps(data).encode())


def _remove_pending(lake_uri: str, digest: str) -> None:
    fs, path = filesystem(posixpath.join(lake_uri, PENDING, f"{digest}.json"))
    if fs.exists(path):
        fs.rm(path)


def pending(lake_uri: str) -> list[tuple[str, dict[str, object]]]:
    """``(hash, journal)`` of every withdrawal that was interrupted."""
    fs, root = filesystem(posixpath.join(lake_uri, PENDING))
    if not fs.exists(root):
        return []
    out = []
    for path in sorted(fs.find(root)):
        if path.endswith(".json"):
            with fs.open(path, "rb") as fh:
                out.append((posixpath.basename(path)[: -len(".json")], json.loads(fh.read())))
    return out


def finish_pending(the_lake: Lake, wh: Warehouse) -> int:
    """Finish every interrupted withdrawal (called by every run's recovery); how many."""
    done = 0
    for digest, data in pending(the_lake.uri):
        log.warning("a withdrawal was interrupted: finishing it")
        at = dt.datetime.fromisoformat(str(data["at"]))
        rewrite = [str(name) for name in data.get("releases", [])]  # type: ignore[attr-defined]
        complete(the_lake, wh, str(data["participant"]), digest, data.get("reason"), at, rewrite)  # type: ignore[arg-type]
        done += 1
    return done
