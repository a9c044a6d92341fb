"""The Airflow DAG: a DagBag check, and real `airflow dags test` runs (SQLite metadata DB)."""

from __future__ import annotations

import email
import json
import os
import socket
import subprocess
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import duckdb
import pytest

from fitbit_pipeline.sample_data import generate

pytest.importorskip("airflow", reason="Airflow is not installed (pip install -e '.[airflow]')")

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
ACTIVITIES = ("heart", "calories", "steps", "elevation", "distance", "floors")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FITBIT_", "AIRFLOW", "REDSHIFT_"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "FITBIT_DAG_RETRY_DELAY_S": "1",
        "FITBIT_WORKERS": "1",
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    return env


def dags_test(env: dict[str, str], extra: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "fitbit_intraday"],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )


def dagbag(extra_env: dict[str, str] | None = None):
    from airflow.dag_processing.dagbag import DagBag

    old = dict(os.environ)
    os.environ.update(extra_env or {})
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bag = DagBag(dag_folder=str(DAGS))
    finally:
        os.environ.clear()
        os.environ.update(old)
    return bag, [w for w in caught if "fitbit" in str(w.filename) or "dags" in str(w.filename)]


def test_dagbag_imports_cleanly_with_the_expected_shape() -> None:
    bag, caught = dagbag()
    assert bag.import_errors == {}
    assert caught == []
    dag = bag.dags["fitbit_intraday"]
    assert dag.schedule == "0 0 * * 0" and dag.catchup is False and dag.max_active_runs == 1
    tasks = {t.task_id: t for t in dag.tasks}
    branches = [f"activities.process_{a}" for a in ACTIVITIES]
    assert set(tasks) == {
        "detect_new_files",
        *branches,
        "load_staging_and_gate",
        "merge_production",
        "statistics",
        "compliance_report",
        "notify",
    }
    for b in branches:  # six parallel branches: each depends only on the detection
        assert tasks[b].upstream_task_ids == {"detect_new_files"}
        assert tasks[b].retries == 3 and tasks[b].retry_exponential_backoff
        assert tasks[b].max_retry_delay.total_seconds() == 1800 and tasks[b].execution_timeout is not None
    assert set(branches) <= tasks["load_staging_and_gate"].upstream_task_ids
    assert tasks["load_staging_and_gate"].trigger_rule == "all_done_min_one_success"
    assert "load_staging_and_gate" in tasks["merge_production"].upstream_task_ids
    assert tasks["statistics"].upstream_task_ids >= {"merge_production"}
    assert tasks["compliance_report"].upstream_task_ids == {"statistics"}
    assert tasks["notify"].upstream_task_ids == {"statistics", "compliance_report"}
    assert all(t.on_failure_callback for t in dag.tasks)


def test_google_health_collect_task_only_when_enabled_and_parses_without_credentials() -> None:
    bag, caught = dagbag({"GOOGLE_HEALTH_COLLECT": "true"})  # no client id, secret or participants file
    assert bag.import_errors == {} and caught == []
    tasks = {t.task_id: t for t in bag.dags["fitbit_intraday"].tasks}
    assert tasks["collect"].upstream_task_ids == set()
    assert tasks["detect_new_files"].upstream_task_ids == {"collect"}
    assert tasks["detect_new_files"].trigger_rule == "all_done"  # a failed participant does not stop the load
    assert tasks["collect"].on_failure_callback
    off, _ = dagbag({"GOOGLE_HEALTH_COLLECT": "false"})
    off_tasks = {t.task_id: t for t in off.dags["fitbit_intraday"].tasks}
    assert "collect" not in off_tasks and off_tasks["detect_new_files"].trigger_rule == "all_success"


def test_maintain_task_only_when_enabled_after_the_report() -> None:
    bag, caught = dagbag({"FITBIT_MAINTAIN_AFTER_RUN": "true"})
    assert bag.import_errors == {} and caught == []
    tasks = {t.task_id: t for t in bag.dags["fitbit_intraday"].tasks}
    assert tasks["maintain"].upstream_task_ids == {"compliance_report"}
    assert tasks["maintain"].on_failure_callback and tasks["maintain"].execution_timeout is not None
    off, _ = dagbag({"FITBIT_MAINTAIN_AFTER_RUN": "false"})
    assert "maintain" not in {t.task_id for t in off.dags["fitbit_intraday"].tasks}


