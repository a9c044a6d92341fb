"""Synthetic Fitbit account exports in the published layout, from the same seeded simulation as the Web API sample.

``<out>/<participant>/Takeout/Fitbit/Global Export Data/``: ``heart_rate-<day>.json`` (one local day, UTC
times, worn seconds only), ``steps-``, ``distance-`` (centimetres) and ``calories-`` files of 30 local days in
UTC, ``altitude-`` (feet, 10 a floor, local time, minutes with a climb only) and one ``resting_heart_rate-``
file for the whole range, pretty-printed as the export writes them (``"dateTime" : "03/10/24 05:00:05"``).
The simulated local days are laid on the participant's zone: a 23- or 25-hour day has as many minutes.
Returns per participant-day-activity the rows and value sum written, for exact tests.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
from zoneinfo import ZoneInfo

import numpy as np

from ..sample_data import DayTruth, _heart_seconds, _person, _seq, _simulate_day

FOLDER = ("Takeout", "Fitbit", "Global Export Data")
CHUNK_DAYS = 30  # steps, distance, calories and altitude files each cover 30 local days
_FEET_PER_FLOOR = 10


def _utc_bounds(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, int]:
    """The UTC instant local midnight of ``day`` is, and the length of the local day in seconds."""
    start = dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.UTC)
    return start, int((end - start).total_seconds())  # in UTC: aware times of one zone subtract as wall times


def _first_local(stamps: list[dt.datetime], tz: ZoneInfo) -> np.ndarray:
    """Which UTC instants are the first at their local wall time (the hour a zone repeats in autumn comes twice:
    the table holds one row a local time, the second is a duplicate)."""
    seen: set[dt.datetime] = set()
    first = np.zeros(len(stamps), dtype=bool)
    for i, t in enumerate(stamps):
        local = t.replace(tzinfo=dt.UTC).astimezone(tz).replace(tzinfo=None)
        first[i] = local not in seen
        seen.add(local)
    return first


def _records(when: list[dt.datetime], values: list[str]) -> bytes:
    """A JSON array in the export's pretty-printed form."""
    items = [
        f'{{\n  "dateTime" : "{t:%m/%d/%y %H:%M:%S}",\n  "value" : {v}\n}}' for t, v in zip(when, values, strict=True)
    ]
    return ("[" + ",".join(items) + "]\n").encode()


def _write(folder: pathlib.Path, name: str, data: bytes) -> None:
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)


def generate(
    out_dir: str | os.PathLike, ids: list[str], start: dt.date, days: int, zone: str, *, seed: int = 42
) -> tuple[list[pathlib.Path], list[DayTruth]]:
    """Write one export per participant; the participant folders and the truth per participant-day-activity
    (heart: samples and their sum, and the resting heart rate; steps, calories, distance, elevation: rows and
    the sum in the tables' units)."""
    tz = ZoneInfo(zone)
    folders: list[pathlib.Path] = []
    truth: list[DayTruth] = []
    for index, pid in enumerate(ids):
        person = _person(seed, index)
        folder = pathlib.Path(out_dir, pid, *FOLDER)
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(pathlib.Path(out_dir, pid))
        series: dict[str, tuple[list[dt.datetime], list[str]]] = {}
        resting: tuple[list[dt.datetime], list[str]] = ([], [])
        for offset in range(days):
            date = start + dt.timedelta(days=offset)
            chunk = start + dt.timedelta(days=offset // CHUNK_DAYS * CHUNK_DAYS)
            day = _simulate_day(person, _seq(seed, index, offset + 1))
            utc0, length = _utc_bounds(date, tz)
            minutes = length // 60
            utc_naive = utc0.replace(tzinfo=None)
            local0 = dt.datetime.combine(date, dt.time())
            # the simulated minute i is the i-th minute of the local day (a 25-hour day repeats the last hour)
            pick = np.minimum(np.arange(minutes), 1439)
            stamps = [utc_naive + dt.timedelta(minutes=i) for i in range(minutes)]
            steps, cal, dist = day.steps[pick], day.cal_k[pick], np.rint(day.dist_k[pick] / 10).astype(np.int64)
            for metric, values in (("steps", steps.astype(np.int64)), ("calories", cal), ("distance", dist)):
                texts = [str(v) for v in values] if metric != "calories" else [str(v / 1e4) for v in values]
                when, text = series.setdefault(f"{metric}-{chunk.isoformat()}", ([], []))
                when.extend(stamps)
                text.extend(f'"{t}"' for t in texts)
            climbed = np.flatnonzero(day.floors > 0)
            alt_when, alt_text = series.setdefault(f"altitude-{chunk.isoformat()}", ([], []))
            alt_when.extend(local0 + dt.timedelta(minutes=int(i)) for i in climbed)
            alt_text.extend(f'"{int(day.floors[i]) * _FEET_PER_FLOOR}"' for i in climbed)
            secs, bpm = _heart_seconds(day, _seq(seed, index, offset + 1, 7))
            keep = secs < length
            secs, bpm = secs[keep], bpm[keep]
            heart_when = [utc_naive + dt.timedelta(seconds=int(s)) for s in secs]
            heart_text = [f'{{\n    "bpm" : {int(b)},\n    "confidence" : 3\n  }}' for b in bpm]
            _write(folder, f"heart_rate-{date.isoformat()}.json", _records(heart_when, heart_text))
            worn = day.hr[day.worn]
            rhr = int(np.clip(np.rint(np.percentile(worn, 25)), 25, 150)) if worn.size else None
            if rhr is not None:
                resting[0].append(local0)
                resting[1].append(
                    f'{{\n    "date" : "{date:%m/%d/%y}",\n    "value" : {rhr}.0,\n    "error" : 5.0\n  }}'
                )
            feet = day.floors[climbed].astype(np.int64) * _FEET_PER_FLOOR
            m, h = _first_local(stamps, tz), _first_local(heart_when, tz)
            truth += [
                DayTruth(pid, "heart", date, int(h.sum()), float(bpm[h].sum()), None, rhr),
                DayTruth(pid, "steps", date, int(m.sum()), float(steps[m].sum()), None, None),
                DayTruth(pid, "calories", date, int(m.sum()), float(cal[m].sum()) / 1e4, None, None),
                DayTruth(pid, "distance", date, int(m.sum()), float(dist[m].sum()) * 1e-5, None, None),
                DayTruth(pid, "elevation", date, len(climbed), float(feet.sum()) * 0.3048, None, None),
            ]
        for stem, (when, text) in series.items():
            _write(folder, f"{stem}.json", _records(when, text))
        _write(folder, f"resting_heart_rate-{start.isoformat()}.json", _records(*resting))
    return folders, truth
