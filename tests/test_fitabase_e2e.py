"""Fitabase end to end: two exports sharing a boundary day, one as a folder and one as a zip,
run into DuckDB; the expected rows are worked out here from the CSV text with the csv module, not by the reader."""

from __future__ import annotations

import csv
import datetime as dt
import io
import pathlib
import zipfile

import duckdb
import pytest

from fitbit_pipeline import pipeline

from .hardening_support import OPEN_GATE

OLD = "Fitabase Data 3.12.16-4.12.16"
NEW = "Fitabase Data 4.12.16-5.12.16"
RUN_DATE = dt.date(2026, 12, 1)


def _steps(rows: list[tuple[str, str, int]]) -> str:
    return "Id,ActivityMinute,Steps\r\n" + "".join(f"{i},{t},{v}\r\n" for i, t, v in rows)


OLD_FILES = {
    "minuteStepsNarrow_merged.csv": _steps(
        [("1503960366", "4/11/2016 11:59:00 PM", 5), ("1503960366", "4/12/2016 12:00:00 AM", 3)]
    ),
    "dailyActivity_merged.csv": "Id,ActivityDate,TotalSteps,TotalDistance,Calories\r\n"
    "1503960366,4/11/2016,5,0.01,1000\r\n1503960366,4/12/2016,3,0.01,50\r\n",
    "sleepDay_merged.csv": "Id,SleepDay,TotalSleepRecords,TotalMinutesAsleep,TotalTimeInBed\r\n"
    "1503960366,4/12/2016 12:00:00 AM,1,327,346\r\n",
}
NEW_FILES = {
    "minuteStepsNarrow_merged.csv": _steps(
        [
            ("1503960366", "4/12/2016 12:00:00 AM", 3),
            ("1503960366", "4/12/2016 12:01:00 AM", 4),
            ("1503960366", "4/12/2016 12:00:00 PM", 10),
            ("1503960366", "4/12/2016 12:01:00 PM", 999),  # above the plausible range: rejected
        ]
    ),
    "dailyActivity_merged.csv": "Id,ActivityDate,TotalSteps,TotalDistance,Calories\r\n"
    "1503960366,4/12/2016,17,0.02,1985\r\n",
    "heartrate_seconds_merged.csv": "Id,Time,Value\r\n2022484408,4/12/2016 7:21:00 AM,97\r\n"
    "2022484408,4/12/2016 7:21:05 AM,102\r\n2022484408,4/12/2016 7:21:05 AM,103\r\n2022484408\r\n",
}


