"""One incremental pipeline run, as stages: plan -> transform -> load staging -> gate -> merge -> finish.

:func:`run` chains the stages in one process (the CLI and tests). The Airflow DAG calls the same
stage functions from separate tasks, the transform once per activity; the :class:`Plan` they share
is a small JSON manifest in the run's staging folder. Nothing here prints.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import faults, gate, lake, schema, verify
from .errors import safe_message
from .forgotten import Forgetting
from .gate import GateLimits, GateResult
from .lake import Lake, journal
from .lake.adopt import ADOPTED, adopt_legacy
from .lake.commit import participant_days, row_flags
from .lake.snapshot import current_run, is_maintenance
from .layouts import LayoutError, match
from .limits import DEFAULT_LIMITS, Limits
from .sources import SourceDoc, filesystem, list_documents
from .timezones import ZoneMap
from .transform import ChunkResult, RunContext, iter_parts, transform
from .warehouse import LakeApply, Warehouse, open_warehouse

log = logging.getLogger(__name__)

ACTIVITY_TOTAL = "ALL"
ENGINES = ("local", "spark")
UNKNOWN = "unknown"
STAT_FIELDS = (
    "files_found",
    "files_new",
    "files_changed",
    "files_unchanged",
    "files_retried",
    "files_loaded",
    "files_rejected",
    "files_superseded",
    "files_forgotten",
    "rows_read",
    "rows_loaded",
    "rows_rejected",
    "rows_duplicate",
    "rows_superseded",
    "warnings",
)


@dataclass
class RunSummary:
    run_id: str
    status: str  # succeeded | partial (an activity failed) | nothing-new | gated | failed
    started_at: dt.datetime
    duration_s: float = 0.0
    objects: int = 0
    bytes_listed: int = 0
    bytes_read: int = 0
    per_activity: dict[str, Counter[str]] = field(default_factory=dict)
    rows_by_table: dict[str, int] = field(default_factory=dict)
    rules: list[tuple[str, int]] = field(default_factory=list)
    message: str | None = None

    @property
    def totals(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.per_activity.values():
            total.update(c)
        return total

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (for ``--json``, XCom and notifications): counts only, no values."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "objects": self.objects,
            "bytes_listed": self.bytes_listed,
            "bytes_read": self.bytes_read,
            "totals": {k: self.totals.get(k, 0) for k in STAT_FIELDS},
            "per_activity": {a: {k: c.get(k, 0) for k in STAT_FIELDS} for a, c in sorted(self.per_activity.items())},
            "rows_by_table": dict(sorted(self.rows_by_table.items())),
            "rules": dict(self.rules),
            "message": self.message,
        }


@dataclass
class Plan:
    """What one run will process, shared by its stages (saved as ``_plan.json`` in its staging folder)."""

    run_id: str
    started_at: dt.datetime
    run_date: dt.date
    source: str
    lake: str
    objects: int = 0
    bytes_listed: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # activity -> files_found/new/...
    groups: dict[str, list[SourceDoc]] = field(default_factory=dict)  # activity -> documents to process
    bytes_read: int = 0
    forgetting: dict[str, Any] | None = None  # the forgotten participants' hashes and salt (Forgetting.as_dict)

    @property
    def staging_uri(self) -> str:
        return lake.staging_uri(self.lake, self.run_id)

    @property
    def todo(self) -> int:
        return sum(len(g) for g in self.groups.values())

    def context(self, limits: Limits = DEFAULT_LIMITS, zones: ZoneMap | None = None) -> RunContext:
        return RunContext(
            run_id=self.run_id,
            run_date=self.run_date,
            staging_uri=self.staging_uri,
            quarantine_uri=lake.quarantine_uri(self.lake, self.run_id),
            processed_at=self.started_at,
            limits=limits,
            zones=zones,
            forgetting=Forgetting.from_dict(self.forgetting),
        )

    def save(self) -> None:
        data = {
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name != "groups"},
            "started_at": self.started_at.isoformat(),
            "run_date": self.run_date.isoformat(),
            "groups": {g: [d.as_dict() for d in docs] for g, docs in self.groups.items()},
        }
        fs, path = filesystem(posixpath.join(self.staging_uri, "_plan.json"))
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "w") as fh:
            fh.write(json.dumps(data))  # one write: json.dump writes each token through the file object

    @classmethod
    def load(cls, lake_uri: str, run_id: str) -> Plan:
        fs, path = filesystem(posixpath.join(lake.staging_uri(lake_uri, run_id), "_plan.json"))
        with fs.open(path, "r") as fh:
            data = json.load(fh)
        data["started_at"] = dt.datetime.fromisoformat(data["started_at"])
        data["run_date"] = dt.date.fromisoformat(data["run_date"])
        data["groups"] = {g: [SourceDoc.from_dict(d) for d in docs] for g, docs in data["groups"].items()}
        return cls(**data)


def new_run_id(now: dt.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _participant_of(doc: SourceDoc) -> str | None:
    try:
        return match(doc.logical_path).participant_id or None
    except LayoutError:
        return None


def _activity_of(doc: SourceDoc) -> str:
    try:
        return match(doc.logical_path).activity
    except LayoutError:
        return UNKNOWN


@contextmanager
def _phase(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("%s ...", name)
    yield
    log.info("%s done in %.2f s", name, time.perf_counter() - t0)


# ---- the stages ----------------------------------------------------------------------------


def plan_run(
    source: str,
    lake_uri: str,
    wh: Warehouse,
    *,
    run_date: dt.date | None = None,
    retry_rejected: bool = False,
    lake_: Lake | None = None,
    valid_day_minutes: int = 600,
) -> Plan:
    """Recover what earlier runs left, list the source, compare with the ledger, and save the plan."""
    wh.follow_lake(lake_uri)  # before the schema: the embedded warehouse's data tables are views
    wh.ensure_schema()
    recover(lake_ or open_lake(lake_uri, wh.names.schema), wh, valid_day_minutes=valid_day_minutes)
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with _phase("list source"):
        listing = list_documents(source)
    plan = Plan(
        new_run_id(started), started, run_date or started.date(), source, lake_uri, listing.objects, listing.bytes
    )
    known = wh.known_files({doc.source_file for doc in listing.docs})
    retry = wh.files_failed_to_read() | (wh.files_with_rejects() if retry_rejected else set())
    forgetting = Forgetting.of(lake_uri, wh)
    plan.forgetting = forgetting.as_dict() if forgetting else None
    for doc in listing.docs:
        activity = _activity_of(doc)
        c = plan.counts.setdefault(activity, Counter())
        c["files_found"] += 1
        if forgetting and forgetting.forgotten(_participant_of(doc)):
            c["files_forgotten"] += 1  # a withdrawn participant's file: never read, nothing recorded of it
            continue
        previous = known.get(doc.source_file)
        if previous == doc.fingerprint and doc.source_file not in retry:
            c["files_unchanged"] += 1
            continue
        c["files_new" if previous is None else "files_changed" if previous != doc.fingerprint else "files_retried"] += 1
        plan.groups.setdefault(activity, []).append(doc)
    plan.counts = {a: dict(c) for a, c in plan.counts.items()}
    log.info("run %s: %d documents found, %d to process", plan.run_id, len(listing.docs), plan.todo)
    if plan.todo:
        plan.save()
        journal.write_state(plan.staging_uri, journal.PLANNED)
    faults.point("planned")
    return plan


def transform_run(
    plan: Plan,
    groups: list[str] | None = None,
    *,
    workers: int = 0,
    limits: Limits = DEFAULT_LIMITS,
    on_progress: Callable[[int], None] | None = None,
    engine: str = "local",
    zones: ZoneMap | None = None,
) -> ChunkResult:
    """Stage the documents of ``groups`` (default: all). Re-running a group replaces its parts.

    ``engine``: ``local`` (a process pool) or ``spark`` (the running Spark session, else local mode).
    ``zones``: the participants' time zones for ``ts_utc`` (None: UTC stays empty).
    """
    run_transform = transformer(engine)
    selected = sorted(plan.groups) if groups is None else groups
    docs = [d for g in selected for d in plan.groups.get(g, [])]
    prefix = "" if groups is None else "-".join(selected) + "-"
    _clear_parts(plan, prefix)

    def progress(files: int) -> None:
        faults.point("transform-chunk")
        if on_progress:
            on_progress(files)

    with _phase(f"transform {', '.join(selected) or 'nothing'} ({engine})"):
        return run_transform(
            docs, plan.context(limits, zones), workers=workers, on_progress=progress, part_prefix=prefix
        )


def transformer(engine: str) -> Callable[..., ChunkResult]:
    """The transform of an engine; both take the same arguments and write the same staging."""
    if engine == "local":
        return transform
    if engine == "spark":
        from .spark_engine import transform as spark_transform  # pyspark only when asked for

        return spark_transform
    raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def _clear_parts(plan: Plan, prefix: str) -> None:
    """Remove staging parts an earlier attempt of the same group left (an Airflow retry)."""
    for t in schema.STAGED_TABLES:
        for part in iter_parts(plan.staging_uri, t.name):
            name = posixpath.basename(part)
            if name.startswith(f"part-{prefix}") and (prefix or name[5:6].isdigit()):
                fs, path = filesystem(part)
                fs.rm(path)


def load_staging(plan: Plan, wh: Warehouse) -> None:
    """Replace the warehouse's ``stg_*`` tables with the run's staging Parquet."""
    parts = {t.name: list(iter_parts(plan.staging_uri, t.name)) for t in schema.STAGED_TABLES}
    with _phase("load staging"):
        wh.load_staging(parts)
    faults.point("staging-loaded")


def check_gate(wh: Warehouse, limits: GateLimits) -> GateResult:
    return gate.evaluate(wh, limits)


WINNERS_FILE = "_winners.parquet"


def merge_run(plan: Plan, wh: Warehouse, *, valid_day_minutes: int = 600, lake_: Lake | None = None) -> dict[str, int]:
    """Commit the run: winners decided and saved, the lake committed, then the warehouse applies it.

    The saved winners are the point of no return (state ``committing``): from there an interrupted run is
    completed by :func:`recover`, never undone. Every step is idempotent, so completing it again is safe.
    """
    the_lake = lake_ or open_lake(plan.lake, wh.names.schema)
    wh.follow_lake(plan.lake)
    winners = _saved_winners(plan)
    if winners is None:
        wh.check_staged_accounting()  # before anything is committed
        winners = wh.winners().select(["participant_id", "activity", "date", "source_file"])
        _save_winners(plan, winners)
        journal.write_state(plan.staging_uri, journal.COMMITTING)
    faults.point("committing")
    with _phase("commit lake"):
        commits = the_lake.commit(plan.run_id, plan.staging_uri, winners)
    faults.point("lake-committed")
    applying = LakeApply(
        plan.run_id,
        the_lake.snapshots(),
        {name: c.rows for name, c in commits.items()},
        the_lake.files() if wh.follows_lake_by_views() else {},
        the_lake.added(plan.run_id) if wh.loads_lake_files() else {},
    )
    with _phase("apply to warehouse"):
        merged = wh.merge(plan.run_id, applying, valid_day_minutes=valid_day_minutes)
    journal.write_state(plan.staging_uri, journal.APPLIED)
    faults.point("applied")
    return {t.name: merged.inserted.get(t.name, 0) for t in schema.DATA_TABLES}


def _save_winners(plan: Plan, winners: pa.Table) -> None:
    fs, path = filesystem(posixpath.join(plan.staging_uri, WINNERS_FILE))
    with fs.open(path, "wb") as fh:
        pq.write_table(winners, fh)


def _saved_winners(plan: Plan) -> pa.Table | None:
    fs, path = filesystem(posixpath.join(plan.staging_uri, WINNERS_FILE))
    state = journal.read_state(plan.staging_uri)
    if state is None or state["state"] not in (journal.COMMITTING, journal.APPLIED) or not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh)


def open_lake(lake_uri: str, schema_name: str) -> Lake:
    return Lake(lake_uri, schema_name)


# ---- recovery ---------------------------------------------------------------------------------


def recover(lake_: Lake, wh: Warehouse, *, valid_day_minutes: int = 600) -> list[str]:
    """Bring lake, warehouse and ledger to the state uninterrupted runs would have left; runs recovered.

    A run that reached ``committing`` is completed (lake commit, warehouse apply, run record); one that did
    not is abandoned: its staging and any file it wrote are removed, and its documents stay new in the ledger.
    The first run of this version also adopts a lake and warehouse written by the previous one. The caller has
    made sure of the warehouse's schema (:func:`plan_run`).
    """
    from .forget import finish_pending

    wh.follow_lake(lake_.uri)
    _adopt(lake_, wh)
    _follow_maintenance(lake_, wh)
    finish_pending(lake_, wh)
    done = []
    for run_id, state in journal.runs_in_progress(lake_.uri):
        plan = Plan.load(lake_.uri, run_id)
        if state in (journal.COMMITTING, journal.APPLIED):
            log.warning("run %s was interrupted after its point of no return: completing it", run_id)
            if state == journal.COMMITTING:
                load_staging(plan, wh)
            rows = merge_run(plan, wh, valid_day_minutes=valid_day_minutes, lake_=lake_)
            finish_run(plan, wh, "succeeded", message="completed by recovery after an interruption", rows_by_table=rows)
        else:
            log.warning("run %s was interrupted before its point of no return: abandoning it", run_id)
            finish_run(plan, wh, journal.ABANDONED, message="interrupted before the commit; its files stay new")
            fs, path = filesystem(plan.staging_uri)
            fs.rm(path, recursive=True)
        lake_.remove_leftovers(run_id)
        done.append(run_id)
    return done


def _adopt(lake_: Lake, wh: Warehouse) -> None:
    """First run on a lake and warehouse of the previous version: the lake takes every row the warehouse holds."""
    if wh.lake_state():
        return
    adopted = adopt_legacy(lake_.tables, lake_.uri)
    lake_.refresh()
    owned = _delivered_keys(wh)
    files = lake_.files()
    for t in schema.DATA_TABLES:
        differing = [
            d for d in verify.compare_table(files[t.name], wh, t) if (d.participant_id, t.activity, d.date) in owned
        ]
        if differing:
            log.warning("adopting the lake: %d participant-days of %s taken from the warehouse", len(differing), t.name)
            keys = participant_days(
                pa.table({"participant_id": [d.participant_id for d in differing], "date": [d.date for d in differing]})
            )
            rows = wh.query_arrow(f"SELECT {wh.names.column_list(t)} FROM {wh.names.q(t.name)}")
            lake_.replace(t.name, ADOPTED, keys, rows.filter(pa.array(row_flags(rows, keys))))
    if adopted:
        log.info("adopted the previous version's lake: %d rows", sum(adopted.values()))
    wh.adopt_lake(LakeApply(ADOPTED, lake_.snapshots(), {}, lake_.files()))


@contextmanager
def held_lake(
    lake_uri: str, warehouse: str, schema_name: str, *, lock_timeout_s: float | None, valid_day_minutes: int
) -> Iterator[tuple[Lake, Warehouse]]:
    """The lake under the run lock and its warehouse, once any interrupted run is recovered (where ``maintain``
    and ``forget`` work)."""
    with lake.lake_lock(lake_uri, lock_timeout_s), open_warehouse(warehouse, schema_name) as wh:
        wh.ensure_schema()
        the_lake = open_lake(lake_uri, schema_name)
        recover(the_lake, wh, valid_day_minutes=valid_day_minutes)
        yield the_lake, wh


def _follow_maintenance(lake_: Lake, wh: Warehouse) -> None:
    """A maintenance interrupted between its lake commit and the warehouse's transaction: the warehouse follows
    the compacted tables (same rows, other files) before anything else reads or removes a file."""
    held = wh.lake_state()
    moved = [name for name, snap in lake_.snapshots().items() if held.get(name, (snap, ""))[0] != snap]
    runs = {current_run(lake_.tables[name]) for name in moved}
    if runs and all(is_maintenance(r) for r in runs):
        log.warning("the last maintenance was interrupted: the warehouse now follows the compacted lake")
        wh.adopt_lake(LakeApply(max(runs), lake_.snapshots(), {}, lake_.files()))  # type: ignore[type-var]


def _delivered_keys(wh: Warehouse) -> set[tuple[str, str, dt.date]]:
    d = wh.names.q(schema.PIPELINE_DELIVERIES.name)
    return {(str(p), str(a), day) for p, a, day in wh.query(f"SELECT participant_id, activity, date FROM {d}")}


def finish_run(
    plan: Plan,
    wh: Warehouse,
    status: str,
    *,
    message: str | None = None,
    rows_by_table: dict[str, int] | None = None,
) -> RunSummary:
    """Gather the run's statistics from the ledger and record them in ``pipeline_runs``."""
    summary = RunSummary(
        plan.run_id,
        status,
        plan.started_at,
        message=message,
        objects=plan.objects,
        bytes_listed=plan.bytes_listed,
        rows_by_table=rows_by_table or {},
    )
    summary.per_activity = {a: Counter(c) for a, c in plan.counts.items()}
    if status in ("succeeded", "partial", "failed") and plan.todo:
        warnings = wh.warnings(plan.run_id)
        for activity, _files, loaded, rejected, superseded, *rows in wh.file_stats(plan.run_id):
            c = summary.per_activity.setdefault(activity, Counter())
            c.update(files_loaded=int(loaded), files_rejected=int(rejected), files_superseded=int(superseded))
            for key, value in zip(("read", "loaded", "rejected", "duplicate", "superseded"), rows, strict=True):
                c[f"rows_{key}"] += int(value or 0)
            c["warnings"] += warnings.get(activity, 0)
        summary.rules = wh.rule_counts(plan.run_id)
    elif status == "gated":
        summary.rules = wh.staged_rule_counts()
    summary.duration_s = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - plan.started_at).total_seconds()
    _record(wh, summary)
    if plan.todo:
        _end_journal(plan, status)
    return summary


