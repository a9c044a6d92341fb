"""A Fitbit account export listed as one delivery per activity, each participant-day of it a slice.

Nothing inside an account export names its person, so the participant is a segment of the path below the
source root (setting ``FITBIT_ACCOUNT_EXPORT_PARTICIPANT_SEGMENT``, default 0: the first folder, or an archive
there, ``P001/Takeout/Fitbit/Global Export Data/…`` or ``P001.zip``). A participant's files of one activity,
wherever they lie below that segment (several Takeout archives, JSON and CSV folders), are read together as
one delivery named ``<participant root>/<activity>{fitbit-account-export}``: a file covers up to a year and
its days reach into its neighbours' (UTC times, local days), so only the whole set gives whole days. As for
Fitabase, every participant-day is then its own delivery (a slice ``<bundle>#<participant>/<YYYY-MM-DD>``)
ranked by the newest file's time. Files of the export folders no table holds are listed as skipped
(``account_export_not_loaded``).
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable

from ..sources import NOT_A_DOCUMENT, SourceDoc, delivery_of, marked
from . import files

TAG = "{fitbit-account-export}"


def participant_segment() -> int:
    """The path segment naming the participant: setting ``FITBIT_ACCOUNT_EXPORT_PARTICIPANT_SEGMENT``."""
    from ..settings import Settings  # lazily: the settings import most of the package

    return Settings().fitbit_account_export_participant_segment


def _path(doc: SourceDoc, root_uri: str) -> str:
    """The document's path below the source root, through its archive."""
    if doc.member is None:
        return doc.logical_path
    archive = doc.object_path[len(root_uri) :].lstrip("/") if doc.object_path.startswith(root_uri) else ""
    return posixpath.join(archive or posixpath.basename(doc.object_path), doc.member)


def bundle(docs: Iterable[SourceDoc], root_uri: str, segment: int | None = None) -> list[SourceDoc]:
    """``docs`` with the metric files of each participant's account export made one delivery per activity,
    the other files of its folders marked skipped; everything else as it was."""
    k = participant_segment() if segment is None else segment
    root_uri = root_uri.rstrip("/")
    out: list[SourceDoc] = []
    groups: dict[tuple[str, str], list[SourceDoc]] = defaultdict(list)
    for doc in docs:
        path = _path(doc, root_uri)
        if doc.rule_id in NOT_A_DOCUMENT or not files.in_export(path):
            out.append(doc)
            continue
        metric = files.metric_of(posixpath.basename(path))
        if metric is None:
            why = "a file of the account export of a kind no table holds (sleep, zones, weight, ...)"
            out.append(marked(doc, "account_export_not_loaded", why))
            continue
        segments = path.split("/")
        if k >= len(segments) - 1:
            why = f"FITBIT_ACCOUNT_EXPORT_PARTICIPANT_SEGMENT={k}: the path has no folder or archive there"
            out.append(marked(doc, "participant_unknown", why))
            continue
        groups[("/".join(segments[: k + 1]), metric.activity)].append(doc)
    for (participant_root, activity), parts in groups.items():
        logical = f"{participant_root}/{activity}{TAG}"
        parts.sort(key=lambda d: d.source_file)
        out.append(delivery_of(parts, f"{root_uri}/{logical}", logical, None))
    return out
