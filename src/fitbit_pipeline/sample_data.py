"""Deterministic synthetic Fitbit Web API intraday JSON (no real person).

:func:`generate` writes participant-days of the six intraday activities in exactly the
shapes of the reference fixtures (``/work/shared/fixtures``): compact single-line JSON,
keys in the order the API delivers them, daily totals as strings, zero floats printed
as ``0``, heart rows only for worn minutes (or seconds), in one of three export layouts.
It returns a :class:`SampleTruth` with independently known row counts, sums and daily
values, so tests and benchmarks can check a pipeline end to end.

The data follow a daily rhythm: asleep at night (low heart rate, no steps), bouts of
walking (some running) in the day with correlated steps, distance, floors, elevation,
calories/METs and heart rate; the tracker is taken off for a while most days and, now
and then, for the whole day. Everything is derived from ``(seed, participant index,
day index)`` alone, so output is byte-identical whatever the worker count, and the
minute-level data of a day do not depend on ``hr_seconds`` or on how many days are made.

Speed: every row is formatted with numpy into a byte buffer (no per-row Python), and
participants are spread over processes when there are eight or more.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import zipfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import orjson

__all__ = ["ACTIVITIES", "ALL_LAYOUTS", "GOOGLE_HEALTH", "LAYOUTS", "DayTruth", "SampleTruth", "generate"]

ACTIVITIES = ("heart", "calories", "steps", "elevation", "distance", "floors")
LAYOUTS = ("by-participant-and-date", "mydatahelps", "careevolution")  # Fitbit Web API exports
# Google Health API v4 documents, as `fitbit-pipeline collect` writes them (google_health/sample.py). Kept
# out of LAYOUTS: those are Web API layouts with a SampleTruth of Web API rows.
GOOGLE_HEALTH = "google-health"
FITABASE = "fitabase"  # a Fitabase CSV export (fitabase/sample.py)
ACCOUNT_EXPORT = "account-export"  # Fitbit account exports, one folder per participant (account_export/sample.py)
ALL_LAYOUTS = (*LAYOUTS, GOOGLE_HEALTH, FITABASE, ACCOUNT_EXPORT)

# Float activities are written with a fixed number of decimals (trailing zeros dropped);
# truths are computed from the same scaled integers, so they match the JSON exactly.
_CAL_DECIMALS = 4  # kcal per minute
_DIST_DECIMALS = 6  # km per minute
_ELEV_DECIMALS = 3  # m per minute
_FLOOR_MILLIMETRES = 3048  # one floor = 3.048 m
_NOT_WORN_DAY_PROB = 0.06  # a whole day without the tracker
_MDH_PROJECT = "RURAL Study"
_ZIP_LEVEL = 6  # deflate level of zip members
_POOL_MIN_PARTICIPANTS = 8  # spread participants over processes from this many on

_MINUTES = 1440
_SECONDS = 86400


@dataclass(frozen=True)
class DayTruth:
    participant_id: str
    activity: str
    date: datetime.date
    intraday_rows: int
    intraday_value_sum: float  # sum of intraday `value`
    daily_value: str | None  # the daily total string as written (None for heart)
    resting_heart_rate: int | None  # heart only


@dataclass
class SampleTruth:
    files: list[pathlib.Path] = field(default_factory=list)  # zip archives count as one file each
    days: list[DayTruth] = field(default_factory=list)  # one per participant x date x activity

    def total_rows(self, activity: str) -> int:
        return sum(d.intraday_rows for d in self.days if d.activity == activity)

    def value_sum(self, activity: str) -> float:
        return float(sum(d.intraday_value_sum for d in self.days if d.activity == activity))


# --------------------------------------------------------------------------- formatting


_TIME_TABLE: np.ndarray | None = None


def _time_table() -> np.ndarray:
    """(86400, 26) uint8: ``"time":"HH:MM:SS","value":`` for every second of the day."""
    global _TIME_TABLE
    if _TIME_TABLE is None:
        s = np.arange(_SECONDS)
        h, m, sec = s // 3600, s // 60 % 60, s % 60
        table = np.empty((_SECONDS, 26), np.uint8)
        table[:] = np.frombuffer(b'"time":"00:00:00","value":', np.uint8)
        for pos, part in ((8, h), (11, m), (14, sec)):
            table[:, pos] = 48 + part // 10
            table[:, pos + 1] = 48 + part % 10
        _TIME_TABLE = table
    return _TIME_TABLE


class _Rows:
    """Builds ``row,row,...`` bytes column by column: fixed bytes plus masked digit columns."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: list[np.ndarray] = []
        self.masks: list[np.ndarray | None] = []

    def lit(self, text: bytes) -> _Rows:
        arr = np.frombuffer(text, np.uint8)
        self.cols.append(np.broadcast_to(arr, (self.n, arr.size)))
        self.masks.append(None)
        return self

    def table(self, arr: np.ndarray) -> _Rows:
        self.cols.append(arr)
        self.masks.append(None)
        return self

    def int_(self, values: np.ndarray, width: int) -> _Rows:
        digits, mask = _int_digits(values.astype(np.int64), width)
        self.cols.append(digits)
        self.masks.append(mask)
        return self

    def fixed(self, scaled: np.ndarray, decimals: int, int_width: int) -> _Rows:
        """Non-negative ``scaled / 10**decimals`` as the shortest decimal; zero as ``0``.

        Identical to orjson's / Python's float output from 1e-4 up (below that they would use an
        exponent; the generator never writes such values)."""
        k = scaled.astype(np.int64)
        unit = 10**decimals
        ip, fp = k // unit, k % unit
        digits, mask = _int_digits(ip, int_width)
        self.cols.append(digits)
        self.masks.append(mask)
        nonzero = k > 0
        self.cols.append(np.broadcast_to(np.frombuffer(b".", np.uint8), (self.n, 1)))
        self.masks.append(nonzero[:, None])
        pw = 10 ** np.arange(decimals - 1, -1, -1, dtype=np.int64)
        self.cols.append(((fp[:, None] // pw) % 10 + 48).astype(np.uint8))
        trailing = np.zeros(self.n, np.int64)
        for i in range(1, decimals):
            trailing += fp % (10**i) == 0
        keep = np.where(fp == 0, 1, decimals - trailing)
        self.masks.append((np.arange(decimals)[None, :] < keep[:, None]) & nonzero[:, None])
        return self

    def build(self) -> bytes:
        if self.n == 0:
            return b""
        self.lit(b",")
        sep = np.ones((self.n, 1), bool)
        sep[-1, 0] = False
        self.masks[-1] = sep
        buf = np.concatenate(self.cols, axis=1)
        mask = np.concatenate(
            [
                np.broadcast_to(m, c.shape) if m is not None else np.ones(c.shape, bool)
                for c, m in zip(self.cols, self.masks, strict=True)
            ],
            axis=1,
        )
        return buf[mask].tobytes()


def _int_digits(v: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    if v.size and (v.min() < 0 or v.max() >= 10**width):
        raise ValueError(f"value out of the {width}-digit range")
    pw = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = ((v[:, None] // pw) % 10 + 48).astype(np.uint8)
    ndig = np.ones(v.shape, np.int64)
    for i in range(1, width):
        ndig += v >= 10**i
    mask = np.arange(width)[None, :] >= (width - ndig)[:, None]
    return digits, mask


def _daily_decimal(total: int, decimals: int, daily_decimals: int) -> str:
    """``total / 10**decimals`` rounded (half up) to ``daily_decimals``, as Python prints it."""
    step = 10 ** max(decimals - daily_decimals, 0)
    return str(((total + step // 2) // step) / 10 ** min(decimals, daily_decimals))


def _document(activity: str, summary: list[dict], rows: bytes, dataset_type: str) -> bytes:
    act = activity.encode()
    return b"".join(
        (
            b'{"activities-',
            act,
            b'":',
            orjson.dumps(summary, option=orjson.OPT_SORT_KEYS),
            b',"activities-',
            act,
            b'-intraday":{"dataset":[',
            rows,
            b'],"datasetInterval":1,"datasetType":"',
            dataset_type.encode(),
            b'"}}',
        )
    )


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class _Person:
    hrmax: int
    rhr: float
    weight: float
    stride_km: float
    activity: float
    runner: bool
    wake: float
    bed: float

    @property
    def zone_bounds(self) -> tuple[int, int, int]:
        return (round(self.hrmax * 0.5), round(self.hrmax * 0.7), round(self.hrmax * 0.85))


def _seq(seed: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, *more])


def _person(seed: int, index: int) -> _Person:
    rng = _seq(seed, index, 0)
    age = int(rng.integers(20, 71))
    return _Person(
        hrmax=220 - age,
        rhr=float(np.clip(rng.normal(62, 6), 48, 78)),
        weight=float(rng.uniform(52, 105)),
        stride_km=float(rng.uniform(0.00068, 0.00088)),
        activity=float(np.clip(rng.lognormal(0, 0.35), 0.4, 2.5)),
        runner=bool(rng.random() < 0.25),
        wake=float(rng.normal(420, 30)),
        bed=float(rng.normal(1380, 25)),
    )


@dataclass
class _Day:
    worn: np.ndarray  # (1440,) bool
    steps: np.ndarray
    floors: np.ndarray
    dist_k: np.ndarray  # km * 1e6
    elev_k: np.ndarray  # m * 1e3
    cal_k: np.ndarray  # kcal * 1e4
    level: np.ndarray
    mets: np.ndarray
    hr: np.ndarray  # (1440,) int bpm (meaningful where worn)


def _simulate_day(p: _Person, rng: np.random.Generator) -> _Day:
    n = _MINUTES
    minute = np.arange(n)
    wake = int(np.clip(rng.normal(p.wake, 35), 300, 600))
    bed = int(np.clip(rng.normal(p.bed, 35), 1230, 1439))
    awake = (minute >= wake) & (minute < bed)

    # Wear: a whole day off now and then; otherwise a few off-wrist stretches.
    worn = np.ones(n, bool)
    if rng.random() < _NOT_WORN_DAY_PROB:
        worn[:] = False
    else:
        for _ in range(min(int(rng.poisson(1.1)), 3)):  # charging, shower
            start = int(rng.integers(wake, bed - 20))
            worn[start : start + int(rng.integers(15, 150))] = False
        if rng.random() < 0.12:  # off for the night
            worn[bed + int(rng.integers(0, 40)) :] = False
        if rng.random() < 0.10:  # put on late in the morning
            worn[: wake + int(rng.integers(0, 90))] = False

    # Steps: walking bouts (some runs) in waking hours plus sporadic pottering.
    day_level = p.activity * float(rng.lognormal(0, 0.3))
    steps = np.zeros(n)
    running = np.zeros(n, bool)
    day_level = min(day_level, 2.2)
    nb = int(rng.poisson(6 * day_level)) + 1
    starts = rng.integers(wake, bed - 5, nb)
    durs = np.minimum(2 + rng.exponential(7 * day_level, nb), 75).astype(int)
    cadence = rng.uniform(75, 125, nb)
    run = np.zeros(nb, bool)
    run[0] = rng.random() < (0.4 if p.runner else 0.02)  # at most one run a day
    if run[0]:
        cadence[0] = rng.uniform(150, 178)
        durs[0] = int(np.clip(rng.normal(30, 10), 10, 70))
    for s, d, c, r in zip(starts, durs, cadence, run, strict=True):
        sl = slice(int(s), min(int(s + d), n))
        steps[sl] = np.maximum(steps[sl], c * rng.uniform(0.75, 1.0, sl.stop - sl.start))
        running[sl] |= bool(r)
    potter = awake & (steps == 0) & (rng.random(n) < 0.18)
    steps[potter] = rng.poisson(12, int(potter.sum()))
    steps = np.clip(np.rint(steps), 0, 300).astype(np.int64)
    steps[~worn] = 0
    running &= steps > 0

    climbing = (steps > 40) & ~running & (rng.random(n) < 0.04)
    floors = np.where(climbing, 1 + rng.binomial(2, 0.35, n), 0).astype(np.int64)
    elev_k = floors * _FLOOR_MILLIMETRES

    stride = p.stride_km * np.where(running, 1.45, 1.0) * rng.normal(1.0, 0.04, n)
    dist_k = np.clip(np.rint(steps * stride * 10**_DIST_DECIMALS), 0, 400_000).astype(np.int64)
    dist_k[(steps > 0) & (dist_k < 200)] = 200

    # METs (x10 as the API gives) and levels; calories from METs and body weight.
    mets = np.where(awake, 10 + rng.integers(0, 5, n), 10).astype(float)
    walk_mets = np.maximum(15, 12 + 0.26 * steps + rng.normal(0, 1.5, n))
    run_mets = 50 + 0.32 * steps + rng.normal(0, 3, n)
    mets = np.where(steps > 0, walk_mets, mets)
    mets = np.where(running, run_mets, mets) + 8 * floors
    mets[~worn] = 10
    mets = np.clip(np.rint(mets), 9, 200).astype(np.int64)
    level = (mets >= 15).astype(np.int64) + (mets >= 30) + (mets >= 60)
    kcal_per_met_min = p.weight * 3.5 / 200
    cal = mets / 10 * kcal_per_met_min * rng.normal(1.0, 0.02, n)
    cal_k = np.clip(np.rint(cal * 10**_CAL_DECIMALS), 1, 59 * 10**_CAL_DECIMALS).astype(np.int64)

    # Heart rate: sleep / awake baseline, lifted by intensity with a lag, plus noise.
    rhr = p.rhr + rng.normal(0, 1.5)
    base = np.where(awake, rhr + 10 + rng.uniform(0, 4), rhr - 2)
    intensity = np.clip((mets - 12) / 95, 0, 1)
    target = base + (0.85 * p.hrmax - rhr) * intensity
    kernel = np.exp(-np.arange(12) / 2.5)
    kernel /= kernel.sum()
    padded = np.concatenate((np.full(kernel.size - 1, target[0]), target))
    smooth = np.convolve(padded, kernel, "valid")
    drift = np.convolve(rng.normal(0, 1.0, n + 29), np.full(30, 1 / np.sqrt(30)), "valid") * 2.0
    noise = drift + rng.normal(0, 1.2, n)
    hr = np.clip(np.rint(smooth + noise), 45, 180).astype(np.int64)
    return _Day(worn, steps, floors, dist_k, elev_k, cal_k, level, mets, hr)


def _heart_seconds(day: _Day, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Irregular samples (1-12 s, mostly 5 s) in worn minutes, interpolated from the minute curve."""
    parts = []
    t0 = int(rng.integers(0, 12))
    total = t0
    while total < _SECONDS:
        m = 24000
        u = rng.random(m)
        gaps = np.where(u < 0.5, 5, np.where(u < 0.7, 1, rng.integers(2, 13, m)))
        parts.append(total + np.cumsum(gaps) - gaps[0])
        total = int(parts[-1][-1]) + int(rng.integers(1, 13))
    t = np.concatenate(parts)
    t = t[t < _SECONDS]
    t = t[day.worn[t // 60]]
    values = np.interp(t / 60 - 0.5, np.arange(_MINUTES), day.hr.astype(float))
    values = np.clip(np.rint(values + rng.normal(0, 1.2, t.size)), 45, 180).astype(np.int64)
    return t, values


# --------------------------------------------------------------------------- documents


def _day_documents(
    pid: str, date: datetime.date, p: _Person, day: _Day, seconds: tuple[np.ndarray, np.ndarray] | None
) -> tuple[dict[str, bytes], list[DayTruth]]:
    ds = date.isoformat()
    table = _time_table()
    minute_times = table[::60]
    docs: dict[str, bytes] = {}
    truths: list[DayTruth] = []

    # heart
    worn_idx = np.flatnonzero(day.worn)
    hr_worn = day.hr[worn_idx]
    z1, z2, z3 = p.zone_bounds
    zone = (hr_worn >= z1).astype(np.int64) + (hr_worn >= z2) + (hr_worn >= z3)
    zone_minutes = np.bincount(zone, minlength=4)
    zone_cal = np.bincount(zone, weights=day.cal_k[worn_idx].astype(float), minlength=4)
    bounds = ((30, z1, "Out of Range"), (z1, z2, "Fat Burn"), (z2, z3, "Cardio"), (z3, 220, "Peak"))
    zones = [
        {
            "caloriesOut": float(zone_cal[i]) / 10**_CAL_DECIMALS,
            "max": hi,
            "min": lo,
            "minutes": int(zone_minutes[i]),
            "name": name,
        }
        for i, (lo, hi, name) in enumerate(bounds)
    ]
    heart_value: dict = {"customHeartRateZones": [], "heartRateZones": zones}
    rhr: int | None = None
    if worn_idx.size:
        rhr = int(np.clip(np.rint(np.percentile(hr_worn, 25)), 25, 150))
        heart_value["restingHeartRate"] = rhr
    if seconds is not None:
        t, values = seconds
        times, dtype = table[t], "second"
    else:
        values, times, dtype = hr_worn, minute_times[worn_idx], "minute"
    rows = _Rows(values.size).lit(b"{").table(times).int_(values, 3).lit(b"}").build()
    docs["heart"] = _document("heart", [{"dateTime": ds, "value": heart_value}], rows, dtype)
    truths.append(DayTruth(pid, "heart", date, int(values.size), float(values.sum()), None, rhr))

    # calories
    cal_total = int(day.cal_k.sum())
    daily = str((cal_total + 5 * 10 ** (_CAL_DECIMALS - 1)) // 10**_CAL_DECIMALS)
    rows = (
        _Rows(_MINUTES)
        .lit(b'{"level":')
        .int_(day.level, 1)
        .lit(b',"mets":')
        .int_(day.mets, 3)
        .lit(b",")
        .table(minute_times)
        .fixed(day.cal_k, _CAL_DECIMALS, 2)
        .lit(b"}")
        .build()
    )
    docs["calories"] = _document("calories", [{"dateTime": ds, "value": daily}], rows, "minute")
    truths.append(DayTruth(pid, "calories", date, _MINUTES, cal_total / 10**_CAL_DECIMALS, daily, None))

    # steps, elevation, distance, floors
    for activity, values, decimals, width in (
        ("steps", day.steps, None, 3),
        ("elevation", day.elev_k, _ELEV_DECIMALS, 2),
        ("distance", day.dist_k, _DIST_DECIMALS, 1),
        ("floors", day.floors, None, 2),
    ):
        total = int(values.sum())
        builder = _Rows(_MINUTES).lit(b"{").table(minute_times)
        if decimals is None:
            builder.int_(values, width)
            daily, value_sum = str(total), float(total)
        else:
            builder.fixed(values, decimals, width)
            value_sum = total / 10**decimals
            daily = _daily_decimal(total, decimals, 5 if activity == "distance" else 3)
        rows = builder.lit(b"}").build()
        docs[activity] = _document(activity, [{"dateTime": ds, "value": daily}], rows, "minute")
        truths.append(DayTruth(pid, activity, date, _MINUTES, value_sum, daily, None))
    return docs, truths


# --------------------------------------------------------------------------- layouts


def _relpath(layout: str, pid: str, date: datetime.date, activity: str, hr_seconds: bool) -> str:
    ds = date.isoformat()
    detail = "1sec" if activity == "heart" and hr_seconds else "1min"
    name = f"activities_{activity}_date_{ds}_1d_{detail}.json"
    if layout == "by-participant-and-date":
        return f"{pid}/{ds}/{activity}.json"
    if layout == "mydatahelps":
        return f"fitbit_intraday_activities_{activity}/{pid}/{name}"
    return f"raw/health/{date:%Y/%m/%d}/FITBIT/activities-{activity}-intraday/{pid}/{name}"


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class _Job:
    index: int
    pid: str
    seed: int
    start: datetime.date
    days: int
    hr_seconds: bool
    layout: str
    out_dir: str | None  # None: return the documents instead of writing them


def _run_participant(job: _Job) -> tuple[list[str], list[_Member], list[DayTruth]]:
    p = _person(job.seed, job.index)
    written: list[str] = []
    members: list[_Member] = []
    truths: list[DayTruth] = []
    made_dirs: set[str] = set()
    for d in range(job.days):
        date = job.start + datetime.timedelta(days=d)
        day = _simulate_day(p, _seq(job.seed, job.index, 1, d))
        seconds = _heart_seconds(day, _seq(job.seed, job.index, 2, d)) if job.hr_seconds else None
        docs, day_truths = _day_documents(job.pid, date, p, day, seconds)
        truths.extend(day_truths)
        for activity in ACTIVITIES:
            rel = _relpath(job.layout, job.pid, date, activity, job.hr_seconds)
            if job.out_dir is None:
                members.append(_Member(rel, docs[activity]))
                continue
            path = pathlib.Path(job.out_dir, rel)
            parent = str(path.parent)
            if parent not in made_dirs:
                path.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(parent)
            _write_atomic(path, docs[activity])
            written.append(str(path))
    return written, members, truths


_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _make_ids(layout: str, count: int, seed: int) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    for i in range(count):
        attempt = 0
        while True:
            rng = _seq(seed, i, 3, attempt)
            if layout == "mydatahelps":
                a, b = rng.integers(1000, 10000, 2)
                pid = f"MDH-{a:04d}-{b:04d}"
            elif layout == "careevolution":
                pid = f"P{int(rng.integers(100000, 1000000))}"
            elif layout == FITABASE:  # a ten-digit number, as Fitabase's Id
                pid = str(int(rng.integers(1_000_000_000, 10_000_000_000)))
            else:
                pid = "".join(_ID_ALPHABET[j] for j in rng.integers(0, len(_ID_ALPHABET), 6))
            if pid not in seen:
                break
            attempt += 1
        seen.add(pid)
        ids.append(pid)
    return ids


def _check_ids(ids: Iterable[str]) -> list[str]:
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ValueError("participant_ids must be unique")
    for pid in ids:
        if not pid or pid in (".", "..") or "/" in pid or "\\" in pid or "\0" in pid:
            raise ValueError(f"participant id {pid!r} cannot be used in a path")
    return ids


def generate(
    out_dir: str | os.PathLike,
    *,
    participants: int = 3,
    days: int = 7,
    start: datetime.date = datetime.date(2024, 3, 4),
    hr_seconds: bool = False,
    layout: str = "by-participant-and-date",
    seed: int = 42,
    participant_ids: list[str] | None = None,
) -> SampleTruth:
    """Write synthetic Fitbit intraday files under ``out_dir`` and return what was written.

    ``participant_ids`` (if given) replaces the generated ids and sets the participant count.
    """
    if layout in (GOOGLE_HEALTH, FITABASE):
        raise ValueError(f"the {layout} layout is written by generate_{layout.replace('-', '_')}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(ALL_LAYOUTS)}")
    if days < 1:
        raise ValueError("days must be at least 1")
    if participant_ids is None and participants < 0:
        raise ValueError("participants must not be negative")
    ids = _check_ids(participant_ids) if participant_ids is not None else _make_ids(layout, participants, seed)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    to_zip = layout == "mydatahelps"
    jobs = [
        _Job(i, pid, seed, start, days, hr_seconds, layout, None if to_zip else str(out)) for i, pid in enumerate(ids)
    ]
    truth = SampleTruth()
    workers = min(os.cpu_count() or 1, len(jobs))
    if len(jobs) >= _POOL_MIN_PARTICIPANTS and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            _collect(pool.map(_run_participant, jobs), truth, out, to_zip, seed, start, days)
    else:
        _collect(map(_run_participant, jobs), truth, out, to_zip, seed, start, days)
    return truth


def generate_google_health(
    out_dir: str | os.PathLike,
    *,
    participants: int = 3,
    days: int = 7,
    start: datetime.date = datetime.date(2026, 11, 1),
    seed: int = 42,
    hr_step: int = 1,
    participant_ids: list[str] | None = None,
) -> list[pathlib.Path]:
    """Google Health API v4 documents in the collector's layout (see :mod:`fitbit_pipeline.google_health.sample`)."""
    from .google_health import sample as gh_sample

    if days < 1:
        raise ValueError("days must be at least 1")
    ids = _check_ids(participant_ids) if participant_ids is not None else _make_ids(GOOGLE_HEALTH, participants, seed)
    return gh_sample.generate(out_dir, ids, start, days, seed=seed, hr_step=hr_step)


def generate_fitabase(
    out_dir: str | os.PathLike,
    *,
    participants: int = 3,
    days: int = 7,
    start: datetime.date = datetime.date(2016, 4, 12),
    seed: int = 42,
    participant_ids: list[str] | None = None,
) -> tuple[pathlib.Path, list[DayTruth]]:
    """A Fitabase CSV export (see :mod:`fitbit_pipeline.fitabase.sample`): its folder and the truth."""
    from .fitabase import sample as fitabase_sample

    if days < 1:
        raise ValueError("days must be at least 1")
    ids = _check_ids(participant_ids) if participant_ids is not None else _make_ids(FITABASE, participants, seed)
    return fitabase_sample.generate(out_dir, ids, start, days, seed=seed)


def generate_account_export(
    out_dir: str | os.PathLike,
    *,
    participants: int = 3,
    days: int = 7,
    start: datetime.date = datetime.date(2024, 3, 4),
    zone: str = "America/Chicago",
    seed: int = 42,
    participant_ids: list[str] | None = None,
) -> tuple[list[pathlib.Path], list[DayTruth]]:
    """Fitbit account exports (see :mod:`fitbit_pipeline.account_export.sample`): the participant folders and
    the truth. Their UTC times are read back with ``zone`` (``FITBIT_DEFAULT_TIMEZONE``)."""
    from .account_export import sample as account_sample

    if days < 1:
        raise ValueError("days must be at least 1")
    ids = _check_ids(participant_ids) if participant_ids is not None else _make_ids(ACCOUNT_EXPORT, participants, seed)
    return account_sample.generate(out_dir, ids, start, days, zone, seed=seed)


def _collect(results, truth: SampleTruth, out: pathlib.Path, to_zip: bool, seed, start, days) -> None:
    if not to_zip:
        for written, _members, truths in results:
            truth.files.extend(pathlib.Path(w) for w in written)
            truth.days.extend(truths)
        return
    end = start + datetime.timedelta(days=days - 1)
    export_id = f"{int(_seq(seed, 4).integers(0, 2**32)):08X}"
    path = out / f"RK.{export_id}.{_MDH_PROJECT}_{start:%Y%m%d}-{end:%Y%m%d}.zip"
    tmp = path.with_name(f".{path.name}.tmp")
    stamp = (max(end.year, 1980), end.month, end.day, 0, 0, 0)  # fixed: reproducible bytes
    with zipfile.ZipFile(tmp, "w") as zf:
        for _written, members, truths in results:
            for member in members:
                info = zipfile.ZipInfo(member.name, date_time=stamp)
                info.external_attr = 0o100644 << 16
                zf.writestr(info, member.data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL)
            truth.days.extend(truths)
    os.replace(tmp, path)
    truth.files.append(path)


# --------------------------------------------------------------------------- zip


@dataclass(frozen=True)
class _Member:
    name: str
    data: bytes
