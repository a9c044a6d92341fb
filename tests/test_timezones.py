"""Local intraday times to UTC, with the DST gap and the repeated hour flagged (America/New_York)."""

from __future__ import annotations

import datetime as dt
import os

import duckdb
import numpy as np
import pytest

from fitbit_pipeline import report as reporting
from fitbit_pipeline import schema
from fitbit_pipeline.sample_data import generate
from fitbit_pipeline.settings import Settings
from fitbit_pipeline.timezones import AMBIGUOUS, NONEXISTENT, ZoneMap, to_utc
from fitbit_pipeline.warehouse import open_warehouse

from .conftest import WAREHOUSES
from .lake_support import read_lake

INTRADAY = [t.name for t in schema.INTRADAY.values()]

NY = "America/New_York"


def _us(day: str, hhmm: str) -> int:
    t = dt.datetime.fromisoformat(f"{day}T{hhmm}")
    return int((t - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000


def _iso(us: int) -> str | None:
    return None if us == -1 else (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)).strftime("%H:%M")


def convert(day: str, times: list[str], zone: str | None = NY) -> list[tuple[str | None, str | None]]:
    local = np.array([_us(day, t) for t in times], dtype=np.int64)
    utc, flags = to_utc(local, dt.date.fromisoformat(day), zone)
    return [(_iso(u), f) for u, f in zip(utc.tolist(), flags.tolist(), strict=True)]


def test_ordinary_days_shift_by_the_zone_offset() -> None:
    assert convert("2024-07-01", ["00:00", "12:00", "23:59"]) == [("04:00", None), ("16:00", None), ("03:59", None)]
    assert convert("2024-01-15", ["12:00"]) == [("17:00", None)]


def test_spring_forward_gap_is_flagged_never_shifted() -> None:
    got = convert("2024-03-10", ["01:59", "02:00", "02:30", "02:59", "03:00", "12:00"])
    assert got == [
        ("06:59", None),
        (None, NONEXISTENT),
        (None, NONEXISTENT),
        (None, NONEXISTENT),
        ("07:00", None),
        ("16:00", None),
    ]


def test_fall_back_hour_is_the_first_occurrence_and_flagged() -> None:
    got = convert("2024-11-03", ["00:30", "01:00", "01:30", "01:59", "02:00", "12:00"])
    assert got == [
        ("04:30", None),
        ("05:00", AMBIGUOUS),
        ("05:30", AMBIGUOUS),
        ("05:59", AMBIGUOUS),
        ("07:00", None),
        ("17:00", None),
    ]


def test_without_a_zone_utc_stays_empty() -> None:
    assert convert("2024-07-01", ["12:00"], zone=None) == [(None, None)]


def test_zone_map_from_csv_with_validity_and_default(tmp_path) -> None:
    path = tmp_path / "zones.csv"
    path.write_text(
        "participant_id,timezone,valid_from,valid_to\n"
        "P1,America/New_York,,2024-03-31\n"
        "P1,America/Los_Angeles,2024-04-01,\n"
        "O'Brien; x,Europe/London,,\n"
    )
    zones = ZoneMap.from_csv(path, default="America/Chicago")
    assert zones.zone_for("P1", dt.date(2024, 3, 31)) == NY
    assert zones.zone_for("P1", dt.date(2024, 4, 1)) == "America/Los_Angeles"
    assert zones.zone_for("O'Brien; x", dt.date(2024, 4, 1)) == "Europe/London"
    assert zones.zone_for("P2", dt.date(2024, 4, 1)) == "America/Chicago"
    assert ZoneMap().zone_for("P2", dt.date(2024, 4, 1)) is None
    path.write_text("participant_id,timezone,valid_from,valid_to\nP1,Mars/Olympus,,\n")
    with pytest.raises(ValueError, match="line 2: unknown IANA time zone 'Mars/Olympus'"):
        ZoneMap.from_csv(path)


# ---- end to end: generated exports around the 2024 DST changes, the real pipeline, a real warehouse ----

DAYS = [("2024-03-09", 3), ("2024-07-01", 1), ("2024-11-02", 3)]  # spring forward 03-10, fall back 11-03
SPAN = "participant_id,timezone,valid_from,valid_to\nBERLIN,Europe/Berlin,2024-11-01,2024-11-30\n"


def _study(source) -> None:
    for start, days in DAYS:
        generate(source, participant_ids=["BERLIN", "NY"], days=days, start=dt.date.fromisoformat(start), seed=5)


def _zones(tmp_path) -> ZoneMap:
    (tmp_path / "zones.csv").write_text(SPAN)
    return Settings(
        fitbit_timezones_csv=str(tmp_path / "zones.csv"), fitbit_default_timezone=NY, _env_file=None
    ).zone_map()


def _at(env, pid: str, local: str) -> tuple:
    """(ts_utc, tz_flag) of the steps row of ``pid`` at local time ``local``."""
    return tuple(
        env.sql(
            "SELECT ts_utc, tz_flag FROM rural.intraday_steps WHERE participant_id = ? AND ts = ?",
            [pid, dt.datetime.fromisoformat(local)],
        )[0]
    )


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_pipeline_fills_utc_and_flags_the_dst_days(env, tmp_path) -> None:
    _study(env.source)
    s = env.run(workers=2, zones=_zones(tmp_path))  # two workers: the zone map travels to the pool
    assert s.status == "succeeded" and s.totals["rows_rejected"] == 0
    # Ordinary days: a constant offset, EST (+5 h) or EDT (+4 h); no flags.
    offsets = env.sql(
        "SELECT date, MIN(ts_utc - ts), MAX(ts_utc - ts), COUNT(*), COUNT(tz_flag) FROM rural.intraday_steps "
        "WHERE participant_id = 'NY' AND date NOT IN (?, ?) GROUP BY date ORDER BY date",
        [dt.date(2024, 3, 10), dt.date(2024, 11, 3)],
    )
    h = dt.timedelta(hours=1)
    assert [(str(d), lo, hi, n, f) for d, lo, hi, n, f in offsets] == [
        ("2024-03-09", 5 * h, 5 * h, 1440, 0),
        ("2024-03-11", 4 * h, 4 * h, 1440, 0),
        ("2024-07-01", 4 * h, 4 * h, 1440, 0),
        ("2024-11-02", 4 * h, 4 * h, 1440, 0),
        ("2024-11-04", 5 * h, 5 * h, 1440, 0),
    ]
    # Spring forward (2024-03-10): the exported minutes 02:00-02:59 do not exist: no UTC time, flagged.
    gap = env.sql(
        "SELECT MIN(ts), MAX(ts), COUNT(*), COUNT(ts_utc) FROM rural.intraday_steps "
        "WHERE participant_id = 'NY' AND tz_flag = 'nonexistent'"
    )
    assert gap == [(_utc("2024-03-10T02:00"), _utc("2024-03-10T02:59"), 60, 0)]
    assert _at(env, "NY", "2024-03-10T01:59") == (_utc("2024-03-10T06:59"), None)
    assert _at(env, "NY", "2024-03-10T03:00") == (_utc("2024-03-10T07:00"), None)
    # Fall back (2024-11-03): 01:00-01:59 occur twice; the first occurrence (EDT) is taken, flagged.
    repeated = env.sql(
        "SELECT MIN(ts), MAX(ts), MIN(ts_utc), MAX(ts_utc), COUNT(*) FROM rural.intraday_steps "
        "WHERE participant_id = 'NY' AND tz_flag = 'ambiguous'"
    )
    assert repeated == [
        (_utc("2024-11-03T01:00"), _utc("2024-11-03T01:59"), _utc("2024-11-03T05:00"), _utc("2024-11-03T05:59"), 60)
    ]
    assert _at(env, "NY", "2024-11-03T00:59") == (_utc("2024-11-03T04:59"), None)
    assert _at(env, "NY", "2024-11-03T02:00") == (_utc("2024-11-03T07:00"), None)
    # BERLIN is in Europe/Berlin during its CSV span (CET, +1 h, no transition on 11-03) and New York outside it.
    assert _at(env, "BERLIN", "2024-11-03T01:30") == (_utc("2024-11-03T00:30"), None)
    assert _at(env, "BERLIN", "2024-11-04T12:00") == (_utc("2024-11-04T11:00"), None)
    assert _at(env, "BERLIN", "2024-03-10T02:30") == (None, "nonexistent")
    assert _at(env, "BERLIN", "2024-07-01T12:00") == (_utc("2024-07-01T16:00"), None)
    # Every intraday table carries the columns; the production lake holds the same values.
    for name in INTRADAY:
        counts = env.sql(f"SELECT COUNT(*), COUNT(ts_utc), COUNT(tz_flag) FROM rural.{name}")
        lake = duckdb.sql(f"SELECT COUNT(*), COUNT(ts_utc), COUNT(tz_flag) FROM {read_lake(env.lake, name)}").fetchall()
        assert lake == counts and counts[0][1] > 0
    with open_warehouse(env.target, "rural") as wh:
        note = reporting.build(wh, dt.date(2024, 3, 9), dt.date(2024, 11, 4)).utc_note
    flagged = dict(env.sql(f"SELECT tz_flag, COUNT(*) FROM ({_all_flags()}) f GROUP BY 1"))
    assert flagged["nonexistent"] >= 2 * 5 * 60 and flagged["ambiguous"] >= 5 * 60  # 5 minute activities
    assert f"{flagged['nonexistent']} nonexistent" in note and f"{flagged['ambiguous']} ambiguous" in note


def _all_flags() -> str:
    return " UNION ALL ".join(f"SELECT tz_flag FROM rural.{n} WHERE tz_flag IS NOT NULL" for n in INTRADAY)


def test_without_a_mapping_utc_stays_empty_and_the_report_says_so(env) -> None:
    _study(env.source)
    assert env.run().status == "succeeded"
    for name in INTRADAY:
        n, with_utc, flagged = env.sql(f"SELECT COUNT(*), COUNT(ts_utc), COUNT(tz_flag) FROM rural.{name}")[0]
        assert n > 0 and with_utc == flagged == 0
    with open_warehouse(env.target, "rural") as wh:
        data = reporting.build(wh, dt.date(2024, 3, 9), dt.date(2024, 11, 4))
    assert data.utc_note == reporting.NO_UTC
    assert "no participant time-zone mapping is configured" in reporting.render_html(data)


@pytest.mark.parametrize("warehouse_kind", ["postgres"])  # DuckDB's data tables are views over the lake
def test_a_warehouse_from_before_the_utc_columns_is_upgraded(env, tmp_path) -> None:
    generate(env.source, participant_ids=["BERLIN", "NY"], days=2, start=dt.date(2024, 11, 2), seed=5)
    assert env.run().status == "succeeded"
    # What an earlier version left: intraday tables without ts_utc / tz_flag.
    for name in INTRADAY:
        env.execute(f"ALTER TABLE rural.{name} DROP COLUMN ts_utc")
        env.execute(f"ALTER TABLE rural.{name} DROP COLUMN tz_flag")
    # NY's steps of 2024-11-03 are delivered again (a newer file): that partition is rebuilt from the old files.
    redelivered = next(env.source.glob("NY/2024-11-03/steps.json"))
    os.utime(redelivered, (redelivered.stat().st_mtime + 60,) * 2)
    s = env.run(zones=_zones(tmp_path))
    assert s.status == "succeeded" and s.totals["files_loaded"] == 1
    assert _at(env, "NY", "2024-11-03T01:30") == (_utc("2024-11-03T05:30"), "ambiguous")
    assert _at(env, "BERLIN", "2024-11-03T01:30") == (None, None)  # loaded before the mapping: unchanged
    lake = duckdb.sql(
        f"SELECT participant_id, COUNT(*), COUNT(ts_utc), COUNT(tz_flag) FROM {read_lake(env.lake, 'intraday_steps')} "
        "WHERE date = DATE '2024-11-03' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert lake == [("BERLIN", 1440, 0, 0), ("NY", 1440, 1440, 60)]
