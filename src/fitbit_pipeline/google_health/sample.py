"""Seeded synthetic Google Health API v4 DataPoints (no real person), and the collector's output layout.

:func:`day_points` returns, for one participant, data type and civil day, the points the API would list
for that day, in the API's order (``dataPoints.list`` orders by start time, descending), each shaped as the
discovery document (revision 20261030) describes a ``DataPoint``: the value object under its field
(``heartRate``, ``steps``, ...) holding ``sampleTime`` or ``interval`` (or the daily ``date``), int64
values as JSON strings, energy in ``kcal`` (double), distance and altitude gain in millimetres, and a
``dataSource`` on every point. Times are consistent with the participant's zone (:data:`ZONE`, which
observes DST: 2026-03-08 has 23 civil hours, 2026-11-01 has 25): ``physicalTime`` in UTC, ``utcOffset``
as a duration (``"-21600s"``), ``civilTime`` as a ``CivilDateTime`` with every ``TimeOfDay`` member
written (zeros included).

The day follows a rhythm: the tracker (a FITNESS_BAND or a WATCH) is worn from morning to evening (and
some nights), never on a few days; heart rate is second-level while worn (``hr_step`` seconds apart;
tests use a coarser step); minute steps, distance, floors, altitude and active energy for every worn
minute (true zeros included) and none when not worn; basal energy for every minute; on some minutes the
participant's phone (``formFactor`` PHONE) reports steps for the same minute too. Resting heart rate and
heart-rate zones (LIGHT/MODERATE/VIGOROUS/PEAK) are one daily point each on days with wear.

Everything derives from ``(seed, participant_id, data type, day)``: the same arguments give the same
points, whatever else is generated. The same generator is the truth behind the collector tests' mock server.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import random
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import orjson

from .datatypes import BY_ID, DATA_TYPES, ROLLUPS, DataType, RollUp

ZONE = "America/Chicago"
LAYOUT = "google-health"
_NOT_WORN_DAY_PROB = 0.05
_PHONE_MINUTE_PROB = 0.15  # share of walking minutes the phone also reports
_FLOOR_MM = 3048


def document_path(participant_id: str, data_type: str, day: dt.date) -> str:
    """The collector's output path of one document, relative to ``--out``."""
    return f"{LAYOUT}/{participant_id}/{data_type}/{day.isoformat()}.json"


def document_bytes(points: list[dict], key: str = "dataPoints") -> bytes:
    """The bytes of one document: ``{"dataPoints": [...]}`` (``rollupDataPoints`` for a daily roll-up), compact,
    keys in the order received."""
    return orjson.dumps({key: points})


# --------------------------------------------------------------------------- time helpers


def _civil(local: dt.datetime) -> dict:
    return {
        "date": {"year": local.year, "month": local.month, "day": local.day},
        "time": {"hours": local.hour, "minutes": local.minute, "seconds": local.second},
    }


def _offset(local: dt.datetime) -> str:
    off = local.utcoffset()
    assert off is not None
    return f"{int(off.total_seconds())}s"


