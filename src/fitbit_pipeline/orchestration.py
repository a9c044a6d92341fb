"""Task bodies for orchestrators (the Airflow DAG), free of any Airflow import.

Each function takes and returns small JSON-able values (XCom-friendly: counts, ids, never
measured values) and reads its configuration from :class:`Settings` in the worker, so nothing
secret travels through task arguments or the UI.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
from typing import Any

from . import pipeline
from .activities import ACTIVITIES
from .notify import Notifier, failure_notification, run_notification
from .pipeline import UNKNOWN, Plan
from .settings import Settings
from .warehouse import open_warehouse

log = logging.getLogger(__name__)
ACTIVITY_NAMES = tuple(a.name for a in ACTIVITIES)


class GateStopped(RuntimeError):
    """The validation gate stopped the run before production was touched."""


def _warehouse(s: Settings):  # noqa: ANN202 - a context manager of the configured warehouse
    return open_warehouse(s.warehouse_target(), s.redshift_schema)


class CollectFailed(RuntimeError):
    """At least one participant failed after retries (the others were collected)."""


def collect_google_health(
    settings: Settings | None = None, since: str | None = None, until: str | None = None
) -> dict[str, Any]:
    """Collect from the Google Health API v4 into the source (GOOGLE_HEALTH_PARTICIPANTS, FITBIT_SOURCE).

    Returns the per-participant summary (counts, statuses, error classes: no values, no tokens); raises
    :class:`CollectFailed` when a participant failed for a reason other than consent, after writing the others.
    """
    from .google_health import collect as gh

    results = gh.run(settings or Settings(), since=since, until=until)
    summary = {"participants": [r.as_dict() for r in results]}
    failed = [r.participant_id for r in results if r.status == "failed"]
    if failed:
        raise CollectFailed(f"collect failed for {len(failed)} participant(s): {', '.join(failed)}")
    return summary


def detect_new_files(settings: Settings | None = None) -> dict[str, Any]:
    """Plan the run from the ledger. An empty result means nothing is new (the DAG short-circuits).

    Files of no known layout are rejected here (they belong to no activity branch).
    """
    s = settings or Settings()
    with _warehouse(s) as wh:
        plan = pipeline.plan_run(s.source_uri(), s.lake_uri(), wh)
        if not plan.todo:
            summary = pipeline.finish_run(plan, wh, "nothing-new", message="no new or changed files")
            log.info("nothing new: %s", summary.as_dict()["totals"])
            return {}
    if UNKNOWN in plan.groups:
        pipeline.transform_run(plan, [UNKNOWN], workers=s.workers(), limits=s.limits(), zones=s.zone_map())
    return {"run_id": plan.run_id, "files": {g: len(d) for g, d in plan.groups.items()}}


def process_activity(run_id: str, activity: str, settings: Settings | None = None) -> dict[str, Any]:
    """Parse, validate and stage one activity's new files (idempotent: a retry replaces its parts)."""
    s = settings or Settings()
    plan = Plan.load(s.lake_uri(), run_id)
    result = pipeline.transform_run(plan, [activity], workers=s.workers(), limits=s.limits(), zones=s.zone_map())
    return {
        "activity": activity,
        "files": result.files,
        "statuses": dict(result.statuses),
        "rows": dict(result.rows),
        "rules": dict(result.rules),
    }


def load_and_gate(run_id: str, force: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    """Load staging into the warehouse and apply the validation gate (raises :class:`GateStopped`)."""
    s = settings or Settings()
    plan = Plan.load(s.lake_uri(), run_id)
    with _warehouse(s) as wh:
        pipeline.load_staging(plan, wh)
        verdict = pipeline.check_gate(wh, s.gate_limits())
        if not verdict.passed and not force:
            pipeline.finish_run(plan, wh, "gated", message=verdict.message())
            raise GateStopped(verdict.message())
    return {"run_id": run_id, "gate": "passed" if verdict.passed else "forced", "breaches": verdict.breaches}


def merge_production(run_id: str, settings: Settings | None = None) -> dict[str, int]:
    s = settings or Settings()
    plan = Plan.load(s.lake_uri(), run_id)
    with _warehouse(s) as wh:
        return pipeline.merge_run(plan, wh, valid_day_minutes=s.valid_day_minutes())


def record_statistics(
    run_id: str, rows_by_table: dict[str, int], failed_activities: list[str], settings: Settings | None = None
) -> dict[str, Any]:
    """Record the run in ``pipeline_runs`` and return its statistics (the task's XCom)."""
    s = settings or Settings()
    plan = Plan.load(s.lake_uri(), run_id)
    message = None
    if failed_activities:
        message = (
            f"activities failed and were not loaded: {', '.join(failed_activities)}; "
            "their files stay new and are retried by the next run"
        )
    with _warehouse(s) as wh:
        status = "partial" if failed_activities else "succeeded"
        summary = pipeline.finish_run(plan, wh, status, message=message, rows_by_table=rows_by_table)
    return summary.as_dict()


def compliance_report(run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Write the compliance report of the last 7 data days to ``<lake>/reports/``; alert on silent participants."""
    from . import report as reporting

    s = settings or Settings()
    with _warehouse(s) as wh:
        last = reporting.latest_data_day(wh)
        if last is None:
            return {"report": None, "silent": 0}
        data = reporting.build(
            wh,
            last - dt.timedelta(days=6),
            last,
            rules=reporting.SilentRules(s.fitbit_silent_after_days, s.fitbit_wear_drop_ratio),
        )
    uri = reporting.write(data, posixpath.join(s.lake_uri(), "reports", f"compliance-{run_id}.html"))
    alert = reporting.silent_alert(data)
    if alert:
        Notifier(s.notify_config()).send(alert)
    return {"report": uri, "silent": len(data.silent)}


def maintain_lake(settings: Settings | None = None) -> dict[str, Any]:
    """``fitbit-pipeline maintain`` after a run (``FITBIT_MAINTAIN_AFTER_RUN``): counts only."""
    from .maintenance import maintain

    s = settings or Settings()
    report = maintain(
        s.lake_uri(),
        s.warehouse_target(),
        s.redshift_schema,
        retention=s.retention(),
        lock_timeout_s=None,  # FITBIT_LAKE_LOCK_TIMEOUT: a run started by hand is waited for
        valid_day_minutes=s.valid_day_minutes(),
    )
    return {
        "compacted": sum(report.compacted.values()),
        "expired": sum(report.expired.values()),
        "orphans_removed": report.orphans_removed,
        "staging_removed": len(report.staging_removed),
        "quarantine_removed": len(report.quarantine_removed),
    }


def notify_summary(
    summary: dict[str, Any], report_uri: str | None = None, settings: Settings | None = None
) -> dict[str, str]:
    s = settings or Settings()
    return Notifier(s.notify_config()).send(run_notification(summary, report_url=report_uri))


def notify_failure(
    run: str, task: str, error: BaseException | str, attempt: int | None = None, settings: Settings | None = None
) -> dict[str, str]:
    s = settings or Settings()
    return Notifier(s.notify_config()).send(failure_notification(run, task, error, attempt=attempt))
