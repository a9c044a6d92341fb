"""The files of a Fitbit account export that are read, declared once: activity, clock, unit and shape.

One export is one person's data (nothing in it names them: the participant comes from a path segment, see
bundles.py). Facts, with their sources, are in docs/formats/fitbit-account-export.md:

- ``Global Export Data/<metric>-YYYY-MM-DD.json`` (also under ``Physical Activity/`` or ``user-site-export/``):
  a JSON array of ``{"dateTime": "MM/DD/YY HH:MM:SS", "value": ...}``. A file covers one local day
  (heart rate), 30 local days (steps, distance, calories, altitude) or a year (resting heart rate) and is
  named by the local date it starts on. heart_rate, steps, distance and calories times are **UTC**; altitude
  times and the daily files are **local**. distance is centimetres, altitude feet (10 ft a floor).
- ``Physical Activity_GoogleData/<metric>_YYYY-MM-DD.csv``: ``timestamp,<measure>[,data source]`` with UTC
  times ``2024-10-27T00:00:04Z`` (fractional seconds in newer exports); distance metres, altitude gain mm.

Values are converted to the tables' units (distance km, elevation m) by ``scale``; nothing else changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Folders an account export keeps its metric files in (the first three hold JSON, the last the CSVs).
FOLDERS = ("Global Export Data", "Physical Activity", "user-site-export", "Physical Activity_GoogleData")
JSON_NAME = re.compile(r"^(?P<stem>[a-z_]+)-(?P<date>\d{4}-\d{2}-\d{2})\.json$")
CSV_NAME = re.compile(r"^(?P<stem>[a-z_]+)_(?P<date>\d{4}-\d{2}-\d{2})\.csv$")
JSON_TIME = "%m/%d/%y %H:%M:%S"
JSON_DATE = "%m/%d/%y"
CSV_TIME = "timestamp"
CSV_SOURCE = "data source"
# An ISO instant in UTC as the CSVs write it; fractional seconds optional.
CSV_INSTANT = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$"


@dataclass(frozen=True)
class Metric:
    """One kind of file: which activity it fills and how its times and values read."""

    stem: str  # the file name before the date: heart_rate, steps, ...
    form: Literal["json", "csv"]
    activity: str
    clock: Literal["utc", "local", "date"]  # date: a daily file, one local calendar day a record
    scale: float = 1.0  # multiplies the value into the table's unit
    column: str = ""  # the CSV value column
    key: str = ""  # the JSON value's member holding the number (``bpm``), "" when the value is the number
    second: bool = False  # second-level (heart rate); minute files must lie on the minute


METRICS: tuple[Metric, ...] = (
    Metric("heart_rate", "json", "heart", "utc", key="bpm", second=True),
    Metric("resting_heart_rate", "json", "heart", "date", key="value"),
    Metric("steps", "json", "steps", "utc"),
    Metric("calories", "json", "calories", "utc"),
    Metric("distance", "json", "distance", "utc", scale=1e-5),  # cm -> km
    Metric("altitude", "json", "elevation", "local", scale=0.3048),  # ft -> m
    Metric("heart_rate", "csv", "heart", "utc", column="beats per minute", second=True),
    Metric("steps", "csv", "steps", "utc", column="steps"),
    Metric("calories", "csv", "calories", "utc", column="calories"),
    Metric("distance", "csv", "distance", "utc", scale=1e-3, column="distance"),  # m -> km
    Metric("altitude", "csv", "elevation", "utc", scale=1e-3, column="gain"),  # mm -> m
    Metric("floors", "csv", "floors", "utc", column="floors"),
)
_BY_FILE = {(m.stem, m.form): m for m in METRICS}
ACTIVITIES: tuple[str, ...] = tuple(dict.fromkeys(m.activity for m in METRICS))


def metric_of(file_name: str) -> Metric | None:
    """The metric a file name declares (``heart_rate-2024-01-01.json``), None for any other file."""
    for form, pattern in (("json", JSON_NAME), ("csv", CSV_NAME)):
        m = pattern.match(file_name)
        if m:
            return _BY_FILE.get((m["stem"], form))
    return None


def in_export(path: str) -> bool:
    """Whether a path lies in one of the folders an account export keeps its metric files in."""
    return any(part in FOLDERS for part in path.split("/")[:-1])