def _end_journal(plan: Plan, status: str) -> None:
    """The run's journal ends with ``status``, except a failed run past its point of no return (recovery
    completes it). Best effort: the storage may be what failed, and recovery reads whatever state is there."""
    try:
        state = journal.read_state(plan.staging_uri)
        if state is not None and not (status == "failed" and state["state"] in (journal.COMMITTING, journal.APPLIED)):
            journal.write_state(plan.staging_uri, _ENDING.get(status, journal.FINISHED))
    except Exception as exc:  # noqa: BLE001 - never hide the run's own outcome
        log.warning("run %s: could not record the end of its journal (%s)", plan.run_id, type(exc).__name__)


_ENDING = {"gated": journal.GATED, "failed": journal.FAILED, journal.ABANDONED: journal.ABANDONED}


def _record(wh: Warehouse, s: RunSummary) -> None:
    finished = s.started_at + dt.timedelta(seconds=s.duration_s)
    base = {
        "run_id": s.run_id,
        "started_at": s.started_at,
        "finished_at": finished,
        "status": s.status,
        "duration_s": s.duration_s,
        "message": s.message,
    }
    rows = [{**base, "activity": ACTIVITY_TOTAL, **{k: s.totals.get(k, 0) for k in STAT_FIELDS}}]
    rows += [
        {**base, "activity": a, **{k: c.get(k, 0) for k in STAT_FIELDS}} for a, c in sorted(s.per_activity.items())
    ]
    try:
        wh.record_run(s.run_id, rows)
    except Exception:  # recording must never hide the run's own outcome
        log.exception("could not record run %s statistics", s.run_id)


