"""One delivery per participant-day-activity: the Google Health documents that make it up, read together.

The collector writes one document per participant, data type and civil day, but a participant-day of heart
rate is three data types (samples, resting heart rate, zones) and one of calories two (active and basal
energy). Replacement in the lake and the warehouse is per participant-day-activity and one delivery wins
it, so the documents of one participant-day-activity from one place (the source folder, or one archive)
are listed as one :class:`~fitbit_pipeline.sources.SourceDoc` with ``parts``. Its name lists every file,
``…/google-health/<participant>/{daily-resting-heart-rate,heart-rate}/<day>.json``; its fingerprint changes
when any part changes or a part appears, so a part that arrives late re-delivers the whole
participant-day-activity, never half of it.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from ..layouts import LAYOUTS, LayoutError, match
from ..sources import SourceDoc, delivery_of

# Google Health deliveries rank above any Fitbit Web API delivery of the same participant-day-activity:
# the archive is a frozen copy, the API the participant's current, reconciled record (see README).
PRECEDENCE_END = dt.date(9999, 12, 31)


def _key(doc: SourceDoc) -> tuple[str, str, str, str, str] | None:
    if not LAYOUTS["google-health"].search(doc.logical_path):  # one pattern first: a listing is mostly other files
        return None
    try:
        info = match(doc.logical_path)
    except LayoutError:
        return None
    if info.layout != "google-health":
        return None
    prefix = posixpath.dirname(posixpath.dirname(doc.logical_path))
    return (doc.archive or "", prefix, info.participant_id, info.activity, info.date.isoformat())


def _named(path: str, types: list[str]) -> str:
    """``…/<participant>/<type>/<day>.json`` with the type folder replaced by ``{type,type}``."""
    folder, name = posixpath.split(path)
    return posixpath.join(posixpath.dirname(folder), "{" + ",".join(types) + "}", name)


def _bundle(parts: list[SourceDoc]) -> SourceDoc:
    parts = sorted(parts, key=lambda d: posixpath.basename(posixpath.dirname(d.logical_path)))
    types = [posixpath.basename(posixpath.dirname(d.logical_path)) for d in parts]
    first = parts[0]
    if len(parts) == 1:
        source_file, logical = first.source_file, first.logical_path
    else:
        source_file, logical = _named(first.source_file, types), _named(first.logical_path, types)
    doc = delivery_of(parts, source_file, logical, PRECEDENCE_END)
    return doc if len(parts) > 1 else replace(doc, parts=())


def bundle(docs: Iterable[SourceDoc]) -> list[SourceDoc]:
    """``docs`` with the Google Health documents of each participant-day-activity (per folder or archive)
    made one delivery; everything else as it was."""
    out: list[SourceDoc] = []
    groups: dict[tuple[str, ...], list[SourceDoc]] = defaultdict(list)
    for doc in docs:
        key = _key(doc)
        if key is None:
            out.append(doc)
        else:
            groups[key].append(doc)
    out.extend(_bundle(parts) for parts in groups.values())
    return out