def _rfc3339(utc: dt.datetime) -> str:
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _day_bounds_utc(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """UTC instants of local midnight starting ``day`` and the next day (23, 24 or 25 hours apart)."""
    start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    return start, end


def _sample_time(utc: dt.datetime, zone: ZoneInfo) -> dict:
    local = utc.astimezone(zone)
    return {"physicalTime": _rfc3339(utc), "utcOffset": _offset(local), "civilTime": _civil(local)}


def _interval(utc: dt.datetime, seconds: int, zone: ZoneInfo) -> dict:
    end = utc + dt.timedelta(seconds=seconds)
    ls, le = utc.astimezone(zone), end.astimezone(zone)
    return {
        "startTime": _rfc3339(utc),
        "startUtcOffset": _offset(ls),
        "endTime": _rfc3339(end),
        "endUtcOffset": _offset(le),
        "civilStartTime": _civil(ls),
        "civilEndTime": _civil(le),
    }


def _date(day: dt.date) -> dict:
    return {"year": day.year, "month": day.month, "day": day.day}


# --------------------------------------------------------------------------- the simulated day


@dataclass(frozen=True)
class _Person:
    tracker: str  # FITNESS_BAND or WATCH
    resting: int  # resting heart rate
    age: int
    basal_kcal_min: float
    stride_mm: int


@dataclass(frozen=True)
class _Minute:
    utc: dt.datetime
    worn: bool
    steps: int
    level: int  # 0 asleep/rest, 1 light, 2 walking, 3 running


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random("|".join(map(str, (seed, *parts))))


def _person(seed: int, pid: str) -> _Person:
    r = _rng(seed, pid, "person")
    return _Person(
        tracker=r.choice(("FITNESS_BAND", "WATCH")),
        resting=r.randint(52, 74),
        age=r.randint(22, 75),
        basal_kcal_min=round(r.uniform(0.9, 1.3), 4),
        stride_mm=r.randint(620, 820),
    )


def _minutes(seed: int, pid: str, day: dt.date, zone: ZoneInfo) -> list[_Minute]:
    """The physical minutes of the civil ``day`` with wear, activity level and steps."""
    r = _rng(seed, pid, day.isoformat(), "day")
    start, end = _day_bounds_utc(day, zone)
    not_worn_day = r.random() < _NOT_WORN_DAY_PROB
    wake, sleep = r.randint(6 * 60, 8 * 60), r.randint(21 * 60 + 30, 23 * 60 + 30)
    worn_at_night = r.random() < 0.4
    off_from = r.randint(wake + 60, sleep - 180)  # an hour or two off the wrist (shower, charging)
    off_to = off_from + r.randint(20, 120)
    bouts = []
    for _ in range(r.randint(2, 6)):
        b = r.randint(wake, sleep - 30)
        bouts.append((b, b + r.randint(5, 45), 3 if r.random() < 0.15 else 2))
    out: list[_Minute] = []
    t = start
    while t < end:
        local = t.astimezone(zone)
        m = local.hour * 60 + local.minute
        awake = wake <= m < sleep
        worn = not not_worn_day and (awake or worn_at_night) and not off_from <= m < off_to
        level = 1 if awake else 0
        for b0, b1, lv in bouts:
            if b0 <= m < b1:
                level = lv
        if not worn:
            steps = 0
        elif level == 3:
            steps = r.randint(150, 185)
        elif level == 2:
            steps = r.randint(85, 125)
        elif level == 1:
            steps = r.randint(1, 25) if r.random() < 0.25 else 0
        else:
            steps = 0
        out.append(_Minute(t, worn, steps, level))
        t += dt.timedelta(minutes=1)
    return out


def _source(form_factor: str, method: str = "PASSIVELY_MEASURED") -> dict:
    if form_factor == "PHONE":
        device = {"formFactor": "PHONE", "manufacturer": "Google", "displayName": "Pixel 9"}
        return {"recordingMethod": method, "device": device, "platform": "HEALTH_CONNECT"}
    name = "Charge 6" if form_factor == "FITNESS_BAND" else "Pixel Watch 3"
    device = {"formFactor": form_factor, "manufacturer": "Google", "displayName": name}
    return {"recordingMethod": method, "device": device, "platform": "FITBIT"}


def _zones(p: _Person) -> list[dict]:
    top = 220 - p.age
    edges = [round(top * f) for f in (0.5, 0.6, 0.7, 0.85)] + [top]
    names = ("LIGHT", "MODERATE", "VIGOROUS", "PEAK")
    return [
        {
            "heartRateZoneType": n,
            "minBeatsPerMinute": str(edges[i] if i == 0 else edges[i] + 1),
            "maxBeatsPerMinute": str(edges[i + 1]),
        }
        for i, n in enumerate(names)
    ]


def _heart_points(p: _Person, minutes: list[_Minute], r: random.Random, zone: ZoneInfo, step: int) -> list[dict]:
    points: list[dict] = []
    src = _source(p.tracker)
    bpm = float(p.resting)
    for mi in minutes:
        if not mi.worn:
            continue
        target = p.resting + (-4, 12, 45, 85)[mi.level]
        for s in range(0, 60, step):
            bpm += (target - bpm) * 0.08 + r.gauss(0, 1.2)
            value = max(35, min(210, round(bpm)))
            motion = "ACTIVE" if mi.level >= 2 else "SEDENTARY"
            points.append(
                {
                    "dataSource": src,
                    "heartRate": {
                        "sampleTime": _sample_time(mi.utc + dt.timedelta(seconds=s), zone),
                        "beatsPerMinute": str(value),
                        "metadata": {"motionContext": motion, "sensorLocation": "WRIST"},
                    },
                }
            )
    return points


def _interval_points(d: DataType, p: _Person, minutes: list[_Minute], r: random.Random, zone: ZoneInfo) -> list[dict]:
    points: list[dict] = []
    tracker, phone = _source(p.tracker), _source("PHONE")
    for mi in minutes:
        if d.id == "basal-energy-burned":
            kcal = round(p.basal_kcal_min * (0.92 if mi.level == 0 else 1.0), 4)
            points.append({"dataSource": tracker, d.field: {"interval": _interval(mi.utc, 60, zone), "kcal": kcal}})
            continue
        if not mi.worn:
            continue
        if d.id == "steps":
            value: object = str(mi.steps)
        elif d.id == "distance":
            value = str(mi.steps * p.stride_mm * (13 if mi.level == 3 else 10) // 10)
        elif d.id == "floors":
            value = str(1 if mi.level >= 2 and r.random() < 0.05 else 0)
        elif d.id == "altitude":
            value = str(_FLOOR_MM * (1 if mi.level >= 2 and r.random() < 0.05 else 0))
        else:  # active-energy-burned
            value = round(
                (0.0, 0.35, 3.8, 9.5)[mi.level] * (0.9 + 0.2 * r.random()) * (mi.steps > 0 or mi.level < 2), 4
            )
        points.append({"dataSource": tracker, d.field: {"interval": _interval(mi.utc, 60, zone), d.value_key: value}})
        if d.id == "steps" and mi.steps and r.random() < _PHONE_MINUTE_PROB:  # the phone counts the same minute
            phone_steps = max(0, mi.steps + r.randint(-15, 10))
            points.append(
                {"dataSource": phone, "steps": {"interval": _interval(mi.utc, 60, zone), "count": str(phone_steps)}}
            )
    return points


def day_points(seed: int, participant_id: str, data_type: str, day: dt.date, *, hr_step: int = 1) -> list[dict]:
    """The points of one participant, data type and civil day, in the API's order (start time descending)."""
    d = BY_ID[data_type]
    zone = ZoneInfo(ZONE)
    p = _person(seed, participant_id)
    minutes = _minutes(seed, participant_id, day, zone)
    r = _rng(seed, participant_id, day.isoformat(), data_type)
    worn = any(m.worn for m in minutes)
    if d.id == "heart-rate":
        points = _heart_points(p, minutes, r, zone, max(1, min(60, hr_step)))
    elif d.id == "daily-resting-heart-rate":
        method = "WITH_SLEEP" if any(m.worn and m.level == 0 for m in minutes) else "ONLY_WITH_AWAKE_DATA"
        rest = {"date": _date(day), "beatsPerMinute": str(p.resting + r.randint(-3, 3))}
        rest["dailyRestingHeartRateMetadata"] = {"calculationMethod": method}
        points = [{"dataSource": _source(p.tracker, "DERIVED"), d.field: rest}] if worn else []
    elif d.id == "daily-heart-rate-zones":
        zones = {"date": _date(day), "heartRateZones": _zones(p)}
        points = [{"dataSource": _source(p.tracker, "DERIVED"), d.field: zones}] if worn else []
    else:
        points = _interval_points(d, p, minutes, r, zone)
    points.reverse()  # ascending as generated; the API lists newest first (stable for equal start times)
    return _stable_descending(points, d)


def rollup_point(seed: int, participant_id: str, r: RollUp, day: dt.date, *, hr_step: int = 1) -> dict | None:
    """The day's ``DailyRollupDataPoint`` as the API reconciles it: per minute one source (the wearable's),
    summed; total calories are active plus basal energy. None for a day without points."""
    types = ("active-energy-burned", "basal-energy-burned") if r.data_type == "total-calories" else (r.data_type,)
    total, seen = 0.0, False
    for type_id in types:
        d = BY_ID[type_id]
        per_minute: dict[str, tuple[int, float]] = {}
        for point in day_points(seed, participant_id, type_id, day, hr_step=hr_step):
            seen = True
            value = point[d.field]
            rank = 1 if point["dataSource"].get("device", {}).get("formFactor") == "PHONE" else 0
            start = value["interval"]["startTime"]
            if start not in per_minute or rank < per_minute[start][0]:
                per_minute[start] = (rank, float(value[d.value_key or ""]))
        total += sum(v for _, v in per_minute.values())
    if not seen:
        return None
    window = {"civilStartTime": {"date": _date(day)}, "civilEndTime": {"date": _date(day + dt.timedelta(days=1))}}
    return {**window, r.field: {r.value_key: total if r.value_key == "kcalSum" else str(round(total))}}


def _stable_descending(points: list[dict], d: DataType) -> list[dict]:
    """Newest first; points of the same start keep their generated order (tracker before phone)."""
    if d.shape != "interval":
        return points
    groups: list[list[dict]] = []
    for point in points:
        start = point[d.field]["interval"]["startTime"]
        if groups and groups[-1][0][d.field]["interval"]["startTime"] == start:
            groups[-1].insert(0, point)
        else:
            groups.append([point])
    return [p for g in groups for p in g]


def point_day(point: dict, d: DataType) -> dt.date:
    """The civil day a point belongs to (``sampleTime.civilTime``, ``interval.civilStartTime`` or ``date``)."""
    value = point[d.field]
    if d.shape == "sample":
        date = value["sampleTime"]["civilTime"]["date"]
    elif d.shape == "interval":
        date = value["interval"]["civilStartTime"]["date"]
    else:
        date = value["date"]
    return dt.date(date["year"], date["month"], date["day"])


def generate(
    out_dir: str | os.PathLike,
    participant_ids: list[str],
    start: dt.date,
    days: int,
    *,
    seed: int = 42,
    hr_step: int = 1,
) -> list[pathlib.Path]:
    """Write the documents of ``participant_ids`` x every data type x ``days`` days in the collector's layout."""
    written: list[pathlib.Path] = []
    for pid in participant_ids:
        for d in DATA_TYPES:
            for i in range(days):
                day = start + dt.timedelta(days=i)
                points = day_points(seed, pid, d.id, day, hr_step=hr_step)
                if not points:
                    continue
                written.append(_write(out_dir, document_path(pid, d.id, day), document_bytes(points)))
        for r in ROLLUPS:
            for i in range(days):
                day = start + dt.timedelta(days=i)
                point = rollup_point(seed, pid, r, day, hr_step=hr_step)
                if point is not None:
                    data = document_bytes([point], "rollupDataPoints")
                    written.append(_write(out_dir, document_path(pid, r.folder, day), data))
    return written


def _write(out_dir: str | os.PathLike, rel: str, data: bytes) -> pathlib.Path:
    path = pathlib.Path(out_dir, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path
