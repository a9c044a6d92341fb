"""``fitbit-pipeline forget``: after a consent withdrawal no table, lake file, snapshot, staging or quarantine
entry holds the participant's id or rows, the other participants are untouched, lake and warehouse agree, and
the participant's files delivered again are skipped and counted. A withdrawal killed half-way is finished by the
next run. Real ``fitbit-pipeline`` processes, a real Iceberg lake, DuckDB and a real PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
import os
import signal

import duckdb
import psycopg
import pyarrow.parquet as pq
import pytest

from fitbit_pipeline import schema
from fitbit_pipeline.lake import Lake
from fitbit_pipeline.sample_data import generate, generate_fitabase

from .conftest import WAREHOUSES, Env
from .test_maintain import cli

WITHDRAWN = "WD-88231"
OTHERS = ["KEEP-1", "KEEP-2"]


@pytest.fixture(params=WAREHOUSES)
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _touch(env: Env, mtime: int) -> None:
    for f in env.source.rglob("*.json"):
        os.utime(f, (mtime, mtime))


def history(env: Env) -> None:
    """Two runs: three participants for three days, then two days again (a second snapshot), one of the
    withdrawn participant's files corrupt (rejected, quarantined)."""
    may = dt.date(2024, 5, 1)
    generate(env.source, participant_ids=[WITHDRAWN, *OTHERS], days=3, seed=51, start=may)
    _touch(env, 1_717_000_000)
    assert cli(env, "run").returncode == 0
    generate(env.source, participant_ids=[WITHDRAWN, *OTHERS], days=2, seed=52, start=may + dt.timedelta(1))
    broken = next(p for p in sorted(env.source.rglob("*.json")) if WITHDRAWN in str(p))
    broken.write_bytes(b'{"activities-heart": [' + WITHDRAWN.encode() + b" not json")
    _touch(env, 1_717_100_000)
    done = cli(env, "run")
    assert done.returncode == 0, done.stderr[-2000:]


def warehouse_rows(env: Env, staging: bool = False) -> dict[str, list[tuple]]:
    """Every row of every table with participants (or of their ``stg_`` tables), by table."""
    tables = [t for t in schema.ALL_TABLES if "participant_id" in t.columns]
    names = [t.staging_name for t in tables if t in schema.STAGED_TABLES] if staging else [t.name for t in tables]
    out: dict[str, list[tuple]] = {}
    if env.postgres_url:
        with psycopg.connect(env.postgres_url) as con:
            for name in names:
                out[name] = sorted(map(tuple, con.execute(f'SELECT * FROM rural."{name}"').fetchall()), key=repr)
        return out
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        for name in names:
            out[name] = sorted(con.execute(f'SELECT * FROM rural."{name}"').fetchall(), key=repr)
    finally:
        con.close()
    return out


def others(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    return {name: [r for r in found if WITHDRAWN not in map(str, r)] for name, found in rows.items()}


def holding(env: Env, text: str) -> list[str]:
    """Files below the lake whose bytes, or whose Parquet rows, hold ``text``."""
    out = []
    for path in env.lake.rglob("*"):
        if not path.is_file():
            continue
        if text.encode() in path.read_bytes():
            out.append(str(path))
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            if any(text in str(v) for c in table.column_names for v in table[c].unique().to_pylist()):
                out.append(str(path))
    return out


def test_a_withdrawn_participant_is_removed_everywhere_and_stays_out(env) -> None:
    history(env)
    before = warehouse_rows(env)
    assert any(WITHDRAWN in map(str, r) for rows in before.values() for r in rows)
    assert holding(env, WITHDRAWN)  # data files, staging and the quarantined file hold the id

    done = cli(env, "forget", WITHDRAWN, "--reason", "withdrew consent")
    assert done.returncode == 0, done.stderr[-2000:]
    assert WITHDRAWN not in done.stdout + done.stderr

    after = warehouse_rows(env)
    assert after == others(before)  # the withdrawn participant's rows gone, every other row as it was
    assert WITHDRAWN not in repr(warehouse_rows(env, staging=True))
    assert not holding(env, WITHDRAWN)  # no data file, snapshot, manifest, staging or quarantine file
    lake = Lake(str(env.lake), "rural")
    assert all(len(t.snapshots()) <= 1 for t in lake.tables.values())
    audit = _audit(env)
    assert len(audit) == 1 and WITHDRAWN not in repr(audit) and audit[0][1] > 0
    check = cli(env, "verify")
    assert check.returncode == 0, check.stdout + check.stderr

    _touch(env, 1_717_200_000)  # every file delivered again
    again = cli(env, "run")
    assert again.returncode == 0, again.stderr[-2000:]
    assert WITHDRAWN not in repr(warehouse_rows(env)) + repr(warehouse_rows(env, staging=True))  # not back
    assert not holding(env, WITHDRAWN)
    assert _forgotten_files(env) == len([p for p in env.source.rglob("*.json") if WITHDRAWN in str(p)])
    assert cli(env, "verify").returncode == 0


def test_a_withdrawal_killed_after_the_lake_is_finished_by_the_next_run(env) -> None:
    history(env)
    before = warehouse_rows(env)
    killed = cli(env, "forget", WITHDRAWN, fault="forget-lake-done")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert list((env.lake / "_forget").iterdir())  # pending: the id is needed to finish
    again = cli(env, "run")
    assert again.returncode == 0, again.stderr[-2000:]
    assert warehouse_rows(env) == others(before)
    assert not holding(env, WITHDRAWN) and not list((env.lake / "_forget").iterdir())
    assert cli(env, "verify").returncode == 0


def test_a_withdrawn_participant_s_days_of_a_newer_fitabase_export_are_skipped(tmp_path) -> None:
    env = Env(tmp_path)
    _, truth = generate_fitabase(env.source / "a", participants=3, days=2)
    first = cli(env, "run")
    assert first.returncode == 0, first.stderr[-2000:]
    withdrawn = sorted({d.participant_id for d in truth})[0]
    assert cli(env, "forget", withdrawn).returncode == 0
    generate_fitabase(env.source / "b", participants=3, days=2)  # the same participants, a newer export
    done = cli(env, "run")
    assert done.returncode == 0, done.stderr[-2000:]
    assert withdrawn not in repr(warehouse_rows(env)) + repr(warehouse_rows(env, staging=True))
    assert not holding(env, withdrawn)


def _audit(env: Env) -> list[tuple]:
    return env.sql("SELECT participant_hash, rows_removed, reason, tables FROM rural.pipeline_forgotten")


def _forgotten_files(env: Env) -> int:
    runs = "SELECT files_forgotten FROM rural.pipeline_runs WHERE activity = 'ALL' ORDER BY started_at DESC LIMIT 1"
    return env.sql(runs)[0][0]
