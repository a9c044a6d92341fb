"""End to end on real files into a real warehouse (DuckDB, and a real PostgreSQL server) and a real Parquet lake."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import duckdb
import pytest

from fitbit_pipeline import schema
from fitbit_pipeline.sample_data import generate

from .conftest import WAREHOUSES
from .lake_support import lake_files, read_lake

INTRADAY = [t.name for t in schema.INTRADAY.values()]


@pytest.fixture(params=WAREHOUSES)
def warehouse_kind(request) -> str:
    """Every test here runs against each warehouse."""
    return request.param


def _snapshot(env) -> dict[str, list[tuple]]:
    """Every table but pipeline_runs, fully sorted, for equality checks."""
    return {t.name: env.rows(t.name) for t in schema.STAGED_TABLES}


def _identity_holds(env) -> None:
    bad = env.sql(
        "SELECT source_file FROM rural.pipeline_files WHERE rows_read <> "
        "rows_loaded + rows_rejected + rows_duplicate + rows_superseded"
    )
    assert bad == []


def test_generated_data_end_to_end_matches_truth(env) -> None:
    truth = generate(env.source, participants=3, days=3, seed=7)
    s = env.run(workers=2)
    assert s.status == "succeeded"
    t = s.totals
    assert t["files_found"] == 3 * 3 * 6 == t["files_new"] == t["files_loaded"]
    assert t["files_rejected"] == 0 and t["rows_rejected"] == 0
    for a in ("heart", "calories", "steps", "elevation", "distance", "floors"):
        n, total = env.sql(f"SELECT COUNT(*), COALESCE(SUM(value), 0) FROM rural.intraday_{a}")[0]
        assert n == truth.total_rows(a)
        assert float(total) == pytest.approx(truth.value_sum(a), rel=1e-9)
    for d in truth.days:
        if d.activity == "heart":
            got = env.sql(
                "SELECT resting_heart_rate FROM rural.daily_heart WHERE participant_id = ? AND date = ?",
                [d.participant_id, d.date],
            )
            assert got == [(d.resting_heart_rate,)]
        else:
            got = env.sql(
                f"SELECT value FROM rural.daily_{d.activity} WHERE participant_id = ? AND date = ?",
                [d.participant_id, d.date],
            )
            assert len(got) == 1 and float(got[0][0]) == pytest.approx(float(d.daily_value))
    # The production lake holds the same rows as the warehouse, partitioned by date.
    for name in INTRADAY:
        lake_n = duckdb.sql(f"SELECT COUNT(*) FROM {read_lake(env.lake, name)}").fetchall()[0][0]
        assert lake_n == env.sql(f"SELECT COUNT(*) FROM rural.{name}")[0][0]
    partitions = {os.path.basename(os.path.dirname(f)) for f in lake_files(env.lake, "intraday_steps")}
    assert sorted(partitions) == [f"date={d}" for d in sorted({x.date.isoformat() for x in truth.days})]
    _identity_holds(env)
    # Every row carries its provenance.
    assert env.sql(
        "SELECT COUNT(*) FROM rural.intraday_heart WHERE source_file IS NULL OR run_id <> ?", [s.run_id]
    ) == [(0,)]


def test_second_run_is_idempotent_and_skips_everything(env) -> None:
    generate(env.source, participants=2, days=2, seed=3)
    first = env.run()
    before = _snapshot(env)
    second = env.run()
    assert second.status == "nothing-new"
    assert second.totals["files_unchanged"] == first.totals["files_found"] == 24
    assert _snapshot(env) == before
    runs = env.sql("SELECT status FROM rural.pipeline_runs WHERE activity = 'ALL' ORDER BY started_at")
    assert runs == [("succeeded",), ("nothing-new",)]


def test_reprocessing_the_same_files_leaves_tables_identical(make_env) -> None:
    """Forcing a re-run of identical content (fresh ledger rows) replaces rows wholesale: same data."""
    a = make_env("a")
    generate(a.source, participants=2, days=2, seed=5)
    a.run()
    before = {n: a.rows(n, exclude=("run_id",)) for n in INTRADAY}
    a.execute("UPDATE rural.pipeline_files SET fingerprint = 'stale'")
    s = a.run()
    assert s.totals["files_changed"] == 24 and s.totals["files_loaded"] == 24
    after = {n: a.rows(n, exclude=("run_id",)) for n in INTRADAY}
    assert after == before


def test_incremental_new_day_only_processes_its_files(env, tmp_path) -> None:
    generate(env.source, participants=2, days=3, seed=11)
    env.run()
    extra = tmp_path / "extra"
    truth = generate(extra, participants=2, days=4, seed=11)  # same participants, one more day
    last = max(d.date for d in truth.days)
    for p in {d.participant_id for d in truth.days}:
        shutil.copytree(extra / p / last.isoformat(), env.source / p / last.isoformat())
    s = env.run()
    assert s.totals["files_new"] == 12
    assert s.totals["files_unchanged"] == 36
    processed = env.sql("SELECT COUNT(*), MIN(date), MAX(date) FROM rural.pipeline_files WHERE run_id = ?", [s.run_id])
    assert processed == [(12, last, last)]
    assert env.sql("SELECT COUNT(DISTINCT date) FROM rural.daily_steps") == [(4,)]


def _copy_export(fixtures_dir, name: str, dest, mtime: float) -> None:
    target = dest / name
    shutil.copy(fixtures_dir / "layouts" / "mydatahelps" / name, target)
    os.utime(target, (mtime, mtime))


@pytest.mark.parametrize("order", ["older-first", "newer-first"])
def test_overlapping_exports_newer_wins_in_either_order(make_env, fixtures_dir, expected, order) -> None:
    older = "RK.5B1C2F9A.RURAL Study_20240304-20240306.zip"
    newer = "RK.5B1C2F9A.RURAL Study_20240306-20240308.zip"
    e = make_env(order)
    sequence = [older, newer] if order == "older-first" else [newer, older]
    for i, name in enumerate(sequence):
        _copy_export(fixtures_dir, name, e.source, 1_700_000_000 + i)
        e.run()
    member = "fitbit_intraday_activities_heart/MDH-4950-2492/activities_heart_date_2024-03-06_1d_1sec.json"
    complete = expected[f"layouts/mydatahelps/{newer}!{member}"]
    rows = e.sql(
        "SELECT COUNT(*), COUNT(DISTINCT ts), SUM(value), MIN(source_file) FROM rural.intraday_heart "
        "WHERE participant_id = 'MDH-4950-2492' AND date = DATE '2024-03-06'"
    )[0]
    assert rows[0] == rows[1] == complete["intraday_rows"]
    assert rows[2] == complete["intraday_value_sum"]
    assert newer in rows[3]
    # Every activity of that participant-day comes from the newer export, with no duplicates.
    for a in ("calories", "steps", "elevation", "distance", "floors"):
        member = f"fitbit_intraday_activities_{a}/MDH-4950-2492/activities_{a}_date_2024-03-06_1d_1min.json"
        key = f"layouts/mydatahelps/{newer}!{member}"
        n = e.sql(
            f"SELECT COUNT(*), COUNT(DISTINCT ts) FROM rural.intraday_{a} "
            "WHERE participant_id = 'MDH-4950-2492' AND date = DATE '2024-03-06'"
        )[0]
        assert n == (expected[key]["intraday_rows"], expected[key]["intraday_rows"])
    # The whole warehouse equals the expected facts of the winning documents.
    winners = {k: v for k, v in expected.items() if "mydatahelps" in k and not (older in k and "2024-03-06" in k)}
    for a in ("heart", "calories", "steps", "elevation", "distance", "floors"):
        want = sum(v["intraday_rows"] for v in winners.values() if v["activity"] == a)
        assert e.sql(f"SELECT COUNT(*) FROM rural.intraday_{a}") == [(want,)]
    assert e.sql("SELECT COUNT(*) FROM rural.pipeline_deliveries") == [(2 * 5 * 6,)]
    statuses = dict(e.sql("SELECT status, COUNT(*) FROM rural.pipeline_files GROUP BY 1"))
    assert statuses == ({"loaded": 60, "replaced": 12} if order == "older-first" else {"loaded": 60, "superseded": 12})
    _identity_holds(e)
    lake_rows = duckdb.sql(
        f"SELECT COUNT(*) FROM {read_lake(e.lake, 'intraday_heart')} "
        "WHERE participant_id = 'MDH-4950-2492' AND date = DATE '2024-03-06'"
    ).fetchall()[0][0]
    assert lake_rows == complete["intraday_rows"]


def test_corrupt_and_wrong_date_files_are_rejected_while_the_rest_loads(env) -> None:
    truth = generate(env.source, participants=2, days=2, seed=9)
    p = truth.days[0].participant_id
    d0 = min(d.date for d in truth.days)
    corrupt = env.source / p / d0.isoformat() / "steps.json"
    corrupt.write_bytes(corrupt.read_bytes()[:500])  # truncated mid-document
    wrong = env.source / p / d0.isoformat() / "floors.json"
    other_day = (d0 + dt.timedelta(days=1)).isoformat()
    wrong.write_bytes(wrong.read_bytes().replace(d0.isoformat().encode(), other_day.encode(), 1))
    (env.source / "notes.txt").write_text("not an export")
    s = env.run()
    assert s.status == "succeeded"
    assert s.totals["files_rejected"] == 3
    assert s.totals["files_loaded"] == 24 - 2
    rejected = dict(
        env.sql("SELECT rule_id, source_file FROM rural.pipeline_files WHERE status = 'rejected' ORDER BY 1")
    )
    assert rejected == {
        "invalid_json": str(corrupt),
        "date_mismatch": str(wrong),
        "unknown_layout": str(env.source / "notes.txt"),
    }
    reasons = env.sql("SELECT reason FROM rural.pipeline_files WHERE status = 'rejected' ORDER BY rule_id")
    assert "path says" in reasons[0][0] and "quarantine" in reasons[0][0]
    # The raw bytes of rejected files are kept in the lake's quarantine area.
    quarantined = [q for q in (env.lake / "quarantine").rglob("*") if q.is_file()]
    assert len(quarantined) == 3
    assert corrupt.read_bytes() in [q.read_bytes() for q in quarantined]
    # Everything else loaded: the other steps days are all there.
    loaded = sum(
        d.intraday_rows for d in truth.days if d.activity == "steps" and not (d.participant_id == p and d.date == d0)
    )
    assert env.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(loaded,)]
    assert env.sql("SELECT COUNT(*) FROM rural.rejected_records WHERE record_type = 'file'") == [(3,)]
    _identity_holds(env)


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_the_ledger_is_read_for_the_listed_files_only(env) -> None:
    """A run compares its listing with the ledger: what comes back is the listed files' fingerprints, the
    others (a year of earlier weeks) are filtered out as the ledger streams by, on every engine."""
    from fitbit_pipeline.warehouse import open_warehouse

    generate(env.source, participant_ids=["LEDGER-1", "LEDGER-2"], days=2, start=dt.date(2024, 3, 1))
    env.run()
    ledger = dict(env.sql("SELECT source_file, fingerprint FROM rural.pipeline_files"))
    assert len(ledger) == 2 * 2 * 6
    some = sorted(ledger)[::5]
    with open_warehouse(env.target, "rural") as wh:
        assert wh.known_files(set(ledger)) == ledger
        assert wh.known_files({*some, "s3://elsewhere/never-listed.json"}) == {f: ledger[f] for f in some}
        assert wh.known_files(set()) == {}
