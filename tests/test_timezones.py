"""Local intraday times to UTC, with the DST gap and the repeated hour flagged (America/New_York)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from fitbit_pipeline.timezones import AMBIGUOUS, NONEXISTENT, ZoneMap, to_utc

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