def test_glue_mode_renders_one_glue_job_per_activity() -> None:
    bag, _ = dagbag(
        {
            "FITBIT_EXECUTION_MODE": "glue",
            "GLUE_JOB_PREFIX": "rural",
            "GLUE_SCRIPTS_BUCKET": "scripts-bkt",
            "FITBIT_SOURCE_BUCKET": "raw-bkt",
            "FITBIT_SOURCE_PREFIX": "exports/",
            "FITBIT_DEST_BUCKET": "lake-bkt",
            "FITBIT_DEST_PREFIX": "fitbit",
            "AWS_REGION": "eu-west-1",
        }
    )
    assert bag.import_errors == {}
    dag = bag.dags["fitbit_intraday"]
    for a in ACTIVITIES:
        op = dag.get_task(f"activities.process_{a}")
        assert type(op).__name__ == "GlueJobOperator"
        assert op.job_name == f"rural_{a}_processor"
        assert op.script_location == "s3://scripts-bkt/fitbit_pipeline/glue_job.py"
        assert op.aws_conn_id == "aws_default"
        assert op.script_args == {
            "--activity_type": a,
            "--source_bucket": "raw-bkt",
            "--source_prefix": "exports/",
            "--dest_bucket": "lake-bkt",
            "--dest_prefix": "fitbit",
            "--run_id": "{{ ti.xcom_pull(task_ids='detect_new_files')['run_id'] }}",
        }
        assert op.upstream_task_ids == {"detect_new_files"}


