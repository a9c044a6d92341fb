"""Fitbit account exports end to end: one participant's Global Export Data JSON (a folder, New York: the spring
and autumn DST days), another's Takeout CSVs (a zip, London: the autumn DST day), run into DuckDB.

The fixtures (tests/fixtures/account_export) follow the published layouts (docs/formats/fitbit-account-export.md).
The expected values below were worked out by hand from the file text and the zones' rules, not by the reader:
New York is UTC-5 (EST) until 2024-03-10 07:00Z, then UTC-4 (EDT) until 2024-11-03 06:00Z; London is UTC+1
(BST) until 2024-10-27 01:00Z, then UTC+0.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import shutil
import zipfile

import duckdb
import pytest

from fitbit_pipeline import pipeline
from fitbit_pipeline.timezones import ZoneMap, ZoneSpan

from .hardening_support import OPEN_GATE

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "account_export"
RUN_DATE = dt.date(2026, 12, 1)
ZONES = ZoneMap({"P1": (ZoneSpan("America/New_York", None, None),), "P2": (ZoneSpan("Europe/London", None, None),)})
T = dt.datetime


def _source(tmp_path: pathlib.Path) -> pathlib.Path:
    """P1 as a folder, P2 as ``P2.zip`` holding ``Takeout/...`` (the participant is the first path segment)."""
    source = tmp_path / "source"
    shutil.copytree(FIXTURES / "P1", source / "P1")
    with zipfile.ZipFile(source / "P2.zip", "w") as zf:
        for path in sorted((FIXTURES / "P2").rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(FIXTURES / "P2").as_posix())
    return source


class _Warehouse:
    """Queries on the run's DuckDB file, each on a connection of its own (a run may follow)."""

    def __init__(self, db: pathlib.Path) -> None:
        self.db = db

    def sql(self, query: str) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.sql(query).fetchall()


def _rows(con: _Warehouse, table: str) -> list[tuple]:
    return con.sql(f"SELECT participant_id, ts, ts_utc, value FROM rural.{table} ORDER BY 1, 2")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("account")
    source, lake, db = _source(tmp_path), tmp_path / "lake", tmp_path / "wh.duckdb"
    summary = pipeline.run(str(source), str(lake), str(db), workers=2, run_date=RUN_DATE, gate=OPEN_GATE, zones=ZONES)
    return summary, _Warehouse(db), (source, lake, db)


def test_heart_rate_in_utc_lands_on_local_days_across_both_dst_changes(loaded):
    summary, con, _ = loaded
    assert summary.status == "succeeded"
    assert _rows(con, "intraday_heart") == [
        # spring forward (New York): 06:59:55Z is 01:59:55 EST, 07:00:10Z is 03:00:10 EDT; 03:59:50Z on the
        # 11th is still the 10th locally; the repeated 07:00:10Z sample is a duplicate, 300 and "fast" rejected
        ("P1", T(2024, 3, 10, 0, 0, 5), T(2024, 3, 10, 5, 0, 5), 61.0),
        ("P1", T(2024, 3, 10, 1, 59, 55), T(2024, 3, 10, 6, 59, 55), 62.0),
        ("P1", T(2024, 3, 10, 3, 0, 10), T(2024, 3, 10, 7, 0, 10), 63.0),
        ("P1", T(2024, 3, 10, 23, 59, 50), T(2024, 3, 11, 3, 59, 50), 58.0),
        # fall back (New York): 05:30Z and 06:30Z are both 01:30 local; the table holds one row a local
        # time, so the second is a duplicate (counted, with its raw text)
        ("P1", T(2024, 11, 3, 0, 0), T(2024, 11, 3, 4, 0), 70.0),
        ("P1", T(2024, 11, 3, 1, 30), T(2024, 11, 3, 5, 30), 71.0),
        ("P1", T(2024, 11, 3, 23, 59, 59), T(2024, 11, 4, 4, 59, 59), 73.0),
        # fall back (London): 00:00:04Z is 01:00:04 BST, 01:00:04Z is 01:00:04 GMT (a duplicate)
        ("P2", T(2024, 10, 27, 0, 30), T(2024, 10, 26, 23, 30), 64.0),
        ("P2", T(2024, 10, 27, 1, 0, 4), T(2024, 10, 27, 0, 0, 4), 65.0),
        ("P2", T(2024, 10, 27, 23, 59, 59), T(2024, 10, 27, 23, 59, 59), 67.0),
    ]


