"""A run killed at any point is completed or undone by the next run: lake, warehouse and ledger end exactly as
after an uninterrupted run of the same input, and ``verify`` finds no difference.

Each case is a real ``fitbit-pipeline run`` process that kills itself with a real signal at a named point
(``FITBIT_FAULT_POINT``, see ``fitbit_pipeline.faults``), on an input that re-delivers earlier days.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys

import duckdb
import pytest

from fitbit_pipeline import schema
from fitbit_pipeline.sample_data import generate

from .conftest import WAREHOUSES, Env, with_database
from .lake_support import read_lake
from .test_postgres import _tables

POINTS = [
    "planned",
    "transform-chunk",
    "transformed",
    "staging-loaded",
    "gate-passed",
    "committing",
    "lake-files-written:intraday_heart",
    "lake-committed:intraday_steps",
    "lake-committed:heart_rate_zones",
    "lake-committed",
    "warehouse-before-commit",
    "applied",
    "finished",
]
CLI = [sys.executable, "-c", "from fitbit_pipeline.cli import app; app()"]


def cli(env: Env, *args: str, fault: str | None = None, sig: str = "KILL") -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FITBIT_")}
    environ.update(FITBIT_SOURCE=str(env.source), FITBIT_LAKE=str(env.lake), FITBIT_WAREHOUSE=env.target)
    environ["FITBIT_WORKERS"] = "2"
    if fault:
        environ.update(FITBIT_FAULT_POINT=fault, FITBIT_FAULT_SIGNAL=sig)
    return subprocess.run([*CLI, *args], env=environ, capture_output=True, text=True, timeout=180)


def deliver(env: Env, first: bool) -> None:
    """The first export (3 participants x 3 days), or the next: its last two days again, corrected, and a new day."""
    shutil.rmtree(env.source)
    start = dt.date(2024, 5, 1) if first else dt.date(2024, 5, 2)
    generate(env.source, participants=3, days=3, seed=41 if first else 42, start=start)
    mtime = 1_717_000_000 + (0 if first else 3600)  # the same in every environment; the later export is newer
    for f in env.source.rglob("*.json"):
        os.utime(f, (mtime, mtime))


def lake_rows(env: Env) -> dict[str, list[tuple]]:
    out = {}
    for t in schema.DATA_TABLES:
        cols = ", ".join(f'"{c}"' for c in t.columns if c not in ("run_id", "source_file"))
        out[t.name] = duckdb.sql(f"SELECT {cols} FROM {read_lake(env.lake, t.name)} ORDER BY ALL").fetchall()
    return out


def state(env: Env) -> tuple[dict, dict]:
    tables = _tables(env)
    for name in ("pipeline_files", "pipeline_deliveries", "rejected_records", "data_quality_findings"):
        tables[name] = sorted(tuple(str(v).replace(str(env.source), "<src>") for v in r) for r in tables[name])
    for t in schema.DATA_TABLES:  # source_file names the env's own folder
        cols = [c for c in t.columns if c != "run_id"]
        i = cols.index("source_file")
        tables[t.name] = sorted(r[:i] + r[i + 1 :] for r in tables[t.name])
    return tables, lake_rows(env)


def _database(server: str) -> str:
    import uuid

    import psycopg

    name = f"fitbit_ref_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return with_database(server, name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, request) -> dict[str, tuple[dict, dict]]:
    """The uninterrupted outcome of both deliveries, per warehouse kind."""
    out = {}
    for kind in WAREHOUSES:
        root = tmp_path_factory.mktemp(f"reference-{kind}")
        url = _database(request.getfixturevalue("postgres_server")) if kind == "postgres" else None
        env = Env(root, url)
        env.source.mkdir()
        for first in (True, False):
            deliver(env, first)
            assert cli(env, "run").returncode == 0
        out[kind] = state(env)
    return out


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
@pytest.mark.parametrize("point", POINTS)
def test_a_run_killed_at_any_point_is_recovered_by_the_next(env, reference, warehouse_kind, point) -> None:
    deliver(env, first=True)
    assert cli(env, "run").returncode == 0
    deliver(env, first=False)
    killed = cli(env, "run", fault=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    again = cli(env, "run")
    assert again.returncode == 0, again.stderr[-2000:]
    assert state(env) == reference[warehouse_kind]
    check = cli(env, "verify")
    assert check.returncode == 0, check.stdout + check.stderr
    # nothing of the crashed attempt is left: no run in progress, no uncommitted file
    assert not [
        p
        for p in (env.lake / "staging").glob("*/_state.json")
        if '"finished"' not in p.read_text() and '"abandoned"' not in p.read_text()
    ]
    assert cli(env, "run").returncode == 0 and "Nothing new" in cli(env, "run").stdout


@pytest.mark.parametrize("point", ["transform-chunk", "lake-committed:daily_steps", "warehouse-before-commit"])
def test_a_run_terminated_by_sigterm_is_recovered(env, reference, point) -> None:
    deliver(env, first=True)
    assert cli(env, "run").returncode == 0
    deliver(env, first=False)
    stopped = cli(env, "run", fault=point, sig="TERM")
    assert stopped.returncode != 0
    assert cli(env, "run").returncode == 0
    assert state(env) == reference["duckdb"]
    assert cli(env, "verify").returncode == 0
