"""Read one activity of one participant's Fitbit account export (pure: file bytes in, participant-days out).

JSON files go through ``orjson`` (one list comprehension per field), CSV files through pyarrow's CSV reader
with every column as text; times and numbers are then read as whole columns and the rows checked and gathered
per local day by :mod:`fitbit_pipeline.export_rows`, with the rules of the Web API. Times the export gives in
UTC keep their instant in ``ts_utc`` and get their local time from the participant's zone (the time-zone map:
the zone of the UTC day); local times (altitude JSON) get ``ts_utc`` from the zone where one is known. UTC
times without any zone for the participant cannot be put on a local day: the delivery is rejected
(``zone_unknown``), never guessed. A file holding only ``no data`` (or nothing) is listed in ``empty``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .. import activities
from ..export_rows import Assembly, ExportRead, Participants, Rows, header, read_csv, times, typed, utc_instants
from ..limits import Limits
from ..parse import FileRejected, _raw
from ..timezones import ZoneMap, convert, from_utc
from . import files

_US = 1_000_000
_DAY_US = 86_400 * _US
_EPOCH = dt.date(1970, 1, 1)
_NOT_A_NUMBER = "\x00"  # the text of a value of the wrong JSON type: fails the number check


def _number_text(v: Any) -> str:
    """A JSON value as the text the number check reads: strings as they are, numbers written out."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "" if v is None else _NOT_A_NUMBER
    return repr(v)


def _json(raw: bytes, name: str, metric: files.Metric) -> tuple[pa.Array, pa.Array]:
    """The time and value columns of a JSON file as text (what a rejected row shows); a record that is not an
    object has no time, and its JSON text as its value. The records themselves are not kept (a year of
    heart-rate records as Python objects would take gigabytes)."""
    try:
        records = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FileRejected("invalid_json", f"{name}: {exc.msg}") from None
    if not isinstance(records, list):
        raise FileRejected("wrong_structure", f"{name}: not a JSON array of records")
    when = [r.get("dateTime") if isinstance(r, dict) else None for r in records]
    values = [r.get("value") if isinstance(r, dict) else None for r in records]
    if metric.key:
        values = [v.get(metric.key) if isinstance(v, dict) else _NOT_A_NUMBER for v in values]
    text = [_number_text(v) if isinstance(r, dict) else _raw(r) for r, v in zip(records, values, strict=True)]
    return pa.array([t if isinstance(t, str) else "" for t in when], pa.string()), pa.array(text, pa.string())


def _local_days_of(utc: np.ndarray, ok: np.ndarray, participant: str, zones: ZoneMap | None, name: str) -> np.ndarray:
    """Local wall-clock times of UTC instants, each by the participant's zone of its UTC day."""
    local = utc.copy()
    days = utc // _DAY_US
    for day in np.unique(days[ok]).tolist():
        zone = zones.zone_for(participant, _EPOCH + dt.timedelta(days=day)) if zones is not None else None
        if zone is None:
            detail = (
                f"{name}: no time zone for participant {participant!r} on {_EPOCH + dt.timedelta(days=day)} "
                "(FITBIT_TIMEZONES_CSV or FITBIT_DEFAULT_TIMEZONE)"
            )
            raise FileRejected("zone_unknown", detail)
        at = ok & (days == day)
        local[at] = from_utc(utc[at], zone)
    return local


def _utc_of_local(local: np.ndarray, ok: np.ndarray, participant: str, zones: ZoneMap | None) -> np.ndarray | None:
    """UTC instants of local times by the participant's zone of each day (-1 where none); None without zones."""
    if zones is None or zones.empty:
        return None
    utc = np.full(len(local), -1, np.int64)
    days = local // _DAY_US
    for day in np.unique(days[ok]).tolist():
        at = ok & (days == day)
        converted, _ = convert(
            local[at], _EPOCH + dt.timedelta(days=day), zones.zone_for(participant, _EPOCH + dt.timedelta(days=day))
        )
        utc[at] = converted
    return utc


def _rows(
    name: str, raw: bytes, metric: files.Metric, participant: str, zones: ZoneMap | None, ids: Participants
) -> tuple[Rows, list[str]]:
    """One file's rows: local time, the instant where known, the value in the table's unit."""
    malformed: list[str] = []
    if metric.form == "json":
        time_text, value_text = _json(raw, name, metric)
        texts: tuple[pa.Array, ...] = (time_text, value_text)
        formats = (files.JSON_TIME,) if metric.clock != "date" else (files.JSON_TIME, files.JSON_DATE)
        ts, ok = times(time_text, formats)
        utc = None
        if metric.clock == "utc":
            utc, ts = ts, None
    else:
        columns = [files.CSV_TIME, metric.column]
        if files.CSV_SOURCE in header(raw, name):
            columns.append(files.CSV_SOURCE)
        read = read_csv(raw, name, columns)
        table, malformed = read.table, read.malformed
        time_text, value_text = (table[c].combine_chunks() for c in columns[:2])
        texts = tuple(table[c].combine_chunks() for c in columns)
        utc, ok = utc_instants(time_text, files.CSV_INSTANT)
    if utc is not None:
        ts = _local_days_of(utc, ok, participant, zones, name)
    else:
        utc = _utc_of_local(ts, ok, participant, zones)
    pid = pa.array(np.full(len(value_text), participant, dtype=object), pa.string())
    rows = typed(name, pid, ts, ok, value_text, texts, ids)
    rows.utc = utc
    if metric.scale != 1.0:
        rows.value = rows.value * metric.scale
    return rows, malformed


def _empty(raw: bytes) -> bool:
    text = raw.strip().lower()
    return text in (b"", b"no data", b"[]", b'"no data"')


def parse_account_export(
    activity_name: str,
    participant: str,
    parts: list[tuple[str, bytes]],
    run_date: dt.date,
    limits: Limits,
    zones: ZoneMap | None,
) -> ExportRead:
    """Read one participant's files of one activity (``parts``: ``(path, bytes)``, the file name last in the
    path). Raises :class:`FileRejected` when a file is unusable as a whole (the delivery is rejected)."""
    a = activities.get(activity_name)
    out = Assembly(a, run_date, limits, Participants())
    intraday: list[tuple[files.Metric, Rows]] = []
    daily: list[Rows] = []
    empty: list[str] = []
    ordered = sorted(parts, key=lambda p: (files.metric_of(p[0].rsplit("/", 1)[-1]).form != "json", p[0]))  # type: ignore[union-attr]
    for path, raw in ordered:
        metric = files.metric_of(path.rsplit("/", 1)[-1])
        assert metric is not None and metric.activity == a.name
        if _empty(raw):
            empty.append(path)
            continue
        rows, malformed = _rows(path, raw, metric, participant, zones, out.ids)
        out.add_malformed(path, malformed)
        if not len(rows.pid):
            empty.append(path)
        elif metric.clock == "date":
            daily.append(rows)
        else:
            intraday.append((metric, rows))
    if intraday:
        out.add_measure("value", [r for _, r in intraday], intraday[0][0].second)
    out.add_daily(*daily)
    read = out.result(bool(intraday), bool(daily), "resting_heart_rate", daily_required=False)
    read.empty = empty
    return read
