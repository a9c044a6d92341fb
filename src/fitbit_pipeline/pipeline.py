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
from dataclasses import asdict, dataclass, field
from typing import Any

from . import gate, lake, schema
from .errors import safe_message
from .gate import GateLimits, GateResult
from .layouts import LayoutError, match
from .limits import DEFAULT_LIMITS, Limits
from .sources import SourceDoc, filesystem, list_documents
from .timezones import ZoneMap
from .transform import ChunkResult, RunContext, iter_parts, transform
from .warehouse import Warehouse, open_warehouse

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
        )

    def save(self) -> None:
        data = {
            **{k: v for k, v in asdict(self).items() if k != "groups"},
            "started_at": self.started_at.isoformat(),
            "run_date": self.run_date.isoformat(),
            "groups": {g: [asdict(d) for d in docs] for g, docs in self.groups.items()},
        }
        fs, path = filesystem(posixpath.join(self.staging_uri, "_plan.json"))
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        with fs.open(path, "w") as fh:
            json.dump(data, fh)

    @classmethod
    def load(cls, lake_uri: str, run_id: str) -> Plan:
        fs, path = filesystem(posixpath.join(lake.staging_uri(lake_uri, run_id), "_plan.json"))
        with fs.open(path, "r") as fh:
            data = json.load(fh)
        data["started_at"] = dt.datetime.fromisoformat(data["started_at"])
        data["run_date"] = dt.date.fromisoformat(data["run_date"])
        data["groups"] = {g: [SourceDoc(**d) for d in docs] for g, docs in data["groups"].items()}
        return cls(**data)


def new_run_id(now: dt.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


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
) -> Plan:
    """List the source, compare with the ledger, and save the plan of what this run processes."""
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    wh.ensure_schema()
    with _phase("list source"):
        listing = list_documents(source)
    plan = Plan(
        new_run_id(started), started, run_date or started.date(), source, lake_uri, listing.objects, listing.bytes
    )
    known = wh.known_files()
    retry = wh.files_failed_to_read() | (wh.files_with_rejects() if retry_rejected else set())
    for doc in listing.docs:
        activity = _activity_of(doc)
        c = plan.counts.setdefault(activity, Counter())
        c["files_found"] += 1
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
    with _phase(f"transform {', '.join(selected) or 'nothing'} ({engine})"):
        return run_transform(
            docs, plan.context(limits, zones), workers=workers, on_progress=on_progress, part_prefix=prefix
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


def check_gate(wh: Warehouse, limits: GateLimits) -> GateResult:
    return gate.evaluate(wh, limits)


def merge_run(plan: Plan, wh: Warehouse, *, valid_day_minutes: int = 600) -> dict[str, int]:
    """Merge staging into production (one transaction), then refresh the production lake."""
    # Performance: the production lake's new files are written while the warehouse merges (nothing is
    # visible until the merge has committed and the partitions are swapped in).
    with lake.Publication(plan.lake, plan.staging_uri, plan.run_id) as publication:
        with _phase("merge"):
            merged = wh.merge(plan.run_id, valid_day_minutes=valid_day_minutes)
        with _phase("publish production lake"):
            publication.finish(merged.winners)
    return {t.name: merged.inserted.get(t.name, 0) for t in schema.DATA_TABLES}


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
    return summary


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
        wh.record_run(rows)
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
    with open_warehouse(warehouse, schema_name) as wh:
        plan = plan_run(source, lake_uri, wh, run_date=run_date, retry_rejected=retry_rejected)
        if not plan.todo:
            return finish_run(plan, wh, "nothing-new", message="no new or changed files")
        try:
            if on_start:
                on_start(plan.todo)
            result = transform_run(
                plan, workers=workers, limits=limits, on_progress=on_progress, engine=engine, zones=zones
            )
            plan.bytes_read = result.bytes_read
            load_staging(plan, wh)
            verdict = check_gate(wh, gate or GateLimits())
            message = None
            if not verdict.passed:
                if not force:
                    log.warning("run %s: %s", plan.run_id, verdict.message())
                    return finish_run(plan, wh, "gated", message=verdict.message())
                message = "forced past the gate: " + verdict.message()
            rows = merge_run(plan, wh, valid_day_minutes=valid_day_minutes)
        except Exception as exc:
            finish_run(plan, wh, "failed", message=safe_message(exc))  # never a value nor a secret
            raise
        summary = finish_run(plan, wh, "succeeded", message=message, rows_by_table=rows)
        summary.bytes_read = result.bytes_read
        return summary
