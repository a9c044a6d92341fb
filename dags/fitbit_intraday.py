"""Weekly Fitbit intraday load: detect, 6 activities in parallel, stage + gate, merge, stats, report, notify.

A thin shell over :mod:`fitbit_pipeline.orchestration`; configuration comes from the worker's
environment (see the README), connections ``aws_default`` (Glue mode) and ``redshift_default``.
Mode: ``FITBIT_EXECUTION_MODE=local`` (default: tasks run the package in the worker) or ``glue``
(each activity runs as the AWS Glue job ``{GLUE_JOB_PREFIX}_{activity}_processor``).
``GOOGLE_HEALTH_COLLECT=true`` adds a ``collect`` task first: Google Health API v4 data into the source;
``FITBIT_MAINTAIN_AFTER_RUN=true`` a ``maintain`` task after the report (``fitbit-pipeline maintain``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, TaskGroup, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException
from airflow.task.trigger_rule import TriggerRule

from fitbit_pipeline import orchestration as orch

MODE = os.environ.get("FITBIT_EXECUTION_MODE", "local")
SCHEDULE = os.environ.get("FITBIT_DAG_SCHEDULE", "0 0 * * 0")  # Sunday 00:00
RETRY_DELAY = timedelta(seconds=float(os.environ.get("FITBIT_DAG_RETRY_DELAY_S", "120")))
# Google Health API v4: a collect task before detect_new_files (read at parse time; no credentials needed to parse).
COLLECT = os.environ.get("GOOGLE_HEALTH_COLLECT", "false").strip().lower() in ("1", "true", "yes", "on")
# Lake maintenance (compaction, snapshot expiry, orphan files, old staging) after the report, on a setting.
MAINTAIN = os.environ.get("FITBIT_MAINTAIN_AFTER_RUN", "false").strip().lower() in ("1", "true", "yes", "on")


def on_failure(context: dict[str, Any]) -> None:
    """Notify (webhook, e-mail, SNS as configured): which task of which run failed, and why."""
    ti = context["ti"]
    orch.notify_failure(
        f"DAG run {context['run_id']}",
        ti.task_id,
        context.get("exception") or "unknown error",
        attempt=getattr(ti, "try_number", None),
    )


default_args = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": RETRY_DELAY,
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
    "on_failure_callback": on_failure,
}


@dag(
    dag_id="fitbit_intraday",
    schedule=SCHEDULE,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params={"force": Param(False, type="boolean", description="merge even when the validation gate objects")},
    tags=["fitbit", "intraday"],
    doc_md=__doc__,
)
def fitbit_intraday() -> None:
    @task.short_circuit(execution_timeout=timedelta(minutes=30))
    def detect_new_files() -> dict[str, Any]:
        return orch.detect_new_files()

    @task(execution_timeout=timedelta(hours=4))
    def process(plan: dict[str, Any], activity: str) -> dict[str, Any]:
        return orch.process_activity(plan["run_id"], activity)

    @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, retries=1)
    def load_staging_and_gate(plan: dict[str, Any]) -> dict[str, Any]:
        try:
            return orch.load_and_gate(plan["run_id"], force=bool(get_current_context()["params"]["force"]))
        except orch.GateStopped as exc:
            raise AirflowFailException(str(exc)) from None  # a human decision, not a retry

    @task
    def merge_production(plan: dict[str, Any], gate: dict[str, Any]) -> dict[str, int]:
        return orch.merge_production(plan["run_id"])

    @task
    def statistics(plan: dict[str, Any], rows: dict[str, int]) -> dict[str, Any]:
        ti = get_current_context()["ti"]
        failed = [
            a
            for a in orch.ACTIVITY_NAMES
            if a in plan["files"] and ti.xcom_pull(task_ids=f"activities.process_{a}") is None
        ]
        return orch.record_statistics(plan["run_id"], rows, failed)

    @task(retries=1)
    def compliance_report(summary: dict[str, Any]) -> dict[str, Any]:
        return orch.compliance_report(summary["run_id"])

    @task(retries=0)
    def notify(summary: dict[str, Any], report: dict[str, Any]) -> dict[str, str]:
        sent = orch.notify_summary(summary, report.get("report"))
        if summary["status"] != "succeeded":
            raise AirflowFailException(summary["message"] or summary["status"])
        return sent

    @task(execution_timeout=timedelta(hours=2), retries=1)
    def maintain(report: dict[str, Any]) -> dict[str, Any]:
        return orch.maintain_lake()

    @task(execution_timeout=timedelta(hours=6), retries=1)
    def collect() -> dict[str, Any]:
        return orch.collect_google_health()

    if COLLECT:  # a failed participant fails (and notifies) collect; what was collected is still loaded
        plan = detect_new_files.override(trigger_rule=TriggerRule.ALL_DONE)()
        collect() >> plan
    else:
        plan = detect_new_files()
    with TaskGroup("activities") as activities:
        for name in orch.ACTIVITY_NAMES:
            if MODE == "glue":
                _glue_task(name, plan)
            else:
                process.override(task_id=f"process_{name}")(plan, name)
    gate = load_staging_and_gate(plan)
    activities >> gate
    rows = merge_production(plan, gate)
    stats = statistics(plan, rows)
    report = compliance_report(stats)
    notify(stats, report)
    if MAINTAIN:  # after the report (both open the warehouse), beside the notification
        maintain(report)


def _glue_task(activity: str, plan: Any) -> Any:
    """The activity as an AWS Glue job (created by ``fitbit-pipeline glue deploy``)."""
    from airflow.providers.amazon.aws.operators.glue import GlueJobOperator

    from fitbit_pipeline.settings import Settings

    s = Settings()
    op = GlueJobOperator(
        task_id=f"process_{activity}",
        job_name=f"{s.glue_job_prefix}_{activity}_processor",
        script_location=f"s3://{s.glue_scripts_bucket}/fitbit_pipeline/glue_job.py",
        script_args={
            "--activity_type": activity,
            "--source_bucket": s.fitbit_source_bucket or "",
            "--source_prefix": s.fitbit_source_prefix,
            "--dest_bucket": s.fitbit_dest_bucket or "",
            "--dest_prefix": s.fitbit_dest_prefix,
            "--run_id": "{{ ti.xcom_pull(task_ids='detect_new_files')['run_id'] }}",
        },
        aws_conn_id="aws_default",
        region_name=s.aws_region or None,
        wait_for_completion=True,
        verbose=False,
    )
    plan >> op
    return op


fitbit_intraday()
