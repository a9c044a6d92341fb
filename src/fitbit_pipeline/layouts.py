"""Where files come from: recognise the export layouts and read identity from paths.

A path (a loose file's path below the source root, or a zip member's name) gives the
participant, the activity and the day. Layouts are regular expressions, tried in order.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from .google_health.datatypes import FOLDER_ACTIVITY

_DATE = r"(?P<date>\d{4}-\d{2}-\d{2})"
_DETAIL = r"_1d_(?P<detail>[0-9a-z]+)"

LAYOUTS: dict[str, re.Pattern[str]] = {
    # Fitabase: the files of one activity of an export, listed together (see fitabase/bundles.py):
    # <folder>/<activity>{dailyActivity_merged.csv,minuteStepsNarrow_merged.csv}
    "fitabase": re.compile(
        r"(?:^|/)(?P<activity>[a-z]+)\{(?P<files>[A-Za-z0-9_]+_merged\.csv(?:,[A-Za-z0-9_]+_merged\.csv)*)\}"
        r"(?:~(?P<part>\d+)-of-(?P<parts>\d+))?$"
    ),
    # Fitbit account export: one participant's files of one activity, listed together (account_export/bundles.py):
    # <participant root>/<activity>{fitbit-account-export}, the participant root P001 or P001.zip
    "account-export": re.compile(
        r"(?:^|/)(?P<participant>[^/]+?)(?:\.zip)?/(?P<activity>[a-z]+)\{fitbit-account-export\}$"
    ),
    # Google Health API v4: google-health/<participant>/<data-type>/<YYYY-MM-DD>.json (one civil day); a
    # participant-day of one activity read from several data types is named {type,type,...} (see sources.py).
    "google-health": re.compile(
        rf"(?:^|/)google-health/(?P<participant>[^/]+)/(?P<datatype>[a-z0-9-]+|\{{[a-z0-9,-]+\}})/{_DATE}\.json$"
    ),
    # MyDataHelps raw "Fitbit Intraday" export members (inside a zip or extracted).
    "mydatahelps": re.compile(
        r"(?:^|/)fitbit_intraday_activities_(?P<activity>[a-z]+)/(?P<participant>[^/]+)/"
        rf"activities_(?P=activity)_date_{_DATE}{_DETAIL}\.json$"
    ),
    # CareEvolution: raw/health/YYYY/MM/DD/FITBIT/activities-<a>-intraday/<participant>/...
    "careevolution": re.compile(
        r"(?:^|/)raw/health/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/FITBIT/"
        r"activities-(?P<activity>[a-z]+)-intraday/(?P<participant>[^/]+)/"
        rf"activities_(?P=activity)_date_{_DATE}{_DETAIL}\.json$"
    ),
    # <participant>/<YYYY-MM-DD>/<activity>.json
    "by-participant-and-date": re.compile(rf"(?:^|/)(?P<participant>[^/]+)/{_DATE}/(?P<activity>[a-z]+)\.json$"),
}

# MyDataHelps archive names: RK.<export id>.<project>_<YYYYMMDD>-<YYYYMMDD>.zip
EXPORT_ARCHIVE = re.compile(r"(?:^|/)RK\.(?P<export>[^./]+)\.(?P<project>[^/]+)_(?P<start>\d{8})-(?P<end>\d{8})\.zip$")


@dataclass(frozen=True)
class PathInfo:
    layout: str
    participant_id: str
    activity: str
    date: dt.date
    data_types: tuple[str, ...] = ()  # Google Health: the data types of the document(s)
    part: tuple[int, int] = (1, 1)  # Fitabase: part k of n of an export's activity (every n-th participant)


class LayoutError(ValueError):
    """The path matches no layout, or its parts contradict each other."""


def match(path: str) -> PathInfo:
    """Identify a document from its (relative, ``/``-separated) path."""
    for name, pattern in LAYOUTS.items():
        m = pattern.search(path)
        if not m:
            continue
        if name == "fitabase":  # many participants and days: the reader tells them apart
            part = (int(m["part"]), int(m["parts"])) if m["part"] else (1, 1)
            return PathInfo(name, "", m["activity"], dt.date.min, tuple(m["files"].split(",")), part)
        if name == "account-export":  # many days: the reader tells them apart
            return PathInfo(name, m["participant"], m["activity"], dt.date.min)
        try:
            day = dt.date.fromisoformat(m["date"])
        except ValueError:
            raise LayoutError(f"'{m['date']}' in the path is not a valid date") from None
        if name == "careevolution" and (m["y"], m["m"], m["d"]) != tuple(m["date"].split("-")):
            raise LayoutError("the folder date and the file name date disagree")
        if name == "google-health":
            return _google_health(m["participant"], m["datatype"], day)
        return PathInfo(name, m["participant"], m["activity"], day)
    raise LayoutError("path matches no known layout (see README: supported layouts)")


def _google_health(participant: str, folder: str, day: dt.date) -> PathInfo:
    types = tuple(folder.strip("{}").split(","))
    unknown = [t for t in types if t not in FOLDER_ACTIVITY]
    if unknown:
        raise LayoutError(f"Google Health data type '{unknown[0]}' is not read (see README: Google Health API v4)")
    activities = {FOLDER_ACTIVITY[t] for t in types}
    if len(activities) != 1:
        raise LayoutError("the data types of one document belong to different activities")
    return PathInfo("google-health", participant, activities.pop(), day, types)


def export_end_date(archive_path: str) -> dt.date | None:
    """The end date of a MyDataHelps export, from its archive name."""
    m = EXPORT_ARCHIVE.search(archive_path)
    if not m:
        return None
    try:
        return dt.datetime.strptime(m["end"], "%Y%m%d").date()
    except ValueError:
        return None
