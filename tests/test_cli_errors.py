"""Configuration errors, secrets and values in messages, as a user meets them: real processes, files, servers.

Every command ends a configuration error with exit 2 and one line naming the setting, never a
traceback; no secret of a URL and no measured value reaches stderr, notifications or ``pipeline_runs``.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import duckdb
import pytest

from fitbit_pipeline.errors import mask_url, safe_message, scrub_url, url_secrets
from fitbit_pipeline.sample_data import generate
from fitbit_pipeline.warehouse import open_warehouse

from .s3_support import free_port

# AWS without any credentials: no keys, no profile files, no instance metadata.
NO_AWS = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_REGION": "us-east-1",
}


def cli(*args: str, cwd: pathlib.Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FITBIT_", "REDSHIFT_", "AWS_"))}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "fitbit_pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_config_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, exactly one line on stderr saying so, no traceback; returns the line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(lines) == 1 and lines[0].startswith("configuration error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def loaded(tmp_path: pathlib.Path) -> pathlib.Path:
    """A folder with ``exports`` loaded once into ``warehouse.duckdb`` (lake ``lake``)."""
    generate(tmp_path / "exports", participants=1, days=1, seed=5)
    proc = cli("run", "--source", "exports", "--warehouse", "warehouse.duckdb", "--lake", "lake", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path


def _counts(warehouse: pathlib.Path) -> tuple[int, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        files = con.execute("SELECT COUNT(*) FROM rural.pipeline_files").fetchone()[0]
        runs = con.execute("SELECT COUNT(DISTINCT run_id) FROM rural.pipeline_runs").fetchone()[0]
        return files, runs
    finally:
        con.close()


# ---- 1. a mistyped or empty source ---------------------------------------------------------------


def test_a_mistyped_or_empty_source_is_a_configuration_error_and_loads_nothing(loaded: pathlib.Path) -> None:
    before = _counts(loaded / "warehouse.duckdb")
    common = ("--warehouse", "warehouse.duckdb", "--lake", "lake")
    typo = cli("run", "--source", "typo/exprots", *common, cwd=loaded)
    assert_config_error(typo, "--source", "does not exist")
    (loaded / "empty").mkdir()
    empty = cli("run", *common, cwd=loaded, env_extra={"FITBIT_SOURCE": "empty"})
    assert_config_error(empty, "FITBIT_SOURCE", "holds no files")
    assert "sample" not in typo.stdout + empty.stdout
    assert not (loaded / "typo").exists() and not any((loaded / "empty").iterdir())
    assert _counts(loaded / "warehouse.duckdb") == before
    validate = cli("validate", "typo/exprots", cwd=loaded)
    assert_config_error(validate, "does not exist")


def test_sample_data_only_when_asked(tmp_path: pathlib.Path) -> None:
    proc = cli("run", "--sample-if-empty", "--workers", "1", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"]["files_loaded"] == 126
    # a source that holds files is never added to
    again = cli("run", "--sample-if-empty", cwd=tmp_path)
    assert again.returncode == 0 and "generated a sample" not in again.stdout and "nothing-new" in again.stdout


# ---- 11. exit 2 with one clear line for every command ----------------------------------------------


@pytest.mark.parametrize("command", ["run", "status", "report"])
def test_warehouse_paths_that_cannot_be_a_duckdb_file(loaded: pathlib.Path, command: str) -> None:
    (loaded / "a-file").write_text("not a folder")
    (loaded / "a-folder").mkdir()
    extra = ("--source", "exports", "--lake", "lake") if command == "run" else ()
    under = cli(command, *extra, "--warehouse", "a-file/wh.duckdb", cwd=loaded)
    assert_config_error(under, "--warehouse", "under the regular file")
    folder = cli(command, *extra, "--warehouse", "a-folder", cwd=loaded)
    assert_config_error(folder, "--warehouse", "is a folder")
    scheme = cli(command, *extra, "--warehouse", "mysql://etl:Secr3tPw@db.example/fitbit", cwd=loaded)
    line = assert_config_error(scheme, "--warehouse", "unsupported warehouse URL scheme 'mysql'")
    assert "Secr3tPw" not in line


def test_lake_under_a_file_or_in_an_unwritable_place(loaded: pathlib.Path) -> None:
    (loaded / "a-file").write_text("not a folder")
    base = ("run", "--source", "exports", "--warehouse", "warehouse.duckdb")
    assert_config_error(cli(*base, "--lake", "a-file/lake", cwd=loaded), "--lake", "under the regular file")
    assert_config_error(cli(*base, "--lake", "a-file", cwd=loaded), "--lake", "is a regular file")
    # /proc refuses new folders even to root (a chmod'ed folder would not stop root)
    assert_config_error(
        cli(*base, cwd=loaded, env_extra={"FITBIT_LAKE": "/proc/fitbit-lake"}), "FITBIT_LAKE", "cannot write"
    )


@pytest.fixture
def locked(loaded: pathlib.Path) -> Iterator[pathlib.Path]:
    """``loaded``, with its warehouse held open for writing by another process."""
    code = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(loaded / "warehouse.duckdb")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        yield loaded
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_conflict_exits_1_and_says_so(locked: pathlib.Path) -> None:
    for args in (("run", "--source", "exports", "--lake", "lake"), ("status",)):
        proc = cli(*args, "--warehouse", "warehouse.duckdb", cwd=locked)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert "in use by another process" in lines[0] and "configuration error" not in lines[0]
        assert "Traceback" not in proc.stderr


def test_bad_postgresql_urls(tmp_path: pathlib.Path) -> None:
    generate(tmp_path / "exports", participants=1, days=1, seed=5)
    port = free_port()
    for url in (f"postgresql://etl@127.0.0.1:{port}/fitbit", "postgresql://etl@127.0.0.1:notaport/fitbit"):
        for args in (("status",), ("report",), ("run", "--source", "exports")):
            proc = cli(*args, "--warehouse", url, cwd=tmp_path)
            assert_config_error(proc, "FITBIT_WAREHOUSE", "cannot connect to the PostgreSQL warehouse")


def test_an_unresponsive_postgresql_is_given_up_after_a_bounded_wait(tmp_path: pathlib.Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://etl@127.0.0.1:{silent.getsockname()[1]}/fitbit"
        started = time.monotonic()
        proc = cli("status", "--warehouse", url, cwd=tmp_path)
        assert time.monotonic() - started < 40
    assert_config_error(proc, "FITBIT_WAREHOUSE", "cannot connect")


def test_s3_without_credentials_or_endpoint(tmp_path: pathlib.Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    no_keys = cli("run", "--source", "s3://study-raw/exports", cwd=tmp_path, env_extra=NO_AWS)
    assert_config_error(no_keys, "AWS credentials", "none found")
    generate(tmp_path / "data" / "source", participants=1, days=1, seed=5)
    lake = cli("run", "--lake", "s3://study-lake/fitbit", cwd=tmp_path, env_extra=NO_AWS)
    assert_config_error(lake, "AWS credentials")
    keys = {**NO_AWS, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    started = time.monotonic()
    unreachable = cli(
        "run", "--source", "s3://study-raw/exports", cwd=tmp_path, env_extra={**keys, "AWS_ENDPOINT_URL": closed}
    )
    assert time.monotonic() - started < 60
    assert_config_error(unreachable, "AWS_ENDPOINT_URL", "cannot reach S3")
    glue = {"GLUE_SCRIPTS_BUCKET": "scripts", "FITBIT_GLUE_ROLE_ARN": "arn:aws:iam::123456789012:role/glue"}
    assert_config_error(cli("glue", "deploy", cwd=tmp_path, env_extra={**NO_AWS, **glue}), "AWS credentials")
    deploy = cli("glue", "deploy", cwd=tmp_path, env_extra={**keys, **glue, "AWS_ENDPOINT_URL": closed})
    assert_config_error(deploy, "AWS_ENDPOINT_URL")


# ---- 12. secrets ---------------------------------------------------------------------------------


class _Webhook(BaseHTTPRequestHandler):
    bodies: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[str]]]:
    """A real Slack-style webhook receiver on 127.0.0.1: its URL and the bodies it received."""
    bodies: list[str] = []
    handler = type("Hook", (_Webhook,), {"bodies": bodies})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def test_a_password_with_an_at_sign_is_never_shown(tmp_path: pathlib.Path, webhook) -> None:
    hook, bodies = webhook
    generate(tmp_path / "exports", participants=1, days=1, seed=5)
    url = f"postgresql://alice:pass@MyRealPassw0rd@127.0.0.1:{free_port()}/fitbit"
    env = {"FITBIT_NOTIFY_WEBHOOK_URL": hook}
    status = cli("status", "--warehouse", url, cwd=tmp_path, env_extra=env)
    run = cli("run", "--source", "exports", "--warehouse", url, cwd=tmp_path, env_extra=env)
    for proc in (status, run):
        line = assert_config_error(proc, "postgresql://alice:***@127.0.0.1")
        assert "MyRealPassw0rd" not in line and "pass@" not in line
    assert len(bodies) == 1 and "fitbit-pipeline run" in bodies[0]
    assert "MyRealPassw0rd" not in bodies[0] and "pass@" not in bodies[0]


@pytest.mark.parametrize(
    ("url", "masked", "secrets"),
    [
        (
            "postgresql://u:p%40ss@h:5/db?sslmode=require&password=x",
            "postgresql://u:***@h:5/db?sslmode=require&password=***",
            ["p%40ss", "p@ss", "x"],
        ),
        (
            "postgresql://alice:pass@MyRealPassw0rd@127.0.0.1/db",
            "postgresql://alice:***@127.0.0.1/db",
            ["pass@MyRealPassw0rd", "MyRealPassw0rd", "pass"],
        ),
        ("postgresql://alice:pa/ss@host:5432/db", "postgresql://alice:***@host:5432/db", ["pa/ss"]),
        ("postgresql://alice@host/db", "postgresql://alice@host/db", []),
        (
            "redshift://etl:S3cr3t@cluster.example:5439/dev?iam=false",
            "redshift://etl:***@cluster.example:5439/dev?iam=false",
            ["S3cr3t"],
        ),
    ],
)
def test_mask_url_and_driver_messages(url: str, masked: str, secrets: list[str]) -> None:
    assert mask_url(url) == masked
    assert set(secrets) <= set(url_secrets(url))
    # libpq reads the userinfo up to the first "@": its message names the rest of the password as the host
    driver = f'connection to "{url}" failed: could not translate host name "MyRealPassw0rd@127.0.0.1"'
    cleaned = scrub_url(driver, url)
    assert all(s not in cleaned for s in secrets) and (url not in cleaned or mask_url(url) == url)


# ---- 13. values in messages ------------------------------------------------------------------------

VALUE = 211  # a steps-per-minute value over the hand-made CHECK constraint


def test_a_failing_run_never_shows_a_measured_value(tmp_path: pathlib.Path, webhook, postgres_db) -> None:
    """A warehouse someone constrained by hand rejects a measured value: PostgreSQL's error names the whole row
    (``DETAIL: Failing row contains (..., 211, ...)``); stderr, the run record and the webhook must not."""
    import psycopg

    hook, bodies = webhook
    truth = generate(tmp_path / "exports", participants=1, days=1, seed=5)
    steps = next(f for f in truth.files if f.name == "steps.json")
    doc = json.loads(steps.read_text())
    rows = doc["activities-steps-intraday"]["dataset"]
    for row in rows:
        row["value"] = 0
    rows[100]["value"] = VALUE
    steps.write_text(json.dumps(doc))
    url = postgres_db()
    with open_warehouse(url, "rural") as wh:
        wh.ensure_schema()
    with psycopg.connect(url, autocommit=True) as con:
        con.execute("ALTER TABLE rural.intraday_steps ADD CONSTRAINT few_steps CHECK (value < 200)")
    proc = cli(
        "run", "--source", "exports", "--warehouse", url, "--lake", "lake", "--workers", "1",
        cwd=tmp_path, env_extra={"FITBIT_NOTIFY_WEBHOOK_URL": hook},
    )  # fmt: skip
    assert proc.returncode == 1 and "run failed: CheckViolation" in proc.stderr, proc.stderr
    with psycopg.connect(url) as con:
        messages = [m for (m,) in con.execute("SELECT DISTINCT message FROM rural.pipeline_runs").fetchall()]
    assert len(messages) == 1 and messages[0].startswith("CheckViolation: ")
    assert len(bodies) == 1 and "CheckViolation" in bodies[0]
    for text in (proc.stdout, proc.stderr, messages[0], bodies[0]):
        assert str(VALUE) not in text, text


def test_safe_message_keeps_class_and_words_not_values() -> None:
    exc = OverflowError("Value 2147483697 too large for column 'value' at postgresql://u:pw@h/db")
    text = safe_message(exc)
    assert text.startswith("OverflowError: Value # too large for column") and "2147483697" not in text
    assert "pw" not in text
