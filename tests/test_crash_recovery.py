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
import psycopg
import pytest

from fitbit_pipeline import schema
from fitbit_pipeline.sample_data import generate

from .conftest import WAREHOUSES, Env
from .lake_support import read_lake
from .pg_server import create_database
from .test_postgres import _move_days, _tables

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
    return subprocess.run([*CLI, *args], env=_environ(env, fault, sig), capture_output=True, text=True, timeout=180)


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


@pytest.fixture(scope="module")
def reference(tmp_path_factory, request) -> dict[str, tuple[dict, dict]]:
    """The uninterrupted outcome of both deliveries, per warehouse kind."""
    out = {}
    for kind in WAREHOUSES:
        root = tmp_path_factory.mktemp(f"reference-{kind}")
        url = None
        if kind == "postgres":
            url = create_database(request.getfixturevalue("postgres_server"), "fitbit_ref")[1]
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
    assert "Nothing new" in cli(env, "run").stdout


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


def test_a_full_disk_during_the_commit_fails_clearly_and_recovers(env, reference, tmp_path) -> None:
    """The lake on a real 3 MB tmpfs: the run stops at the gate, the disk is filled, the commit fails with a clear
    error; once space is back the next run completes the commit."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (CI does)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        lake = env.root / "lake"
        (mount / "lake").mkdir()
        lake.symlink_to(mount / "lake")
        deliver(env, first=True)
        assert cli(env, "run").returncode == 0
        deliver(env, first=False)
        proc = subprocess.Popen(
            [*CLI, "run"], env=_environ(env, "gate-passed", "STOP"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        _wait_stopped(proc)
        ballast = mount / "ballast"
        with open(ballast, "wb") as fh:  # every free byte
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 1 and "No space left on device" in err, err[-2000:]
        ballast.unlink()
        again = cli(env, "run")
        assert again.returncode == 0, again.stderr[-2000:]
        assert state(env) == reference["duckdb"]
        assert cli(env, "verify").returncode == 0
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _environ(env: Env, fault: str | None = None, sig: str = "KILL") -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FITBIT_")}
    environ.update(FITBIT_SOURCE=str(env.source), FITBIT_LAKE=str(env.lake), FITBIT_WAREHOUSE=env.target)
    environ["FITBIT_WORKERS"] = "2"
    if fault:
        environ.update(FITBIT_FAULT_POINT=fault, FITBIT_FAULT_SIGNAL=sig)
    return environ


def _wait_stopped(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``proc`` has stopped itself at its fault point (state T); its output if it ended instead."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat") as fh:
            state = fh.read().split(")")[-1].split()[0]
        if state == "T":
            return
        if state == "Z":
            out, err = proc.communicate()
            raise AssertionError(f"the run ended before its stop point ({proc.returncode}): {out[-999:]} {err[-999:]}")
        time.sleep(0.1)
    raise AssertionError("the run never reached its stop point")


def test_a_reader_never_sees_a_participant_day_twice_or_missing(env) -> None:
    """While a re-delivery commits, every snapshot a reader opens holds each participant-day exactly once."""
    from .lake_support import lake_files

    deliver(env, first=True)
    assert cli(env, "run").returncode == 0
    deliver(env, first=False)
    proc = subprocess.Popen([*CLI, "run"], env=_environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = 0
    for _ in range(2000):  # bounded: the run takes seconds
        done = proc.poll() is not None
        for name in ("intraday_steps", "intraday_heart"):
            files = lake_files(env.lake, name)
            counts = duckdb.sql(
                f"SELECT participant_id, date, COUNT(*), COUNT(DISTINCT ts) FROM read_parquet({files!r}) GROUP BY ALL"
            ).fetchall()
            keys = {(p, d) for p, d, _, _ in counts}
            assert all(n == distinct for _, _, n, distinct in counts), name  # never a participant-day twice
            assert len(keys) >= 3 * 3 and {d for _, d in keys} >= {dt.date(2024, 5, 1), dt.date(2024, 5, 3)}
            if name == "intraday_steps":
                assert all(n == 1440 for _, _, n, _ in counts)  # never half a day
        seen += 1
        if done:
            break
    assert proc.wait(timeout=180) == 0 and seen > 1


def test_two_runs_at_once_on_one_lake_give_the_result_of_one(env, reference) -> None:
    """The second run waits for the lake (the embedded warehouse cannot be opened twice either), then finds
    nothing new; the result is the uninterrupted one."""
    deliver(env, first=True)
    assert cli(env, "run").returncode == 0
    deliver(env, first=False)
    procs = [
        subprocess.Popen([*CLI, "run"], env=_environ(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outcomes]
    assert sum("Nothing new" in out for out, _ in outcomes) == 1
    assert state(env) == reference["duckdb"]


@pytest.mark.parametrize("warehouse_kind", ["postgres"])
def test_verify_lists_what_differs_and_exits_1(env) -> None:
    """Rows removed behind the pipeline's back, and a value changed: verify names the participant-days."""
    deliver(env, first=True)
    assert cli(env, "run").returncode == 0
    env.execute(
        "DELETE FROM rural.intraday_steps WHERE date = ? AND ts < ?", [dt.date(2024, 5, 2), dt.datetime(2024, 5, 2, 1)]
    )
    env.execute("UPDATE rural.daily_heart SET resting_heart_rate = resting_heart_rate + 1 WHERE date = ?",
                [dt.date(2024, 5, 3)])  # fmt: skip
    check = cli(env, "verify")
    assert check.returncode == 1
    lines = [x for x in check.stdout.splitlines() if x.strip()]
    assert sum("intraday_steps" in x and "2024-05-02" in x and "1440 vs 1380 rows" in x for x in lines) == 3
    assert sum("daily_heart" in x and "2024-05-03" in x and "content differs" in x for x in lines) == 3
    assert "6 participant-day(s) differ" in check.stderr


def test_readers_of_postgres_do_not_wait_for_an_apply(make_env, tmp_path) -> None:
    """While a run's apply transaction is open (the run stopped just before its commit), a reader of an intraday
    table is not blocked: it sees the table as the last commit left it. The new week's partition was created
    before, empty, and the apply only copies into it and indexes it."""
    env = make_env("e", "postgres")
    generate(tmp_path / "all", participants=2, days=15, start=dt.date(2024, 1, 1), seed=8)
    _move_days(tmp_path / "all", env.source, {f"2024-01-{d:02d}" for d in range(1, 10)})
    assert cli(env, "run").returncode == 0
    _move_days(tmp_path / "all", env.source, {"2024-01-10", "2024-01-15"})  # into a partition, a new week
    proc = subprocess.Popen(
        [*CLI, "run"], env=_environ(env, "warehouse-before-commit", "STOP"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_stopped(proc)
        with psycopg.connect(env.postgres_url, autocommit=True) as reader:
            reader.execute("SET lock_timeout = '5s'")
            seen = reader.execute("SELECT COUNT(*), MAX(date) FROM rural.intraday_steps").fetchone()
        assert seen == (2 * 9 * 1440, dt.date(2024, 1, 9))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    assert env.sql("SELECT COUNT(*), MAX(date) FROM rural.intraday_steps") == [(2 * 11 * 1440, dt.date(2024, 1, 15))]