# ---- the whole run in one process ------------------------------------------------------------


def run(
    source: str,
    lake_uri: str,
    warehouse: str,
    schema_name: str = "rural",
    *,
    workers: int = 0,
    run_date: dt.date | None = None,
    limits: Limits = DEFAULT_LIMITS,
    gate: GateLimits | None = None,
    force: bool = False,
    retry_rejected: bool = False,
    valid_day_minutes: int = 600,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    engine: str = "local",
    zones: ZoneMap | None = None,
) -> RunSummary:
    """Run the pipeline once. Bad input is rejected and counted; only a failing run raises.

    A run stopped by the validation gate returns with ``status == "gated"`` (production
    untouched, staging kept); ``force`` merges anyway. ``retry_rejected`` re-reads files that
    were rejected, or had rejected rows, even though they did not change (after a rule fix).
    ``engine`` runs the transform locally (``local``) or on Spark (``spark``); the rest is the same.
    ``zones`` (participant time zones) fill ``ts_utc``/``tz_flag`` of the intraday rows; None leaves them null.
    """
    transformer(engine)  # an unknown engine, or pyspark missing, fails before anything is touched
    with lake.lake_lock(lake_uri), open_warehouse(warehouse, schema_name) as wh:
        the_lake = open_lake(lake_uri, schema_name)
        plan = plan_run(
            source,
            lake_uri,
            wh,
            run_date=run_date,
            retry_rejected=retry_rejected,
            lake_=the_lake,
            valid_day_minutes=valid_day_minutes,
        )
        if not plan.todo:
            return finish_run(plan, wh, "nothing-new", message="no new or changed files")
        try:
            if on_start:
                on_start(plan.todo)
            result = transform_run(
                plan, workers=workers, limits=limits, on_progress=on_progress, engine=engine, zones=zones
            )
            plan.bytes_read = result.bytes_read
            faults.point("transformed")
            load_staging(plan, wh)
            verdict = check_gate(wh, gate or GateLimits())
            message = None
            if not verdict.passed:
                if not force:
                    log.warning("run %s: %s", plan.run_id, verdict.message())
                    return finish_run(plan, wh, "gated", message=verdict.message())
                message = "forced past the gate: " + verdict.message()
            journal.write_state(plan.staging_uri, journal.STAGED)
            faults.point("gate-passed")
            rows = merge_run(plan, wh, valid_day_minutes=valid_day_minutes, lake_=the_lake)
        except Exception as exc:
            finish_run(plan, wh, "failed", message=safe_message(exc))  # never a value nor a secret
            raise
        summary = finish_run(plan, wh, "succeeded", message=message, rows_by_table=rows)
        faults.point("finished")
        summary.bytes_read = result.bytes_read
        return summary
