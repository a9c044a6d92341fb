"""The seeded Google Health API v4 DataPoints (google_health/sample.py) and `sample-data --layout google-health`."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from fitbit_pipeline.cli import app
from fitbit_pipeline.google_health.datatypes import BY_ID, DATA_TYPES, ROLLUPS
from fitbit_pipeline.google_health.sample import ZONE, day_points, point_day, rollup_point

DST_END, DST_START, PLAIN = dt.date(2026, 11, 1), dt.date(2026, 3, 8), dt.date(2026, 11, 3)
ZI = ZoneInfo(ZONE)


def _utc(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _civil(c: dict) -> dt.datetime:
    d, t = c["date"], c["time"]
    return dt.datetime(d["year"], d["month"], d["day"], t["hours"], t["minutes"], t["seconds"])


def _offset(text: str) -> dt.timedelta:
    assert text.endswith("s")
    return dt.timedelta(seconds=int(text[:-1]))


def _start(point: dict, field: str) -> str:
    v = point[field]
    return v["sampleTime"]["physicalTime"] if "sampleTime" in v else v["interval"]["startTime"]


def test_deterministic_per_participant_type_and_day() -> None:
    a = day_points(5, "P1", "steps", PLAIN)
    assert a == day_points(5, "P1", "steps", PLAIN)
    assert a != day_points(6, "P1", "steps", PLAIN) and a != day_points(5, "P2", "steps", PLAIN)


@pytest.mark.parametrize(("day", "minutes"), [(DST_START, 23 * 60), (PLAIN, 24 * 60), (DST_END, 25 * 60)])
def test_intervals_follow_the_zone_across_dst(day: dt.date, minutes: int) -> None:
    points = day_points(3, "P1", "basal-energy-burned", day)
    assert len(points) == minutes  # basal energy: every physical minute of the civil day
    for p in points:
        iv = p["basalEnergyBurned"]["interval"]
        start, end = _utc(iv["startTime"]), _utc(iv["endTime"])
        assert end - start == dt.timedelta(minutes=1)
        assert _civil(iv["civilStartTime"]) == (start + _offset(iv["startUtcOffset"])).replace(tzinfo=None)
        assert _civil(iv["civilEndTime"]) == (end + _offset(iv["endUtcOffset"])).replace(tzinfo=None)
        assert _offset(iv["startUtcOffset"]) == start.astimezone(ZI).utcoffset()
        assert point_day(p, BY_ID["basal-energy-burned"]) == day
        assert isinstance(p["basalEnergyBurned"]["kcal"], float)


def test_every_type_shape_day_source_and_order() -> None:
    for d in DATA_TYPES:
        for day in (DST_END, PLAIN):
            points = day_points(11, "P1", d.id, day, hr_step=15)
            assert points, (d.id, day)
            for p in points:
                assert set(p) == {"dataSource", d.field} and p["dataSource"]["device"]["formFactor"]
                assert point_day(p, d) == day
                if d.value_key and d.value_key != "kcal":
                    assert isinstance(p[d.field][d.value_key], str) and p[d.field][d.value_key].lstrip("-").isdigit()
                if d.shape == "sample":
                    st = p[d.field]["sampleTime"]
                    local = (_utc(st["physicalTime"]) + _offset(st["utcOffset"])).replace(tzinfo=None)
                    assert _civil(st["civilTime"]) == local
            if d.shape != "daily":
                starts = [_start(p, d.field) for p in points]
                assert starts == sorted(starts, reverse=True)  # the API's order: newest first


def test_heart_rate_is_second_level_while_worn_and_steps_have_true_zeros_only_when_worn() -> None:
    day = PLAIN
    heart = day_points(11, "P1", "heart-rate", day)
    steps = day_points(11, "P1", "steps", day)
    seconds = sorted({_utc(_start(p, "heartRate")) for p in heart})
    assert len(seconds) == len(heart) and any(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(seconds))
    worn_minutes = {t.replace(second=0) for t in seconds}
    tracker = [p for p in steps if p["dataSource"]["device"]["formFactor"] != "PHONE"]
    phone = [p for p in steps if p["dataSource"]["device"]["formFactor"] == "PHONE"]
    assert {_utc(_start(p, "steps")) for p in tracker} == worn_minutes  # a steps point exactly when worn
    assert any(p["steps"]["count"] == "0" for p in tracker) and any(p["steps"]["count"] != "0" for p in tracker)
    assert len(worn_minutes) < 1440  # some minutes were not worn: no point at all there
    both = {_utc(_start(p, "steps")) for p in phone} & {_utc(_start(p, "steps")) for p in tracker}
    assert phone and both == {_utc(_start(p, "steps")) for p in phone}  # the phone reports minutes the tracker has


def test_daily_resting_heart_rate_and_zones() -> None:
    [rest] = day_points(11, "P1", "daily-resting-heart-rate", PLAIN)
    assert rest["dailyRestingHeartRate"]["beatsPerMinute"].isdigit()
    assert rest["dailyRestingHeartRate"]["date"] == {"year": 2026, "month": 11, "day": 3}
    [zones] = day_points(11, "P1", "daily-heart-rate-zones", PLAIN)
    z = zones["dailyHeartRateZones"]["heartRateZones"]
    assert [x["heartRateZoneType"] for x in z] == ["LIGHT", "MODERATE", "VIGOROUS", "PEAK"]
    bounds = [(int(x["minBeatsPerMinute"]), int(x["maxBeatsPerMinute"])) for x in z]
    assert all(lo < hi for lo, hi in bounds) and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(bounds))


def test_sample_data_cli_writes_the_collector_layout(tmp_path) -> None:
    out = tmp_path / "gh"
    args = ["sample-data", str(out), "--layout", "google-health", "--participants", "2", "--days", "2"]
    result = CliRunner().invoke(app, [*args, "--start", "2026-10-31", "--seed", "9"])
    assert result.exit_code == 0, result.output
    files = sorted(out.rglob("*.json"))
    pids = {f.relative_to(out).parts[1] for f in files}
    assert len(pids) == 2 and all(f.relative_to(out).parts[0] == "google-health" for f in files)
    rollups = {r.folder: r for r in ROLLUPS}
    for f in files:
        _, pid, dtype, name = f.relative_to(out).parts
        day = dt.date.fromisoformat(name.removesuffix(".json"))
        if dtype in rollups:
            expected = {"rollupDataPoints": [rollup_point(9, pid, rollups[dtype], day, hr_step=60)]}
        else:
            expected = {"dataPoints": day_points(9, pid, dtype, day, hr_step=60)}
        assert json.loads(f.read_bytes()) == expected
    assert {f.relative_to(out).parts[2] for f in files} == {d.id for d in DATA_TYPES} | set(rollups)


def test_a_daily_roll_up_is_the_reconciled_sum_of_the_day() -> None:
    """One source a minute (the tracker's, where a phone reports the same minute), summed; total calories are
    active plus basal energy."""
    steps = next(r for r in ROLLUPS if r.data_type == "steps")
    points = day_points(11, "P1", "steps", PLAIN)
    minutes: dict[str, int] = {}
    for p in points:
        if p["dataSource"]["device"]["formFactor"] != "PHONE":
            minutes[p["steps"]["interval"]["startTime"]] = int(p["steps"]["count"])
    phone_only = {
        p["steps"]["interval"]["startTime"]: int(p["steps"]["count"])
        for p in points
        if p["steps"]["interval"]["startTime"] not in minutes
    }
    rolled = rollup_point(11, "P1", steps, PLAIN)
    assert rolled["steps"]["countSum"] == str(sum(minutes.values()) + sum(phone_only.values()))
    assert rolled["civilStartTime"]["date"] == {"year": 2026, "month": 11, "day": 3}
    total = next(r for r in ROLLUPS if r.data_type == "total-calories")
    energy = sum(
        p[f]["kcal"]
        for t, f in (("active-energy-burned", "activeEnergyBurned"), ("basal-energy-burned", "basalEnergyBurned"))
        for p in day_points(11, "P1", t, PLAIN)
    )
    assert rollup_point(11, "P1", total, PLAIN)["totalCalories"]["kcalSum"] == pytest.approx(energy)
