"""A Fitabase export listed as one delivery per activity, and each participant-day of it as a slice.

The ``*_merged.csv`` files of one folder (or of one folder of an archive) are one export. Per activity its
files are read together (calories: the minute calories, intensities and METs and the daily file), listed as
one :class:`~fitbit_pipeline.sources.SourceDoc` with ``parts`` named ``<folder>/<activity>{file,file}``.
Replacement is per participant-day-activity, so every participant-day the export holds is its own delivery,
a *slice* named ``<bundle>#<participant>/<YYYY-MM-DD>``: it has its own ledger row, the bundle's fingerprint,
and a rank from the export's end date (the folder name ``Fitabase Data 4.12.16-5.12.16``), so of two exports
sharing a boundary day the newer one wins the day. Files no table holds are listed as skipped
(``fitabase_not_loaded``), never silently left out. Files larger than ``files.PART_BYTES`` are read as several
deliveries (``…}~2-of-4``), each for every n-th participant (in order of first appearance), so that they run
in parallel.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from ..sources import NOT_A_DOCUMENT, SourceDoc, delivery_of, marked
from . import files

_SLICE = re.compile(r"^(?P<bundle>.+\}(?:~\d+-of-\d+)?)#(?P<participant>[^/#]+)/(?P<date>\d{4}-\d{2}-\d{2})$")
_NOT_HELD = {
    "sleep": "sleep data: no table holds it",
    "weight": "weight logs: no table holds them",
    "hourly": "hourly totals: the minute files give the same data at full resolution",
    "daily": "a daily file whose totals dailyActivity gives",
}


def export_end(folder: str) -> dt.date | None:
    """The last day of an export, from its folder name (``Fitabase Data 4.12.16-5.12.16`` -> 2016-05-12)."""
    m = files.EXPORT_RANGE.search(folder)
    if not m:
        return None
    try:
        return dt.date(2000 + int(m["y2"]), int(m["m2"]), int(m["d2"]))
    except ValueError:
        return None


def slice_id(bundle: str, participant: str, day: dt.date) -> str:
    return f"{bundle}#{participant}/{day.isoformat()}"


def container(source_file: str) -> str | None:
    """The bundle a slice id belongs to (None for any other source file)."""
    m = _SLICE.match(source_file)
    return m["bundle"] if m else None


def _name(doc: SourceDoc) -> str | None:
    m = files.MERGED.match(posixpath.basename(doc.logical_path))
    return m["name"] if m else None


def _bundle(activity: str, parts: list[SourceDoc], end: dt.date | None) -> list[SourceDoc]:
    """The activity's files as one delivery, or (larger than ``files.PART_BYTES``) as ``n`` deliveries
    ``…{files}~k-of-n``, each for every ``n``-th participant from the ``k``-th (see ``reader._Part``)."""
    parts = sorted(parts, key=lambda d: posixpath.basename(d.logical_path))
    names = ",".join(posixpath.basename(d.logical_path) for d in parts)
    first = parts[0]
    source_file = posixpath.join(posixpath.dirname(first.source_file), f"{activity}{{{names}}}")
    logical = posixpath.join(posixpath.dirname(first.logical_path), f"{activity}{{{names}}}")
    size = sum(d.size for d in parts)
    n = min(files.MAX_PARTS, max(1, -(-size // files.PART_BYTES)))
    if n == 1:
        return [delivery_of(parts, source_file, logical, end)]
    out = []
    for k in range(1, n + 1):
        part = delivery_of(parts, f"{source_file}~{k}-of-{n}", f"{logical}~{k}-of-{n}", end)
        out.append(replace(part, size=size // n))  # what one part reads of the rows: for the chunking
    return out


def _why_not(name: str) -> str:
    low = name.lower()
    kind = next((k for k in _NOT_HELD if low.startswith(k) or (k == "sleep" and "sleep" in low)), None)
    return _NOT_HELD[kind] if kind else "a Fitabase file of a kind the pipeline does not read"


def _export(docs: list[SourceDoc]) -> list[SourceDoc]:
    by_name = {_name(d): d for d in docs}
    present = set(by_name)
    folder = posixpath.dirname(docs[0].logical_path) or posixpath.basename(docs[0].archive or "")
    end = export_end(posixpath.basename(folder) or folder)
    used: set[str] = set()
    out: list[SourceDoc] = []
    for activity in files.ACTIVITIES:
        parts: list[SourceDoc] = []
        for f in files.INTRADAY:
            if f.activity == activity and f.name in present:
                parts.append(by_name[f.name])
                used.add(f.name)
        if files.daily_of(activity) and files.DAILY_FILE in present:
            parts.append(by_name[files.DAILY_FILE])
            used.add(files.DAILY_FILE)
        if parts:
            out.extend(_bundle(activity, parts, end))
    out.extend(marked(d, "fitabase_not_loaded", _why_not(name)) for name, d in by_name.items() if name not in used)
    return out


def bundle(docs: Iterable[SourceDoc]) -> list[SourceDoc]:
    """``docs`` with the ``*_merged.csv`` files of each folder (per archive) made one delivery per activity,
    and the files no table holds marked skipped; everything else as it was."""
    out: list[SourceDoc] = []
    groups: dict[tuple[str, str], list[SourceDoc]] = defaultdict(list)
    for doc in docs:
        if _name(doc) is None or doc.rule_id in NOT_A_DOCUMENT:
            out.append(doc)
        else:
            groups[(doc.archive or "", posixpath.dirname(doc.logical_path))].append(doc)
    for group in groups.values():
        out.extend(_export(group))
    return out
