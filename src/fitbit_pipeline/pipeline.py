"""One incremental pipeline run: list -> skip unchanged -> transform -> stage -> merge -> publish.

The CLI, the Airflow DAG and tests all call :func:`run`; nothing here prints.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import gate, lake, schema
from .gate import GateLimits
from .layouts import LayoutError, match
from .limits import DEFAULT_LIMITS, Limits
from .sources import SourceDoc, list_documents
from .transform import RunContext, iter_parts, transform
from .warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)

ACTIVITY_TOTAL = "ALL"
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
    status: str  # succeeded | nothing-new | failed
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
            "totals": {k: self.totals.get(k, 0) for k in STAT_FIELDS},
            "per_activity": {a: {k: c.get(k, 0) for k in STAT_FIELDS} for a, c in sorted(self.per_activity.items())},
            "rows_by_table": dict(sorted(self.rows_by_table.items())),
            "rules": dict(self.rules),
            "message": self.message,
        }


def new_run_id(now: dt.datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _activity_of(doc: SourceDoc) -> str:
    try:
        return match(doc.logical_path).activity
    except LayoutError:
        return "unknown"


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
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RunSummary:
    """Run the pipeline once. Bad input is rejected and counted; only a failing run raises.

    A run stopped by the validation gate returns with ``status == "gated"`` (production
    untouched, staging kept); ``force`` merges anyway. ``retry_rejected`` re-reads files that
    were rejected, or had rejected rows, even though they did not change (after a rule fix).
    """
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    t0 = time.perf_counter()
    summary = RunSummary(new_run_id(started), "succeeded", started)
    opts = _Options(workers, run_date or started.date(), limits, gate or GateLimits(), force, retry_rejected)
    with open_warehouse(warehouse, schema_name) as wh:
        try:
            _run(summary, wh, source, lake_uri, opts, on_start, on_progress)
        except Exception as exc:
            summary.status = "failed"
            summary.message = f"{type(exc).__name__}: {exc}"
            summary.duration_s = time.perf_counter() - t0
            _record(wh, summary)
            raise
        summary.duration_s = time.perf_counter() - t0
        _record(wh, summary)
    return summary


@dataclass(frozen=True)
class _Options:
    workers: int
    run_date: dt.date
    limits: Limits
    gate: GateLimits
    force: bool
    retry_rejected: bool


def _run(
    summary: RunSummary,
    wh: Warehouse,
    source: str,
    lake_uri: str,
    opts: _Options,
    on_start: Callable[[int], None] | None,
    on_progress: Callable[[int], None] | None,
) -> None:
    wh.ensure_schema()
    listing = list_documents(source)
    summary.objects, summary.bytes_listed = listing.objects, listing.bytes
    known = wh.known_files()
    retry = wh.files_with_rejects() if opts.retry_rejected else set()
    todo: list[SourceDoc] = []
    for doc in listing.docs:
        c = summary.per_activity.setdefault(_activity_of(doc), Counter())
        c["files_found"] += 1
        previous = known.get(doc.source_file)
        if previous == doc.fingerprint and doc.source_file not in retry:
            c["files_unchanged"] += 1
            continue
        c["files_new" if previous is None else "files_changed" if previous != doc.fingerprint else "files_retried"] += 1
        todo.append(doc)
    log.info("run %s: %d documents found, %d to process", summary.run_id, len(listing.docs), len(todo))
    if not todo:
        summary.status = "nothing-new"
        summary.message = "no new or changed files"
        return
    if on_start:
        on_start(len(todo))
    ctx = RunContext(
        run_id=summary.run_id,
        run_date=opts.run_date,
        staging_uri=lake.staging_uri(lake_uri, summary.run_id),
        quarantine_uri=lake.quarantine_uri(lake_uri, summary.run_id),
        processed_at=summary.started_at,
        limits=opts.limits,
    )
    with _phase("transform"):
        result = transform(todo, ctx, workers=opts.workers, on_progress=on_progress)
    summary.bytes_read = result.bytes_read
    parts = {t.name: list(iter_parts(ctx.staging_uri, t.name)) for t in schema.STAGED_TABLES}
    with _phase("load staging"):
        wh.load_staging(parts)
    verdict = gate.evaluate(wh, opts.gate)
    if not verdict.passed:
        summary.message = verdict.message()
        if not opts.force:
            summary.status = "gated"
            summary.rules = wh.staged_rule_counts()
            log.warning("run %s: %s", summary.run_id, summary.message)
            return
        summary.message = "forced past the gate: " + summary.message
    with _phase("merge"):
        merged = wh.merge(summary.run_id)
    summary.rows_by_table = {t.name: merged.inserted.get(t.name, 0) for t in schema.DATA_TABLES}
    with _phase("publish production lake"):
        lake.publish(lake_uri, ctx.staging_uri, merged.winners, summary.run_id)
    warnings = wh.warnings(summary.run_id)
    for activity, _files, loaded, rejected, superseded, *rows in wh.file_stats(summary.run_id):
        c = summary.per_activity.setdefault(activity, Counter())
        c.update(files_loaded=int(loaded), files_rejected=int(rejected), files_superseded=int(superseded))
        for key, value in zip(("read", "loaded", "rejected", "duplicate", "superseded"), rows, strict=True):
            c[f"rows_{key}"] += int(value or 0)
        c["warnings"] += warnings.get(activity, 0)
    summary.rules = wh.rule_counts(summary.run_id)


@contextmanager
def _phase(name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("%s ...", name)
    yield
    log.info("%s done in %.2f s", name, time.perf_counter() - t0)


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