def _warehouse_counts(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {a: con.execute(f"SELECT COUNT(*) FROM rural.intraday_{a}").fetchall()[0][0] for a in ACTIVITIES} | {
            "runs": con.execute("SELECT COUNT(*) FROM rural.pipeline_runs WHERE activity = 'ALL'").fetchall()[0][0]
        }
    finally:
        con.close()


def test_dag_runs_end_to_end_into_duckdb_then_short_circuits(airflow_home, tmp_path) -> None:
    truth = generate(tmp_path / "src", participants=2, days=2, seed=13)
    cfg = {
        "FITBIT_SOURCE": str(tmp_path / "src"),
        "FITBIT_LAKE": str(tmp_path / "lake"),
        "FITBIT_WAREHOUSE": str(tmp_path / "wh.duckdb"),
    }
    proc = dags_test(airflow_home, cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "state=success" in proc.stdout + proc.stderr
    counts = _warehouse_counts(tmp_path / "wh.duckdb")
    assert counts == {a: truth.total_rows(a) for a in ACTIVITIES} | {"runs": 1}
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    status, loaded = con.execute(
        "SELECT status, files_loaded FROM rural.pipeline_runs WHERE activity = 'ALL'"
    ).fetchall()[0]
    per_activity = con.execute("SELECT COUNT(*) FROM rural.pipeline_runs WHERE activity <> 'ALL'").fetchall()[0][0]
    con.close()
    assert (status, loaded, per_activity) == ("succeeded", 24, 6)
    reports = list((tmp_path / "lake" / "reports").glob("compliance-*.html"))
    assert len(reports) == 1 and "Fitbit compliance report" in reports[0].read_text()
    again = dags_test(airflow_home, cfg)
    assert again.returncode == 0
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    assert con.execute(
        "SELECT status FROM rural.pipeline_runs WHERE activity = 'ALL' ORDER BY started_at"
    ).fetchall() == [("succeeded",), ("nothing-new",)]
    con.close()


def test_dag_runs_end_to_end_into_postgresql(airflow_home, tmp_path, postgres_db) -> None:
    import psycopg

    url = postgres_db()
    truth = generate(tmp_path / "src", participants=2, days=2, seed=14)
    cfg = {"FITBIT_SOURCE": str(tmp_path / "src"), "FITBIT_LAKE": str(tmp_path / "lake"), "FITBIT_WAREHOUSE": url}
    cfg |= {"FITBIT_MAINTAIN_AFTER_RUN": "true", "FITBIT_STAGING_RETENTION_DAYS": "0"}  # the maintain task runs too
    proc = dags_test(airflow_home, cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not list((tmp_path / "lake" / "staging").iterdir())  # maintain pruned the finished run's staging
    with psycopg.connect(url) as con:
        for a in ACTIVITIES:
            assert con.execute(f"SELECT COUNT(*) FROM rural.intraday_{a}").fetchone()[0] == truth.total_rows(a)
        status = con.execute("SELECT status, files_loaded FROM rural.pipeline_runs WHERE activity = 'ALL'").fetchall()
        assert status == [("succeeded", 24)]
        assert con.execute("SELECT COUNT(*) FROM rural.daily_wear").fetchone()[0] == 4


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receivers():
    from aiosmtpd.controller import Controller

    class Mailbox:
        def __init__(self) -> None:
            self.messages: list[email.message.Message] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
            self.messages.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    _Webhook.received = []
    http = HTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    box = Mailbox()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    yield (
        {
            "FITBIT_NOTIFY_WEBHOOK_URL": f"http://127.0.0.1:{http.server_address[1]}/hooks/T000/B000/secret",
            "FITBIT_NOTIFY_SMTP_HOST": "127.0.0.1",
            "FITBIT_NOTIFY_SMTP_PORT": str(port),
            "FITBIT_NOTIFY_EMAIL_TO": "coordinator@study.example",
        },
        _Webhook.received,
        box.messages,
    )
    smtp.stop()
    http.shutdown()


def test_transient_activity_failure_is_retried_and_succeeds(airflow_home, tmp_path) -> None:
    truth = generate(tmp_path / "src", participants=1, days=2, seed=3)
    cfg = {
        "FITBIT_SOURCE": str(tmp_path / "src"),
        "FITBIT_LAKE": str(tmp_path / "lake"),
        "FITBIT_WAREHOUSE": str(tmp_path / "wh.duckdb"),
        "PYTHONPATH": str(Path(__file__).parent / "airflow_fault"),
        "FITBIT_TEST_FAULT": f"steps:2:{tmp_path / 'attempts'}",
    }
    proc = dags_test(airflow_home, cfg)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "attempts").read_text() == "2"  # failed twice, the third attempt ran for real
    assert "injected transient fault #2" in proc.stdout + proc.stderr
    assert _warehouse_counts(tmp_path / "wh.duckdb")["steps"] == truth.total_rows("steps")


def test_permanent_failure_notifies_webhook_and_email(airflow_home, tmp_path, receivers) -> None:
    channels, hooks, mails = receivers
    truth = generate(tmp_path / "src", participants=1, days=2, seed=3)
    cfg = {
        "FITBIT_SOURCE": str(tmp_path / "src"),
        "FITBIT_LAKE": str(tmp_path / "lake"),
        "FITBIT_WAREHOUSE": str(tmp_path / "wh.duckdb"),
        "PYTHONPATH": str(Path(__file__).parent / "airflow_fault"),
        "FITBIT_TEST_FAULT": f"floors:99:{tmp_path / 'attempts'}",
        **channels,
    }
    proc = dags_test(airflow_home, cfg)
    out = proc.stdout + proc.stderr
    assert (tmp_path / "attempts").read_text() == "4"  # the first try and three retries
    texts = [h["text"] for h in hooks]
    failed = [t for t in texts if "activities.process_floors failed" in t]
    assert failed and "ConnectionError: injected transient fault" in failed[-1]  # the class and words, no numbers
    subjects = [m["Subject"] for m in mails]
    assert any("activities.process_floors failed" in s for s in subjects)
    # the other activities still loaded, and the run says what is missing
    counts = _warehouse_counts(tmp_path / "wh.duckdb")
    assert counts["floors"] == 0 and counts["steps"] == truth.total_rows("steps")
    summary = [t for t in texts if "partial" in t]
    assert summary and "activities failed and were not loaded: floors" in summary[-1]
    assert "state=failed" in out
    # no secret in any message
    assert all("secret" not in t for t in texts)
