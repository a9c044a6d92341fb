"""The Fitabase export files read, declared once: which activity and column each gives, and in what form.

A Fitabase export is a folder (``Fitabase Data 4.12.16-5.12.16/``, or a zip of it) of ``<name>_merged.csv``
files, each holding every participant of the export (``Id``) for one kind of data. Conventions, with their
sources, are in docs/fitabase.md:

- times are the participant's local time without a zone, ``4/12/2016 7:21:00 AM`` (month/day/year, 12-hour
  clock); daily files give the day as ``4/12/2016``;
- ``Intensity`` is 0 sedentary, 1 light, 2 moderate, 3 very active: the Web API's calories ``level``;
- ``METs`` are stored multiplied by 10, as the Web API delivers ``mets``: stored as they are;
- ``Calories`` are kcal (per minute in minute files, per day in ``dailyActivity``); ``TotalDistance`` is km;
- ``heartrate_seconds`` holds beats per minute at irregular instants (every 5 to 15 seconds while worn).

A minute file comes narrow (one row a minute: ``Id,ActivityMinute,Steps``) or wide (one row an hour,
``Id,ActivityHour,Steps00,…,Steps59``). The two forms of one export do not cover the same hours (the public
4.12.16-5.12.16 export: wide 4/13 to 5/13, narrow 4/12 to 5/12), so both are read: the narrow row of a minute
is kept and the wide one counted as its duplicate. Files of a kind the tables do not hold (sleep, weight,
hourly totals, the daily files ``dailyActivity`` covers) are listed as skipped (``fitabase_not_loaded``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MERGED = re.compile(r"^(?P<name>[A-Za-z0-9_]+?)_merged\.csv$")
# The folder Fitabase names an export after its date range (month.day.two-digit-year), e.g. 4.12.16-5.12.16.
EXPORT_RANGE = re.compile(
    r"(?P<m1>\d{1,2})\.(?P<d1>\d{1,2})\.(?P<y1>\d{2})-(?P<m2>\d{1,2})\.(?P<d2>\d{1,2})\.(?P<y2>\d{2})(?!\d)"
)

# Times: M/D/YYYY h:mm:ss AM (the 12-hour form; a 24-hour form seen too); dates M/D/YYYY: see clock.py.
PARTICIPANT = "Id"
# An activity's files larger than this are read as several deliveries, each for every n-th participant (in
# order of first appearance): the parts run in parallel and each holds only its participants' rows.
PART_BYTES = 128 << 20
MAX_PARTS = 8


@dataclass(frozen=True)
class Intraday:
    """A minute or second file: one measure of one activity."""

    name: str  # the file's name without ``_merged.csv``
    activity: str
    measure: str  # the intraday column it fills: value, level, mets
    time: str  # the time column
    column: str  # the value column (narrow), or the prefix of the 60 minute columns (wide)
    wide: bool = False
    second: bool = False  # second-level (heart rate); minute files must lie on the minute


@dataclass(frozen=True)
class Daily:
    """A column of the daily file that gives an activity's daily total."""

    activity: str
    column: str
    optional: bool = False  # a column of newer exports only (Floors, RestingHeartRate)


INTRADAY: tuple[Intraday, ...] = (
    Intraday("heartrate_seconds", "heart", "value", "Time", "Value", second=True),
    Intraday("minuteStepsNarrow", "steps", "value", "ActivityMinute", "Steps"),
    Intraday("minuteStepsWide", "steps", "value", "ActivityHour", "Steps", wide=True),
    Intraday("minuteCaloriesNarrow", "calories", "value", "ActivityMinute", "Calories"),
    Intraday("minuteCaloriesWide", "calories", "value", "ActivityHour", "Calories", wide=True),
    Intraday("minuteIntensitiesNarrow", "calories", "level", "ActivityMinute", "Intensity"),
    Intraday("minuteIntensitiesWide", "calories", "level", "ActivityHour", "Intensity", wide=True),
    Intraday("minuteMETsNarrow", "calories", "mets", "ActivityMinute", "METs"),
)
DAILY_FILE = "dailyActivity"
DAILY_DATE = "ActivityDate"
DAILY: tuple[Daily, ...] = (
    Daily("steps", "TotalSteps"),
    Daily("distance", "TotalDistance"),
    Daily("calories", "Calories"),
    Daily("floors", "Floors", optional=True),
    Daily("heart", "RestingHeartRate", optional=True),
)

BY_NAME: dict[str, Intraday] = {f.name: f for f in INTRADAY}
ACTIVITIES: tuple[str, ...] = tuple(dict.fromkeys([*(f.activity for f in INTRADAY), *(d.activity for d in DAILY)]))


def daily_of(activity: str) -> Daily | None:
    return next((d for d in DAILY if d.activity == activity), None)


def minute_columns(f: Intraday) -> list[str]:
    """The 60 value columns of a wide file (``Steps00`` … ``Steps59``)."""
    return [f"{f.column}{m:02d}" for m in range(60)]