def _minute(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%m/%d/%Y %I:%M:%S %p")


def _expected_steps() -> dict[tuple[str, dt.date], list[tuple[dt.datetime, float]]]:
    """Per participant-day, the rows of the export that holds the day and ends last (newest wins), in range."""
    out: dict[tuple[str, dt.date], list[tuple[dt.datetime, float]]] = {}
    for files in (OLD_FILES, NEW_FILES):  # oldest first: a later export replaces a day as a whole
        days: dict[tuple[str, dt.date], list[tuple[dt.datetime, float]]] = {}
        for row in csv.DictReader(io.StringIO(files["minuteStepsNarrow_merged.csv"])):
            ts = _minute(row["ActivityMinute"])
            rows = days.setdefault((row["Id"], ts.date()), [])
            if float(row["Steps"]) <= 300:
                rows.append((ts, float(row["Steps"])))
        out |= days
    return out


def _source(tmp_path: pathlib.Path) -> pathlib.Path:
    source = tmp_path / "source"
    (source / OLD).mkdir(parents=True)
    for name, text in OLD_FILES.items():
        (source / OLD / name).write_text(text)
    with zipfile.ZipFile(source / f"{NEW}.zip", "w") as zf:
        for name, text in NEW_FILES.items():
            zf.writestr(f"{NEW}/{name}", text)
    return source


def test_two_overlapping_exports_load_newest_wins_and_a_second_run_finds_nothing_new(tmp_path):
    source, lake, db = _source(tmp_path), tmp_path / "lake", tmp_path / "wh.duckdb"
    first = pipeline.run(str(source), str(lake), str(db), workers=1, run_date=RUN_DATE, gate=OPEN_GATE)
    assert first.status == "succeeded"
    con = duckdb.connect(str(db), read_only=True)
    got: dict[tuple[str, dt.date], list[tuple[dt.datetime, float]]] = {}
    for pid, day, ts, value in con.sql("SELECT participant_id, date, ts, value FROM rural.intraday_steps").fetchall():
        got.setdefault((pid, day), []).append((ts, value))
    assert {k: sorted(v) for k, v in got.items()} == _expected_steps()
    daily = dict(con.sql("SELECT date, value FROM rural.daily_steps").fetchall())
    assert daily == {dt.date(2016, 4, 11): 5, dt.date(2016, 4, 12): 17}
    ledger = con.sql(
        "SELECT source_file, status, rule_id, rows_read, rows_loaded, rows_rejected, rows_duplicate, rows_superseded "
        "FROM rural.pipeline_files"
    ).fetchall()
    by_status = {}
    for sf, status, rule_id, *_ in ledger:
        by_status.setdefault(status, []).append((sf, rule_id))
    # sleep data, and the activities whose only file is dailyActivity without their column (Floors,
    # RestingHeartRate: newer exports only) are listed as skipped, never silently left out
    assert {r for _, r in by_status["skipped"]} == {"fitabase_not_loaded"}
    skipped = sorted(sf.rsplit("/", 1)[-1].split("{")[0] for sf, _ in by_status["skipped"])
    assert skipped == ["floors", "floors", "heart", "sleepDay_merged.csv"]
    superseded = [sf for sf, _ in by_status["superseded"]]
    # the old export's boundary day lost to the new export, for each activity it holds
    assert sorted(s.split("/")[-2].split("{")[0] for s in superseded) == ["calories", "distance", "steps"]
    assert all(s.endswith("#1503960366/2016-04-12") and OLD in s for s in superseded)
    for _, _, _, read, loaded, rejected, duplicate, superseded_rows in ledger:
        assert read == loaded + rejected + duplicate + superseded_rows
    rules = dict(con.sql("SELECT rule_id, COUNT(*) FROM rural.rejected_records GROUP BY 1").fetchall())
    assert rules == {"value_out_of_range": 1, "duplicate_timestamp": 1, "csv_row_malformed": 1}
    # the line that names no participant-day: one rejected ledger row of the export's heart delivery
    (unattributed,) = by_status["rejected"]
    assert unattributed[1] == "rows_unattributed" and unattributed[0].endswith(
        "heart{dailyActivity_merged.csv,heartrate_seconds_merged.csv}"
    )
    heart = con.sql("SELECT ts, value FROM rural.intraday_heart ORDER BY ts").fetchall()
    assert heart == [(dt.datetime(2016, 4, 12, 7, 21), 97.0), (dt.datetime(2016, 4, 12, 7, 21, 5), 102.0)]
    con.close()

    second = pipeline.run(str(source), str(lake), str(db), workers=1, run_date=RUN_DATE, gate=OPEN_GATE)
    assert second.status == "nothing-new"


@pytest.mark.parametrize("parts", [1, 3])
def test_a_generated_export_loads_exactly_what_was_written(tmp_path, monkeypatch, parts):
    """``sample-data --layout fitabase``: every participant-day-activity's rows and value sum, as written; the
    same when each activity is read as three parts (every third participant, as a large export is)."""
    from fitbit_pipeline.fitabase import files
    from fitbit_pipeline.sample_data import generate_fitabase

    if parts > 1:
        monkeypatch.setattr(files, "PART_BYTES", 1)
        monkeypatch.setattr(files, "MAX_PARTS", parts)
    source, lake, db = tmp_path / "source", tmp_path / "lake", tmp_path / "wh.duckdb"
    folder, truth = generate_fitabase(source, participants=4, days=2, start=dt.date(2016, 4, 12))
    assert folder.name == "Fitabase Data 4.12.16-4.13.16"
    summary = pipeline.run(str(source), str(lake), str(db), workers=2, run_date=RUN_DATE, gate=OPEN_GATE)
    assert summary.status == "succeeded"
    again = pipeline.run(str(source), str(lake), str(db), workers=2, run_date=RUN_DATE, gate=OPEN_GATE)
    assert again.status == "nothing-new"
    con = duckdb.connect(str(db), read_only=True)
    ledger = con.sql("SELECT source_file, status FROM rural.pipeline_files WHERE source_file LIKE '%#%'").fetchall()
    deliveries = {sf.split("{")[0].rsplit("/", 1)[-1] + "#" + sf.rsplit("#", 1)[-1]: sf for sf, _ in ledger}
    assert len(deliveries) == len(ledger)  # each participant-day-activity in one part only
    named = {sf.split("}", 1)[1].split("#")[0] for sf, _ in ledger}
    assert named == ({""} if parts == 1 else {f"~{k}-of-{parts}" for k in range(1, parts + 1)})
    for activity in ("heart", "steps", "calories"):
        got = {
            (pid, day): (n, total)
            for pid, day, n, total in con.sql(
                f"SELECT participant_id, date, COUNT(*), SUM(value) FROM rural.intraday_{activity} GROUP BY 1, 2"
            ).fetchall()
        }
        want = {
            (t.participant_id, t.date): (t.intraday_rows, t.intraday_value_sum) for t in truth if t.activity == activity
        }
        assert set(got) == set(want)
        for key, (n, total) in want.items():
            assert got[key][0] == n and abs(got[key][1] - total) < 1e-6
    for activity in ("steps", "calories", "distance"):
        got = dict(
            ((pid, day), value)
            for pid, day, value in con.sql(f"SELECT participant_id, date, value FROM rural.daily_{activity}").fetchall()
        )
        want = {(t.participant_id, t.date): float(t.daily_value) for t in truth if t.activity == activity}
        assert got == want
    levels = con.sql("SELECT COUNT(*) FROM rural.intraday_calories WHERE level IS NULL OR mets IS NULL").fetchall()[0]
    assert levels == (0,)
    assert con.sql("SELECT COUNT(*) FROM rural.rejected_records").fetchall() == [(0,)]
