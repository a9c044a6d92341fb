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
from ..export_rows import Assembly, CsvRead, ExportRead, Participants, Rows, header, read_csv, typed
from ..limits import Limits
from . import files
from .clock import read_times

_US = 1_000_000


class _Part:
    """Selects the rows of part ``k`` of ``n`` of an export's activity: the participants whose place in the order
    of first appearance (over the activity's files, read in full and in the same order by every part) is
    ``k - 1`` modulo ``n``, so that the parts hold about as many participants each; rows without an id, and
    lines the reader cannot split, belong to part 1."""

    def __init__(self, ids: Participants, part: tuple[int, int]) -> None:
        self.ids, (self.k, self.n) = ids, part

    @property
    def first(self) -> bool:
        return self.k == 1

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        codes = self.ids.encode(batch.column(files.PARTICIPANT))  # codes are given in order of first appearance
        return pa.array(np.where(codes < 0, 0, codes % self.n) == self.k - 1)

    def read(self, raw: bytes, name: str, columns: list[str]) -> CsvRead:
        read = read_csv(raw, name, columns, self if self.n > 1 else None)
        if not self.first:
            read.malformed = []
        return read


def _intraday(raw: bytes, f: files.Intraday, ids: Participants, part: _Part) -> tuple[Rows, list[str]]:
    value_columns = files.minute_columns(f) if f.wide else [f.column]
    read = part.read(raw, f"{f.name}_merged.csv", [files.PARTICIPANT, f.time, *value_columns])
    table, malformed = read.table, read.malformed
    pid, time = table[files.PARTICIPANT], table[f.time]  # chunked as read: no copy
    ts, ok = read_times(time)
    if not f.wide:
        texts = (pid, time, table[f.column])
        rows = typed(f"{f.name}_merged.csv", pid, ts, ok, texts[2], texts, ids)
        rows.positions = read.rows
        return rows, malformed
    pid, time = pid.combine_chunks(), time.combine_chunks()
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
    rows = typed(f"{f.name}_merged.csv", pid, ts, ok, values, texts, ids)
    if read.rows is not None:  # line L's minute m is row 60 L + m, as when every line is read
        rows.positions = (np.repeat(read.rows, 60) * 60 + np.tile(np.arange(60), n)).astype(np.int64)
    return rows, malformed


def _daily(raw: bytes, activity: str, ids: Participants, part: _Part) -> tuple[Rows | None, list[str]]:
    d = files.daily_of(activity)
    name = f"{files.DAILY_FILE}_merged.csv"
    if d is None:
        return None, []
    if d.optional and d.column not in header(raw, name):
        return None, []
    read = part.read(raw, name, [files.PARTICIPANT, files.DAILY_DATE, d.column])
    table, malformed = read.table, read.malformed
    pid = table[files.PARTICIPANT].combine_chunks()
    day = table[files.DAILY_DATE].combine_chunks()
    ts, ok = read_times(day, date_only=True)
    texts = (pid, day, table[d.column].combine_chunks())
    rows = typed(name, pid, ts, ok, texts[2], texts, ids)
    rows.positions = read.rows
    return rows, malformed


def parse_export(
    activity_name: str,
    parts: list[tuple[str, bytes]],
    run_date: dt.date,
    limits: Limits,
    part: tuple[int, int] = (1, 1),
) -> ExportRead:
    """Read one activity's files of an export (``parts``: ``(file name, bytes)``) into participant-days; of a
    large export the participants of ``part`` (k of n) only. Raises :class:`FileRejected` when a file is
    unusable as a whole (the activity's delivery is rejected)."""
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
    mine = _Part(out.ids, part)
    for measure, forms in sorted(by_measure.items(), key=lambda item: item[0] != "value"):  # the value first
        forms.sort(key=lambda fr: fr[0].wide)  # narrow first: it wins a minute both forms hold
        read = [_intraday(raw, f, out.ids, mine) for f, raw in forms]
        out.add_measure(measure, [r for r, _ in read], forms[0][0].second)
        for (f, _), (_, malformed) in zip(forms, read, strict=True):
            out.add_malformed(f"{f.name}_merged.csv", malformed)
    if daily_raw is not None:
        daily, malformed = _daily(daily_raw, a.name, out.ids, mine)
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
