"""Google Health end to end: ``collect`` from a real HTTP mock of the API, then ``run``: the warehouse holds the
mock's seeded truth, worked out here from the points the mock serves (not by the reader); a second ``collect``
fetches from the high-water day on and the next run loads only what is new."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections import defaultdict
from typing import Any

import duckdb
import pytest

from fitbit_pipeline import pipeline
from fitbit_pipeline.google_health import collect as gh
from fitbit_pipeline.google_health.datatypes import FOLDER_ACTIVITY, ROLLUPS

from .google_health_mock import MockHealthApi, User
from .hardening_support import OPEN_GATE
from .test_google_health_collect import FIRST, LAST, _participants_csv, _settings, _token_file

PEOPLE = {"P-A": "1001", "P-B": "2001"}
RUN_DATE = dt.date(2026, 12, 1)
INTERVALS = {"steps": ("steps", "count", 1), "distance": ("distance", "millimeters", 1e-6)}
INTERVALS |= {"floors": ("floors", "count", 1), "elevation": ("altitude", "gainMillimeters", 1e-3)}


def _per_instant(points: list[dict], field: str, key: str) -> dict[str, float]:
    """One value per start instant: the tracker's where a phone reports the same minute."""
    out: dict[str, tuple[int, float]] = {}
    for p in points:
        rank = int(p["dataSource"].get("device", {}).get("formFactor") == "PHONE")
        start = p[field]["interval"]["startTime"]
        if start not in out or rank < out[start][0]:
            out[start] = (rank, float(p[field].get(key, 0)))
    return {k: v for k, (_, v) in out.items()}


def _truth(api: MockHealthApi, days: list[dt.date]) -> dict[str, dict[tuple[str, str], tuple[int, float]]]:
    """Per table and participant-day: (rows, sum of value), from the served points."""
    facts: dict[str, dict[tuple[str, str], tuple[int, float]]] = defaultdict(dict)
    for pid, user in PEOPLE.items():
        for day in days:
            key = (pid, day.isoformat())
            heart = api.truth(user, "heart-rate", day)
            if heart:
                facts["intraday_heart"][key] = (len(heart), sum(float(p["heartRate"]["beatsPerMinute"]) for p in heart))
            for activity, (type_id, value_key, scale) in INTERVALS.items():
                field = {"altitude": "altitude"}.get(type_id, type_id)
                values = _per_instant(api.truth(user, type_id, day), field, value_key)
                if values:
                    facts[f"intraday_{activity}"][key] = (len(values), sum(values.values()) * scale)
            active = _per_instant(api.truth(user, "active-energy-burned", day), "activeEnergyBurned", "kcal")
            basal = _per_instant(api.truth(user, "basal-energy-burned", day), "basalEnergyBurned", "kcal")
            calories = {t: v + active[t] for t, v in basal.items() if t in active}
            calories |= {t: v for t, v in basal.items() if t not in active}  # no activity data: basal only
            if calories:
                facts["intraday_calories"][key] = (len(calories), sum(calories.values()))
            for rest in api.truth(user, "daily-resting-heart-rate", day):
                facts["daily_heart"][key] = (1, float(rest["dailyRestingHeartRate"]["beatsPerMinute"]))
    return facts


def _rollups(api: MockHealthApi, days: list[dt.date]) -> dict[str, dict[tuple[str, str], float]]:
    from fitbit_pipeline.google_health.sample import rollup_point

    activity = {"steps": "steps", "distance": "distance", "floors": "floors", "altitude": "elevation"}
    out: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for pid, user in PEOPLE.items():
        for day in days:
            for r in ROLLUPS:
                point = rollup_point(api.seed, user, r, day, hr_step=api.hr_step)
                if point is not None:
                    table = f"daily_{activity.get(r.data_type, 'calories')}"
                    out[table][(pid, day.isoformat())] = float(point[r.field][r.value_key]) * r.scale
    return out