def test_minute_series_are_placed_and_converted_to_the_tables_units(loaded):
    _, con, _ = loaded
    assert _rows(con, "intraday_steps") == [
        ("P1", T(2024, 3, 10, 0, 0), T(2024, 3, 10, 5, 0), 0.0),
        ("P1", T(2024, 3, 10, 0, 1), T(2024, 3, 10, 5, 1), 12.0),
        ("P1", T(2024, 3, 10, 23, 59), T(2024, 3, 11, 3, 59), 7.0),
        ("P1", T(2024, 3, 11, 0, 0), T(2024, 3, 11, 4, 0), 9.0),
        ("P2", T(2024, 10, 1, 9, 0), T(2024, 10, 1, 8, 0), 30.0),
        ("P2", T(2024, 10, 1, 9, 1), T(2024, 10, 1, 8, 1), 25.0),
    ]
    distance = _rows(con, "intraday_distance")  # JSON centimetres, CSV metres -> km
    assert [(p, ts, utc) for p, ts, utc, _ in distance] == [
        ("P1", T(2024, 3, 10, 0, 1), T(2024, 3, 10, 5, 1)),
        ("P2", T(2024, 10, 1, 9, 0), T(2024, 10, 1, 8, 0)),
    ]
    assert [round(v, 9) for *_, v in distance] == [0.00441, 0.01201]
    elevation = _rows(con, "intraday_elevation")  # JSON feet in local time, CSV millimetres in UTC -> m
    assert [(p, ts, utc) for p, ts, utc, _ in elevation] == [
        ("P1", T(2024, 3, 10, 2, 30), None),  # 02:30 does not exist in New York that night: no instant
        ("P1", T(2024, 3, 10, 8, 15), T(2024, 3, 10, 12, 15)),
        ("P2", T(2024, 10, 1, 9, 5), T(2024, 10, 1, 8, 5)),
    ]
    assert [round(v, 9) for *_, v in elevation] == [3.048, 6.096, 3.048]
    assert _rows(con, "intraday_floors") == [("P2", T(2024, 10, 1, 9, 5), T(2024, 10, 1, 8, 5), 1.0)]


