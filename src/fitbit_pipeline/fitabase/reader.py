"""Read one activity of a Fitabase export (pure: CSV bytes in, one ``Parsed`` per participant-day out).

pyarrow's CSV reader with every column as text (a bad cell never fails the file); the rows are then checked
and gathered per participant and local day by :mod:`fitbit_pipeline.export_rows` (the narrow file of a measure
before the wide one: the narrow row of a minute both hold is kept). A row the CSV reader cannot split, or one
without a participant or a valid time, belongs to no participant-day and is returned apart (``unattributed``).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from .. import activities
from ..export_rows import Assembly, ExportRead, Participants, Rows, header, read_csv, times, typed
from ..limits import Limits
from . import files

_US = 1_000_000


def _intraday(raw: bytes, f: files.Intraday, ids: Participants) -> tuple[Rows, list[str]]:
    value_columns = files.minute_columns(f) if f.wide else [f.column]
    table, malformed = read_csv(raw, f"{f.name}_merged.csv", [files.PARTICIPANT, f.time, *value_columns])
    pid = table[files.PARTICIPANT].combine_chunks()
    time = table[f.time].combine_chunks()
    ts, ok = times(time, files.TIME_FORMATS)
    if not f.wide:
        texts = (pid, time, table[f.column].combine_chunks())
        return typed(f"{f.name}_merged.csv", pid, ts, ok, texts[2], texts, ids), malformed
    n = len(table)  # one row an hour: 60 rows a line, minute m at the hour plus m minutes
    values = pa.concat_arrays([table[c].combine_chunks() for c in value_columns])
    order = np.arange(60 * n).reshape(60, n).T.reshape(-1)  # line by line, minute by minute
    values = values.take(pa.array(order))
    pid = pid.take(pa.array(np.repeat(np.arange(n), 60)))
    minute = np.tile(np.arange(60, dtype=np.int64) * 60 * _US, n)
    ts = np.repeat(ts, 60) + minute
    ok = np.repeat(ok, 60)
    label = pa.array(value_columns * n)
    texts = (pid, time.take(pa.array(np.repeat(np.arange(n), 60))), label, values)
    return typed(f"{f.name}_merged.csv", pid, ts, ok, values, texts, ids), malformed


def _daily(raw: bytes, activity: str, ids: Participants) -> tuple[Rows | None, list[str]]:
    d = files.daily_of(activity)
    name = f"{files.DAILY_FILE}_merged.csv"
    if d is None:
        return None, []
    if d.optional and d.column not in header(raw, name):
        return None, []
    table, malformed = read_csv(raw, name, [files.PARTICIPANT, files.DAILY_DATE, d.column])
    pid = table[files.PARTICIPANT].combine_chunks()
    day = table[files.DAILY_DATE].combine_chunks()
    ts, ok = times(day, files.DATE_FORMATS)
    texts = (pid, day, table[d.column].combine_chunks())
    return typed(name, pid, ts, ok, texts[2], texts, ids), malformed


def parse_export(activity_name: str, parts: list[tuple[str, bytes]], run_date: dt.date, limits: Limits) -> ExportRead:
    """Read one activity's files of an export (``parts``: ``(file name, bytes)``) into participant-days.
    Raises :class:`FileRejected` when a file is unusable as a whole (the activity's delivery is rejected)."""
    a = activities.get(activity_name)
    by_measure: dict[str, list[tuple[files.Intraday, bytes]]] = {}
    daily_raw: bytes | None = None
    for file_name, raw in parts:
        name = files.MERGED.match(file_name)["name"]  # type: ignore[index]
        if name == files.DAILY_FILE:
            daily_raw = raw
        else:
            f = files.BY_NAME[name]
            by_measure.setdefault(f.measure, []).append((f, raw))
    out = Assembly(a, run_date, limits, Participants())
    for measure, forms in sorted(by_measure.items(), key=lambda item: item[0] != "value"):  # the value first
        forms.sort(key=lambda fr: fr[0].wide)  # narrow first: it wins a minute both forms hold
        read = [_intraday(raw, f, out.ids) for f, raw in forms]
        out.add_measure(measure, [r for r, _ in read], forms[0][0].second)
        for (f, _), (_, malformed) in zip(forms, read, strict=True):
            out.add_malformed(f"{f.name}_merged.csv", malformed)
    if daily_raw is not None:
        daily, malformed = _daily(daily_raw, a.name, out.ids)
        if daily is not None:
            out.add_daily(daily)
            out.add_malformed(f"{files.DAILY_FILE}_merged.csv", malformed)
    declared = files.daily_of(a.name)
    return out.result(
        has_intraday="value" in by_measure,
        has_daily=daily_raw is not None,
        daily_file=files.DAILY_FILE,
        daily_required=declared is not None and not declared.optional,
    )