def _warehouse(db: pathlib.Path) -> tuple[dict[str, dict], dict[str, dict]]:
    with duckdb.connect(str(db), read_only=True) as con:
        intraday = {
            t: {
                (p, d): (n, s)
                for p, d, n, s in con.execute(
                    f"SELECT participant_id, strftime(date, '%Y-%m-%d'), COUNT(*), SUM(value) FROM rural.{t} "
                    "GROUP BY 1, 2"
                ).fetchall()
            }
            for t in ("intraday_heart", *(f"intraday_{a}" for a in (*INTERVALS, "calories")))
        }
        intraday["daily_heart"] = {
            (p, d): (1, float(v))
            for p, d, v in con.execute(
                "SELECT participant_id, strftime(date, '%Y-%m-%d'), resting_heart_rate FROM rural.daily_heart"
            ).fetchall()
        }
        daily = {
            t: dict(
                ((p, d), float(v))
                for p, d, v in con.execute(
                    f"SELECT participant_id, strftime(date, '%Y-%m-%d'), value FROM rural.{t}"
                ).fetchall()
            )
            for t in ("daily_steps", "daily_distance", "daily_floors", "daily_elevation", "daily_calories")
        }
    return intraday, daily


def _same(got: dict[str, dict], want: dict[str, dict]) -> None:
    for table, rows in want.items():
        assert set(got[table]) == set(rows), table
        for key, value in rows.items():
            assert got[table][key] == pytest.approx(value, rel=1e-9, abs=1e-6), (table, key)


def test_collect_then_run_holds_the_truth_and_the_next_collect_loads_only_what_is_new(tmp_path) -> None:
    users = {user: User(f"1//refresh-{user}-q8Zt") for user in PEOPLE.values()}
    rows = [(pid, user, _token_file(tmp_path, pid, users[user].refresh_token)) for pid, user in PEOPLE.items()]
    csv = _participants_csv(tmp_path, rows)
    source, lake, db = tmp_path / "source", tmp_path / "lake", tmp_path / "warehouse.duckdb"

    def run() -> Any:
        summary = pipeline.run(str(source), str(lake), str(db), workers=1, run_date=RUN_DATE, gate=OPEN_GATE)
        assert summary.status == "succeeded", summary.message
        return summary

    with MockHealthApi(users, hr_step=60) as api:
        settings = _settings(api)
        first = gh.run(settings, participants=str(csv), out=str(source), since=str(FIRST), until=str(LAST))
        assert [r.status for r in first] == ["ok", "ok"]
        run()
        days = [FIRST + dt.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
        intraday, daily = _warehouse(db)
        _same(intraday, _truth(api, days))
        _same(daily, _rollups(api, days))

        seen = len(api.requests)
        new_day = LAST + dt.timedelta(days=1)
        second = gh.run(settings, participants=str(csv), out=str(source), until=str(new_day))
        assert [r.status for r in second] == ["ok", "ok"]
        assert min(r.first for r in api.requests[seen:]) == LAST  # from the high-water day, not from the start
        written = {pid: r.days_written for pid, r in zip(PEOPLE, second, strict=True)}
        summary = run()
        new_files = sorted(p for p in (source / "google-health").rglob(f"{new_day.isoformat()}.json"))
        assert written == {pid: sum(1 for p in new_files if f"/{pid}/" in p.as_posix()) for pid in PEOPLE}
        assert summary.totals["files_changed"] == 0  # the refetched high-water day came back the same
        deliveries = {(p.parts[-3], FOLDER_ACTIVITY[p.parts[-2]]) for p in new_files}  # participant, activity
        assert summary.totals["files_new"] == len(deliveries) > 0
        intraday, daily = _warehouse(db)
        _same(intraday, _truth(api, [*days, new_day]))
        _same(daily, _rollups(api, [*days, new_day]))
    with duckdb.connect(str(db), read_only=True) as con:
        bad = con.execute(
            "SELECT COUNT(*) FROM rural.pipeline_files WHERE rows_read <> rows_loaded + rows_rejected + rows_duplicate "
            "+ rows_superseded"
        ).fetchall()
        statuses = dict(con.execute("SELECT status, COUNT(*) FROM rural.pipeline_files GROUP BY 1").fetchall())
    assert bad == [(0,)] and set(statuses) == {"loaded"}