def test_resting_heart_rate_rejects_and_skips_are_accounted_for(loaded):
    _, con, _ = loaded
    daily = con.sql("SELECT participant_id, date, resting_heart_rate FROM rural.daily_heart ORDER BY 2")
    assert daily == [("P1", dt.date(2024, 3, 10), 61), ("P1", dt.date(2024, 11, 3), 59)]
    rejects = con.sql(
        "SELECT participant_id, rule_id, message FROM rural.rejected_records ORDER BY participant_id, rule_id, message"
    )
    got = sorted(((p, r, m.rsplit("(", 1)[-1].rstrip(")").rsplit("/", 1)[-1]) for p, r, m in rejects), key=str)
    assert got == sorted(
        [
            ("P1", "duplicate_timestamp", "heart_rate-2024-03-10.json"),
            ("P1", "value_out_of_range", "heart_rate-2024-03-10.json"),
            ("P1", "value_wrong_type", "heart_rate-2024-03-10.json"),
            ("P1", "duplicate_timestamp", "heart_rate-2024-11-03.json"),
            ("P1", "resting_hr_out_of_range", "resting_heart_rate-2024-03-10.json"),  # the placeholder row
            ("P1", "time_off_grid", "steps-2024-03-10.json"),
            ("P2", "duplicate_timestamp", "heart_rate_2024-10-27.csv"),
            ("P2", "time_off_grid", "steps_2024-10-01.csv"),
            (None, "time_invalid", "heart_rate_2024-10-27.csv"),  # no time: no participant-day
        ],
        key=str,
    )
    ledger = con.sql(
        "SELECT source_file, status, rule_id, rows_read, rows_loaded, rows_rejected, rows_duplicate, rows_superseded "
        "FROM rural.pipeline_files"
    )
    for _, _, _, read, loaded_rows, rejected, duplicate, superseded in ledger:
        assert read == loaded_rows + rejected + duplicate + superseded
    skipped = sorted((sf.rsplit("/", 1)[-1], rule_id) for sf, status, rule_id, *_ in ledger if status == "skipped")
    assert skipped == [
        ("calories-2024-03-10.json", "no_data_file"),
        ("calories{fitbit-account-export}", "account_export_not_loaded"),  # nothing else of calories
        ("sleep-2024-03-10.json", "account_export_not_loaded"),
    ]
    (rejected,) = [(sf, rule_id) for sf, status, rule_id, *_ in ledger if status == "rejected"]
    assert rejected[1] == "rows_unattributed" and rejected[0].endswith("P2.zip/heart{fitbit-account-export}")
    slices = {sf.rsplit("#", 1)[-1] for sf, status, *_ in ledger if "#" in sf and "/heart{" in sf}
    assert slices == {"P1/2024-03-10", "P1/2024-03-11", "P1/2024-11-03", "P2/2024-10-27"}


def test_a_second_run_finds_nothing_new(loaded):
    _, _, (source, lake, db) = loaded
    again = pipeline.run(str(source), str(lake), str(db), workers=1, run_date=RUN_DATE, gate=OPEN_GATE, zones=ZONES)
    assert again.status == "nothing-new"


def test_without_a_zone_utc_times_are_rejected_not_guessed(tmp_path):
    source, lake, db = _source(tmp_path), tmp_path / "lake", tmp_path / "wh.duckdb"
    zones = ZoneMap({"P1": (ZoneSpan("America/New_York", None, None),)})  # none for P2
    pipeline.run(str(source), str(lake), str(db), workers=1, run_date=RUN_DATE, gate=OPEN_GATE, zones=zones)
    con = _Warehouse(db)
    rejected = con.sql(
        "SELECT source_file FROM rural.pipeline_files WHERE status = 'rejected' AND rule_id = 'zone_unknown'"
    )
    kinds = sorted(sf.rsplit("/", 1)[-1] for (sf,) in rejected)
    assert kinds == [f"{a}{{fitbit-account-export}}" for a in ("distance", "elevation", "floors", "heart", "steps")]
    assert all("P2.zip" in sf for (sf,) in rejected)
    assert con.sql("SELECT COUNT(*) FROM rural.intraday_heart WHERE participant_id = 'P2'") == [(0,)]
    assert con.sql("SELECT COUNT(*) FROM rural.intraday_heart WHERE participant_id = 'P1'") == [(7,)]


