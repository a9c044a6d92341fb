"""A synthetic Fitabase export in the published layout, from the same seeded simulation as the Web API sample.

``<out>/Fitabase Data M.D.YY-M.D.YY/``: ``heartrate_seconds_merged.csv`` (worn seconds only),
``minuteStepsNarrow``, ``minuteCaloriesNarrow``, ``minuteIntensitiesNarrow``, ``minuteMETsNarrow`` (every minute
of every day, as Fitabase writes them) and ``dailyActivity_merged.csv`` (the 15 columns of the public data set),
times without zero padding (``4/12/2016 7:21:00 AM``). Written column by column with pyarrow: a month of 30
participants (millions of rows) takes seconds. Returns per participant-day-activity the rows and the value sum
written, for exact tests.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..sample_data import DayTruth, _heart_seconds, _person, _seq, _simulate_day

_MINUTES = 1440
_DAILY_COLUMNS = [
    "Id",
    "ActivityDate",
    "TotalSteps",
    "TotalDistance",
    "TrackerDistance",
    "LoggedActivitiesDistance",
    "VeryActiveDistance",
    "ModeratelyActiveDistance",
    "LightActiveDistance",
    "SedentaryActiveDistance",
    "VeryActiveMinutes",
    "FairlyActiveMinutes",
    "LightlyActiveMinutes",
    "SedentaryMinutes",
    "Calories",
]


def folder_name(start: dt.date, end: dt.date) -> str:
    """``Fitabase Data 4.12.16-5.12.16``: month.day.two-digit year, no zero padding."""
    return f"Fitabase Data {start.month}.{start.day}.{start:%y}-{end.month}.{end.day}.{end:%y}"


def _clock(us: np.ndarray) -> pa.Array:
    """``M/D/YYYY h:mm:ss AM`` for local times in µs since the epoch, formatted as whole columns."""
    seconds = pa.array(np.asarray(us) // 1_000_000, pa.timestamp("s"))
    text = pc.strftime(seconds, format="%m/%d/%Y %I:%M:%S %p")
    text = pc.replace_substring_regex(text, r"^0", "")
    text = pc.replace_substring_regex(text, r"/0", "/")
    return pc.replace_substring_regex(text, r" 0(\d:)", r" \1")


def _date_text(days: list[dt.date]) -> list[str]:
    return [f"{d.month}/{d.day}/{d.year}" for d in days]


def _write(path: pathlib.Path, columns: dict[str, pa.Array | list]) -> None:
    table = pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in columns.items()})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:  # the header unquoted, as Fitabase writes it
        fh.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    os.replace(tmp, path)


def _decimal(scaled: np.ndarray, decimals: int) -> pa.Array:
    """Fixed-point integers as decimal text (``7860`` at 4 decimals: ``0.786``), exactly."""
    return pc.cast(pa.array(scaled / 10**decimals).cast(pa.float64()), pa.string())


def generate(
    out_dir: str | os.PathLike, ids: list[str], start: dt.date, days: int, *, seed: int = 42
) -> tuple[pathlib.Path, list[DayTruth]]:
    """Write one export of ``ids`` over ``days`` days from ``start``; the folder and the truth per
    participant-day-activity (heart: samples; steps, calories: minutes; distance: the daily total only)."""
    end = start + dt.timedelta(days=days - 1)
    folder = pathlib.Path(out_dir) / folder_name(start, end)
    folder.mkdir(parents=True, exist_ok=True)
    minute = {k: [] for k in ("id", "ts", "steps", "cal", "level", "mets")}
    heart = {k: [] for k in ("id", "ts", "value")}
    daily: dict[str, list] = {c: [] for c in _DAILY_COLUMNS}
    truth: list[DayTruth] = []
    for index, pid in enumerate(ids):
        person = _person(seed, index)
        for offset in range(days):
            date = start + dt.timedelta(days=offset)
            rng = _seq(seed, index, offset + 1)
            day = _simulate_day(person, rng)
            base = (date - dt.date(1970, 1, 1)).days * 86_400 * 1_000_000
            stamps = base + np.arange(_MINUTES, dtype=np.int64) * 60_000_000
            minute["id"].append(np.full(_MINUTES, pid, dtype=object))
            minute["ts"].append(stamps)
            minute["steps"].append(day.steps)
            minute["cal"].append(day.cal_k)
            minute["level"].append(day.level)
            minute["mets"].append(day.mets)
            secs, bpm = _heart_seconds(day, rng)
            heart["id"].append(np.full(len(secs), pid, dtype=object))
            heart["ts"].append(base + secs.astype(np.int64) * 1_000_000)
            heart["value"].append(bpm)
            distance = int(day.dist_k.sum())
            cal_total = int(day.cal_k.sum())
            minutes_at = [int((day.level == k).sum()) for k in (3, 2, 1, 0)]
            row = [pid, date, int(day.steps.sum()), distance / 1e6, distance / 1e6, 0, 0, 0, 0, 0, *minutes_at]
            for column, value in zip(_DAILY_COLUMNS, [*row, round(cal_total / 1e4)], strict=True):
                daily[column].append(value)
            truth += [
                DayTruth(pid, "heart", date, len(secs), float(bpm.sum()), None, None),
                DayTruth(pid, "steps", date, _MINUTES, float(day.steps.sum()), str(int(day.steps.sum())), None),
                DayTruth(pid, "calories", date, _MINUTES, cal_total / 1e4, str(round(cal_total / 1e4)), None),
                DayTruth(pid, "distance", date, 0, 0.0, repr(distance / 1e6), None),
            ]
    ids_m = pa.array(np.concatenate(minute["id"]), pa.string())
    clock_m = _clock(np.concatenate(minute["ts"]))
    _write(
        folder / "minuteStepsNarrow_merged.csv",
        {"Id": ids_m, "ActivityMinute": clock_m, "Steps": pa.array(np.concatenate(minute["steps"]))},
    )
    _write(
        folder / "minuteCaloriesNarrow_merged.csv",
        {"Id": ids_m, "ActivityMinute": clock_m, "Calories": _decimal(np.concatenate(minute["cal"]), 4)},
    )
    _write(
        folder / "minuteIntensitiesNarrow_merged.csv",
        {"Id": ids_m, "ActivityMinute": clock_m, "Intensity": pa.array(np.concatenate(minute["level"]))},
    )
    _write(
        folder / "minuteMETsNarrow_merged.csv",
        {"Id": ids_m, "ActivityMinute": clock_m, "METs": pa.array(np.concatenate(minute["mets"]))},
    )
    _write(
        folder / "heartrate_seconds_merged.csv",
        {
            "Id": pa.array(np.concatenate(heart["id"]), pa.string()),
            "Time": _clock(np.concatenate(heart["ts"])),
            "Value": pa.array(np.concatenate(heart["value"])),
        },
    )
    daily["ActivityDate"] = _date_text(daily["ActivityDate"])
    _write(folder / "dailyActivity_merged.csv", daily)
    return folder, truth
