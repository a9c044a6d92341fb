"""A lake and a warehouse written by the previous version are adopted on the first run, without re-reading the
sources and without losing a row, including where the old lake had fallen behind its warehouse."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from fitbit_pipeline import schema

from .lake_support import read_lake

LEGACY = Path(__file__).parent / "upgrade" / "legacy-lake"
ROWS = {t.name: 5760 for t in schema.INTRADAY.values()} | {"intraday_heart": 5249}
ROWS |= {t.name: 4 for t in schema.DAILY.values()} | {"heart_rate_zones": 16}


SOURCE = Path("/tmp/fitbit-legacy-v1/source")  # where the previous version read it (the ledger names it)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "legacy"
    shutil.copytree(LEGACY, root, ignore=shutil.ignore_patterns("source"))
    shutil.rmtree(SOURCE, ignore_errors=True)
    shutil.copytree(LEGACY / "source", SOURCE)
    for f in SOURCE.rglob("*.json"):  # a copy's mtime is now: restore the one the ledger fingerprinted
        os.utime(f, (1_717_000_000, 1_717_000_000))
    return root


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from fitbit_pipeline.cli import app; app()", *args]
    opts = ["--source", str(SOURCE), "--lake", "lake", "--warehouse", "warehouse.duckdb"]
    if args[0] == "verify":
        opts = opts[2:]
    return subprocess.run([*cmd, *opts], cwd=root, capture_output=True, text=True, timeout=300)


def _old_rows(root: Path, table: str) -> list[tuple]:
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(f'SELECT * FROM rural."{table}" ORDER BY ALL').fetchall()
    finally:
        con.close()


def test_the_previous_versions_lake_and_warehouse_are_adopted(tmp_path) -> None:
    root = _copy(tmp_path)
    before = {t.name: _old_rows(root, t.name) for t in schema.DATA_TABLES}
    assert {k: len(v) for k, v in before.items()} == ROWS
    run = _cli(root, "run")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Nothing new" in run.stdout  # the sources were not read again
    for t in schema.DATA_TABLES:
        cols = ", ".join(f'"{c}"' for c in t.columns)
        lake = duckdb.sql(f"SELECT {cols} FROM {read_lake(root / 'lake', t.name)} ORDER BY ALL").fetchall()
        assert lake == before[t.name], t.name
        assert _old_rows(root, t.name) == before[t.name], t.name  # now a view over the lake
    assert _cli(root, "verify").returncode == 0


def test_a_legacy_lake_behind_its_warehouse_takes_the_warehouses_rows(tmp_path) -> None:
    """The old bug: the warehouse merged, the lake was never published (here: some partitions missing)."""
    root = _copy(tmp_path)
    before = {t.name: _old_rows(root, t.name) for t in schema.DATA_TABLES}
    for day in (root / "lake" / "production" / "intraday_heart").glob("date=2024-06-02"):
        shutil.rmtree(day)
    shutil.rmtree(root / "lake" / "production" / "daily_steps")
    assert _cli(root, "run").returncode == 0
    for name in ("intraday_heart", "daily_steps", "intraday_steps"):
        cols = ", ".join(f'"{c}"' for c in schema.BY_NAME[name].columns)
        assert (
            duckdb.sql(f"SELECT {cols} FROM {read_lake(root / 'lake', name)} ORDER BY ALL").fetchall() == before[name]
        )
    assert _cli(root, "verify").returncode == 0


@pytest.mark.parametrize("warehouse_kind", ["postgres"])  # DuckDB's data tables are views: nothing to convert
def test_integer_measure_columns_of_an_earlier_warehouse_are_widened(env) -> None:
    """An earlier version kept intraday heart rate as INTEGER; fractions (72.4) must not be rounded into it."""
    import json

    from fitbit_pipeline.sample_data import generate

    truth = generate(env.source, participants=1, days=1, seed=3)
    assert env.run().status == "succeeded"
    env.execute("ALTER TABLE rural.intraday_heart ALTER COLUMN value TYPE INTEGER")
    heart = next(env.source.rglob("heart.json"))
    doc = json.loads(heart.read_bytes())
    doc["activities-heart-intraday"]["dataset"][0]["value"] = 72.4
    heart.write_text(json.dumps(doc))
    assert env.run().status == "succeeded"
    first = doc["activities-heart-intraday"]["dataset"][0]["time"]
    got = env.sql(f"SELECT value FROM rural.intraday_heart WHERE CAST(ts AS VARCHAR) LIKE '%{first}'")
    assert got == [(72.4,)] and truth.days