def test_generated_exports_across_both_dst_days_load_exactly_what_was_written(tmp_path):
    """``sample-data --layout account-export``: 23- and 25-hour local days, every participant-day-activity's rows
    and value sum as written (the autumn hour's second pass counted as duplicates, not loaded)."""
    from fitbit_pipeline.sample_data import generate_account_export

    source, lake, db = tmp_path / "source", tmp_path / "lake", tmp_path / "wh.duckdb"
    zone = "America/New_York"
    rows = 0
    for first in (dt.date(2024, 3, 9), dt.date(2024, 11, 2)):
        _, truth = generate_account_export(source / first.isoformat(), participants=2, days=3, start=first, zone=zone)
        rows += sum(t.intraday_rows for t in truth)
        summary = pipeline.run(
            str(source / first.isoformat()),
            str(lake),
            str(db),
            workers=2,
            run_date=RUN_DATE,
            gate=OPEN_GATE,
            zones=ZoneMap(default=zone),
        )
        assert summary.status == "succeeded"
        con = _Warehouse(db)
        for activity in ("heart", "steps", "calories", "distance", "elevation"):
            got = {
                (pid, day): (n, total)
                for pid, day, n, total in con.sql(
                    f"SELECT participant_id, date, COUNT(*), SUM(value) FROM rural.intraday_{activity} "
                    f"WHERE date BETWEEN DATE '{first}' AND DATE '{first + dt.timedelta(days=2)}' GROUP BY 1, 2"
                )
            }
            want = {
                (t.participant_id, t.date): (t.intraday_rows, t.intraday_value_sum)
                for t in truth
                if t.activity == activity and t.intraday_rows
            }
            assert set(got) == set(want), activity
            for key, (n, total) in want.items():
                assert got[key][0] == n and abs(got[key][1] - total) < 1e-6 * max(1.0, abs(total)), (activity, key)
        minutes = dict(
            con.sql(
                "SELECT date, COUNT(*) FROM rural.intraday_steps "
                f"WHERE date BETWEEN DATE '{first}' AND DATE '{first + dt.timedelta(days=2)}' GROUP BY 1"
            )
        )
        # two participants: the spring day has 23 hours, the autumn day 25 (one hour of it twice on the clock)
        assert minutes[first + dt.timedelta(days=1)] == 2 * (1380 if first.month == 3 else 1440)
        resting = dict(
            ((p, d), v)
            for p, d, v in con.sql(
                "SELECT participant_id, date, resting_heart_rate FROM rural.daily_heart "
                f"WHERE date BETWEEN DATE '{first}' AND DATE '{first + dt.timedelta(days=2)}'"
            )
        )
        assert resting == {
            (t.participant_id, t.date): t.resting_heart_rate
            for t in truth
            if t.activity == "heart" and t.resting_heart_rate is not None
        }
    duplicates = con.sql("SELECT COUNT(*) FROM rural.rejected_records WHERE rule_id = 'duplicate_timestamp'")
    other = con.sql("SELECT COUNT(*) FROM rural.rejected_records WHERE rule_id <> 'duplicate_timestamp'")
    assert other == [(0,)] and duplicates[0][0] > 0


def test_a_new_version_of_an_export_without_an_old_day_is_unchanged_on_the_next_run(tmp_path):
    """The days an older version held keep their ledger rows (and old fingerprint); the bundle's fingerprint is
    the newest slice's, so the run after the new version finds nothing new instead of re-reading forever."""
    source, lake, db = tmp_path / "source", tmp_path / "lake", tmp_path / "wh.duckdb"
    folder = source / "P1" / "Global Export Data"
    folder.mkdir(parents=True)
    steps = folder / "steps-2024-03-10.json"
    zones = ZoneMap(default="UTC")

    def run() -> str:
        return pipeline.run(
            str(source), str(lake), str(db), workers=1, run_date=RUN_DATE, gate=OPEN_GATE, zones=zones
        ).status

    steps.write_text(
        '[{"dateTime" : "03/10/24 05:00:00", "value" : "4"}, {"dateTime" : "03/11/24 05:00:00", "value" : "5"}]'
    )
    assert run() == "succeeded"
    steps.write_text(
        '[{"dateTime" : "03/11/24 05:00:00", "value" : "6"}, {"dateTime" : "03/12/24 05:00:00", "value" : "7"}]'
    )
    assert run() == "succeeded"
    assert run() == "nothing-new"
    got = _Warehouse(db).sql("SELECT date, value FROM rural.intraday_steps ORDER BY 1")
    # the 10th as the first version held it; the 11th replaced by the new version; the 12th new
    assert got == [(dt.date(2024, 3, 10), 4.0), (dt.date(2024, 3, 11), 6.0), (dt.date(2024, 3, 12), 7.0)]
