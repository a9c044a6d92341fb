"""``fitbit-pipeline maintain``: after compaction, snapshot expiry, orphan removal and pruning, every table holds
exactly what it held, the lake and the warehouse agree, later runs give the result they give without
maintenance, and a maintenance killed half-way is completed by the next run.

Real ``fitbit-pipeline`` processes on a real Iceberg lake, against DuckDB and a real PostgreSQL server.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import signal

import pytest
from pyiceberg.expressions import AlwaysTrue

from fitbit_pipeline import schema
from fitbit_pipeline.lake import Lake
from fitbit_pipeline.sample_data import generate

from .conftest import WAREHOUSES, Env
from .test_crash_recovery import _environ, lake_rows, state


@pytest.fixture(params=WAREHOUSES)
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def cli(env: Env, *args: str, fault: str | None = None, **settings: str):
    import subprocess
    import sys

    environ = {**_environ(env, fault), **settings}
    command = [sys.executable, "-c", "from fitbit_pipeline.cli import app; app()", *args]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300)


def deliver(env: Env, ids: list[str], start: dt.date, days: int, seed: int, mtime: int) -> None:
    """Files of ``ids`` for ``days`` days from ``start`` added to (or replacing files in) the source."""
    before = {p: p.stat().st_mtime for p in env.source.rglob("*.json")}
    generate(env.source, participant_ids=ids, days=days, seed=seed, start=start)
    for f in env.source.rglob("*.json"):
        if f not in before or f.stat().st_mtime != before[f]:
            os.utime(f, (mtime, mtime))


def history(env: Env) -> None:
    """Three runs that leave several small files in each day of the lake: two participants, then a third for
    the same days, then one participant's day corrected (its day's files rewritten without it)."""
    may = dt.date(2024, 5, 1)
    deliveries = ((["P1", "P2"], may, 3, 41), (["P3"], may, 3, 43), (["P1"], may + dt.timedelta(1), 1, 44))
    for ids, start, days, seed in deliveries:
        deliver(env, ids, start, days, seed, 1_717_000_000 + seed)
        done = cli(env, "run")
        assert done.returncode == 0, done.stderr[-2000:]


def later(env: Env) -> None:
    """After maintenance: P2's last day corrected and a new day for everyone."""
    deliver(env, ["P2"], dt.date(2024, 5, 3), 1, 45, 1_717_100_000)
    deliver(env, ["P1", "P2", "P3"], dt.date(2024, 5, 4), 1, 46, 1_717_100_000)
    done = cli(env, "run")
    assert done.returncode == 0, done.stderr[-2000:]


def content(env: Env) -> tuple[dict, dict]:
    """Every table but the lake state (its snapshot ids change), and the lake's rows."""
    tables, lake = state(env)
    tables.pop(schema.PIPELINE_LAKE_STATE.name, None)
    tables.pop(schema.PIPELINE_RUNS.name, None)
    return tables, lake


def stored(env: Env) -> set[str]:
    return {str(p) for p in (env.lake / "production").rglob("*") if p.is_file()}


def referenced(env: Env) -> set[str]:
    """Every file the current metadata of every table references."""
    lake = Lake(str(env.lake), "rural")
    out: set[str] = set()
    for table in lake.tables.values():
        out |= {table.metadata_location, *(e.metadata_file for e in table.metadata.metadata_log)}
        for snap in table.snapshots():
            out.add(snap.manifest_list)
            out |= {m.manifest_path for m in snap.manifests(table.io)}
            out |= {t.file.file_path for t in table.scan(snapshot_id=snap.snapshot_id).plan_files()}
    return {p.removeprefix("file://") for p in out}


def files_per_day(env: Env, table: str) -> dict[dt.date, int]:
    lake = Lake(str(env.lake), "rural")
    out: dict[dt.date, int] = {}
    for task in lake.tables[table].scan(row_filter=AlwaysTrue()).plan_files():
        day = dt.date(1970, 1, 1) + dt.timedelta(days=task.file.partition[0])
        out[day] = out.get(day, 0) + 1
    return out


def test_maintenance_keeps_every_row_and_removes_what_nothing_references(make_env) -> None:
    env, plain = make_env("maintained"), make_env("reference")
    for e in (env, plain):
        history(e)
    before = content(env)
    assert max(files_per_day(env, "intraday_heart").values()) >= 2
    assert len(Lake(str(env.lake), "rural").tables["intraday_heart"].snapshots()) == 3
    assert list((env.lake / "staging").iterdir())

    done = cli(
        env, "maintain", "--snapshot-days", "0", FITBIT_STAGING_RETENTION_DAYS="0", FITBIT_QUARANTINE_RETENTION_DAYS="0"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "intraday_heart" in done.stdout and "Removed" in done.stdout

    assert content(env) == before  # every table, every row
    assert set(files_per_day(env, "intraday_heart").values()) == {1}
    lake = Lake(str(env.lake), "rural")
    assert {len(t.snapshots()) for t in lake.tables.values() if t.current_snapshot() is not None} == {1}
    assert stored(env) == referenced(env)  # no file that nothing references
    assert not list((env.lake / "staging").iterdir())
    check = cli(env, "verify")
    assert check.returncode == 0, check.stdout + check.stderr

    for e in (env, plain):  # a later run replaces compacted participant-days as it replaces any
        later(e)
    assert content(env) == content(plain)
    assert cli(env, "verify").returncode == 0


def test_maintenance_refuses_while_a_run_holds_the_lake(tmp_path) -> None:
    env = Env(tmp_path)
    env.source.mkdir()
    history(env)
    fd = os.open(env.lake / "_lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a run holds it
    try:
        refused = cli(env, "maintain")
    finally:
        os.close(fd)
    assert refused.returncode == 1
    assert "another run is using the lake" in refused.stderr
    assert cli(env, "maintain").returncode == 0


def test_a_maintenance_killed_after_compacting_is_completed_by_the_next_run(env) -> None:
    """Killed between the lake's compaction and the warehouse's transaction: the warehouse still reads the old
    files (still there), the next run (even with nothing new) makes it follow the lake, and a later
    maintenance removes the old files."""
    history(env)
    before = content(env)
    killed = cli(env, "maintain", "--snapshot-days", "0", fault="maintain-compacted")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert content(env) == before
    assert cli(env, "verify").returncode == 1  # the warehouse is behind the lake's snapshots
    again = cli(env, "run")
    assert again.returncode == 0 and "Nothing new" in again.stdout, again.stderr[-2000:]
    check = cli(env, "verify")
    assert check.returncode == 0, check.stdout + check.stderr
    assert content(env) == before
    assert cli(env, "maintain", "--snapshot-days", "0").returncode == 0
    assert stored(env) == referenced(env)
    assert content(env) == before and lake_rows(env) == before[1]
