"""Parse and validate one Google Health API v4 delivery (pure: documents in, the activity's columns out).

A delivery is the documents of one participant, activity and civil day (see :mod:`.bundles`), each
``{"dataPoints": [DataPoint, ...]}`` as the API lists them. What each data type gives and in which unit
is declared in :mod:`.datatypes`. Per point:

- ``ts`` is the participant's civil time (``sampleTime.civilTime``, ``interval.civilStartTime``) and
  ``ts_utc`` the physical instant (``physicalTime``, ``startTime``): both come from the data, so no time-zone
  table is needed and a DST day is never ambiguous. A civil time that disagrees with the instant plus the
  offset is ``time_invalid``; a point of another civil day than the document's is ``point_outside_day``.
- Interval types must cover one minute starting on a minute (``interval_not_minute`` otherwise): the
  tables are minute tables.
- int64 values arrive as JSON strings; the discovery document's ranges are hard bounds and the study's
  plausible ranges (``FITBIT_RANGES``) apply after the unit conversion, as for the Web API.
- Two data sources for one timestamp (a phone and a tracker): the wearable's point is kept, the other is
  counted as a duplicate (``duplicate_source``); two points of one source: ``duplicate_timestamp``.
- Calories: a minute's value is active + basal energy; a minute with basal energy only (no activity data:
  the tracker was not worn) is its basal energy, as the Web API reported it; a minute with active energy
  only is rejected (``energy_part_missing``), since its total is unknown. The active and basal points of
  one minute are one record. ``level`` and ``mets`` stay empty (the API has no per-minute equivalent).
- Heart: ``daily-resting-heart-rate`` gives ``daily_heart.resting_heart_rate``; ``daily-heart-rate-zones``
  gives ``heart_rate_zones`` (``zone_name`` LIGHT, MODERATE, VIGOROUS, PEAK; thresholds only, ``minutes`` and
  ``calories_out`` empty).
- Daily totals come only from daily roll-up documents (``{"rollupDataPoints": [...]}``, one window of the
  document's civil day; see :data:`.datatypes.ROLLUPS`), never from summing the points, and are reconciled
  against the intraday sum as for the Web API (``daily_total_mismatch``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from ..activities import Activity
from ..parse import FileContext, FileRejected, Parsed, _fits32, _has_duplicate_key, _raw, _summary_reject, _zone_problem
from ..rules import rule
from .columnar import read_columns
from .datatypes import BY_ID, ROLLUP_BY_FOLDER, DataType, RollUp
from .points import INT64, RowError, Series, civil, read_points


def _int64(value: Any) -> int:
    """An int64 of a daily record: a string of digits (the API's form) or a JSON integer."""
    if isinstance(value, str) and INT64.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise RowError("value_wrong_type")
    return value


def _points(doc: Any, key: str, where: str) -> list[Any]:
    """The points of a list response (``dataPoints``) or a daily roll-up response (``rollupDataPoints``)."""
    if not isinstance(doc, dict) or not isinstance(doc.get(key, []), list):
        raise FileRejected("wrong_structure", f"{where}: '{key}' is not a list")
    unknown = set(doc) - {key, "nextPageToken"}
    if unknown:
        raise FileRejected("wrong_structure", f"{where}: not a '{key}' response ({sorted(unknown)[0]!r})")
    if doc.get("nextPageToken"):
        raise FileRejected("wrong_structure", f"{where}: an unfinished page (nextPageToken set)")
    return doc.get(key, [])


def _load(raw: bytes, where: str, read: int) -> Any:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FileRejected("invalid_json", f"{where}: {str(exc).split(':')[0]}", read) from None
    if _has_duplicate_key(raw):
        raise FileRejected("duplicate_key", f"{where}: an object repeats a key", read)
    return doc


class _Delivery:
    """What the documents of one delivery give."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.a: Activity = ctx.activity
        self.rejects: list[dict[str, Any]] = []
        self.read = 0
        self.series: dict[str, Series] = {}  # role -> valid points
        self.resting: list[tuple[int, Any]] = []
        self.totals: list[tuple[float, Any]] = []
        self.zones: list[dict[str, Any]] = []

    def reject(self, rule_id: str, point: Any, index: int, ts: int | None = None, record: str = "intraday") -> None:
        self.rejects.append(
            {
                "record_type": record,
                "rule_id": rule_id,
                "raw_value": _raw(point),
                "message": rule(rule_id).message,
                "ts": ts,
                "row_index": index,
            }
        )

    def add_document(self, folder: str, raw: bytes) -> None:
        day = self.ctx.path_date
        assert day is not None
        where = f"{folder}/{day}.json"
        if folder in ROLLUP_BY_FOLDER:
            self.add_rollup(ROLLUP_BY_FOLDER[folder], _points(_load(raw, where, self.read), "rollupDataPoints", where))
            return
        dtype = BY_ID[folder]
        if dtype.shape == "daily":
            for i, point in enumerate(_points(_load(raw, where, self.read), "dataPoints", where)):
                self._daily(dtype, point, i, day)
            return
        bounds = self.ctx.limits.range(f"{self.a.name}.value") if dtype.role == "value" else None
        series = read_columns(raw, dtype, day, bounds)
        if series is None:  # not fully regular: the general way
            series = read_points(_points(_load(raw, where, self.read), "dataPoints", where), dtype, day, bounds)
        self.read += series.read
        for r in series.rejected:
            self.reject(r.rule_id, series.raw(r.index), r.index, r.ts)
        self.series[dtype.role] = series

    def add_rollup(self, r: RollUp, points: list[Any]) -> None:
        """Daily roll-up windows: one a day, exactly the document's civil day."""
        day = self.ctx.path_date
        assert day is not None
        for point in points:
            self.read += 1
            try:
                window = (civil(point.get("civilStartTime")), civil(point.get("civilEndTime")))
                obj = point.get(r.field)
                raw = obj.get(r.value_key) if isinstance(obj, dict) else None
            except (RowError, AttributeError):
                window, raw = None, None
            start = dt.datetime.combine(day, dt.time())
            if window != (start, start + dt.timedelta(days=1)):
                self.rejects.append(_summary_reject("point_outside_day", point, "not a roll-up of this civil day"))
                continue
            if r.value_key == "kcalSum":
                ok = isinstance(raw, int | float) and not isinstance(raw, bool) and bool(np.isfinite(raw))
                number = float(raw) if ok else -1.0
            else:
                try:
                    number = float(_int64(raw))
                except RowError:
                    number = -1.0
            if number < 0:
                self.rejects.append(_summary_reject("daily_value_invalid", point, f"'{r.field}.{r.value_key}'"))
                continue
            value = number * r.scale
            self.totals.append((int(value) if self.a.daily_kind == "int" else value, point))

    def _daily(self, dtype: DataType, point: Any, index: int, day: dt.date) -> None:
        obj = point.get(dtype.field) if isinstance(point, dict) else None
        date = obj.get("date") if isinstance(obj, dict) else None
        try:
            same_day = dt.date(date["year"], date["month"], date["day"]) == day
        except (TypeError, KeyError, ValueError):
            same_day = False
        if dtype.role == "resting":
            self.read += 1
            if not same_day:
                self.reject("point_outside_day" if obj else "missing_field", point, index, record="daily")
                return
            lo, hi = self.ctx.limits.range("heart.resting_heart_rate")
            try:
                bpm = _int64(obj.get("beatsPerMinute"))
            except RowError:
                bpm = None
            if bpm is None or not (lo <= bpm <= hi and _fits32(bpm)):
                self.rejects.append(_summary_reject("resting_hr_out_of_range", point, f"expected {lo:g}-{hi:g} bpm"))
            else:
                self.resting.append((bpm, point))
            return
        zones = obj.get("heartRateZones") if isinstance(obj, dict) else None
        if not same_day or not isinstance(zones, list):
            self.read += 1
            self.rejects.append(_summary_reject("zone_invalid", point, "not a zones record of this day"))
            return
        minutes = self.ctx.limits.range("heart.zone_minutes")
        for z in zones:
            self.read += 1
            try:
                web = {
                    "name": z["heartRateZoneType"],
                    "min": _int64(z["minBeatsPerMinute"]),
                    "max": _int64(z["maxBeatsPerMinute"]),
                }
            except (TypeError, KeyError, RowError):
                web = None
            problem = "malformed zone" if web is None else _zone_problem(web, minutes)
            if (
                web
                and problem is None
                and any(web["min"] < k["max_bpm"] and web["max"] > k["min_bpm"] for k in self.zones)
            ):
                problem = "overlaps another zone"
            if problem or web is None:
                self.rejects.append(_summary_reject("zone_invalid", z, problem or "malformed zone"))
                continue
            self.zones.append(
                {
                    "zone_type": "standard",
                    "zone_name": web["name"],
                    "min_bpm": web["min"],
                    "max_bpm": web["max"],
                    "minutes": None,
                    "calories_out": None,
                }
            )

    def unique(self, role: str) -> tuple[Series | None, np.ndarray, int]:
        """The positions in the role's series of one point per instant (wearable first, then the first listed),
        sorted by instant, and how many points were duplicates. The instant, not the civil time, is the key:
        the hour a DST change repeats holds distinct points."""
        s = self.series.get(role)
        if s is None or not len(s.utc):
            return s, np.zeros(0, np.int64), 0
        order = np.lexsort((s.index, s.rank, s.utc))
        utc = s.utc[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = utc[1:] != utc[:-1]
        winner = order[first][np.cumsum(first) - 1]  # the kept point of each point's instant
        for pos, win in zip(order[~first], winner[~first], strict=True):
            same = s.labels[s.source[pos]] == s.labels[s.source[win]]
            rule_id = "duplicate_timestamp" if same else "duplicate_source"
            self.reject(rule_id, s.raw(int(s.index[pos])), int(s.index[pos]), int(s.ts[pos]))
        return s, order[first], int((~first).sum())


def parse_delivery(parts: Sequence[tuple[str, bytes]], ctx: FileContext) -> Parsed:
    """Parse the documents ``(folder, bytes)`` of one participant-day-activity (a folder is a data type or
    a data type's daily roll-up). Raises :class:`FileRejected` when a document is unusable as a whole (then
    the delivery is rejected whole)."""
    if ctx.path_date is None:
        raise FileRejected("date_invalid", "no civil day in the path")
    if ctx.path_date > ctx.run_date:
        raise FileRejected("date_in_future", f"{ctx.path_date} is after the run date {ctx.run_date}")
    d = _Delivery(ctx)
    for folder, raw in parts:
        d.add_document(folder, raw)
    return _assemble(d)


def _rows(d: _Delivery) -> tuple[dict[str, np.ndarray], list[str], int, int]:
    """The intraday rows (ts, utc, value, source) sorted by civil time then instant, their source labels, the
    duplicates, and how many active/basal pairs became one row."""
    s, kept, duplicates = d.unique("value")
    labels = list(s.labels) if s is not None else []
    rows = {
        "ts": s.ts[kept] if s is not None else np.zeros(0, np.int64),
        "utc": s.utc[kept] if s is not None else np.zeros(0, np.int64),
        "value": s.value[kept] if s is not None else np.zeros(0),
        "source": s.source[kept] if s is not None else np.zeros(0, np.int32),
    }
    merged = 0
    if d.a.name == "calories":
        b, bkept, more = d.unique("basal")
        duplicates += more
        b_utc = b.utc[bkept] if b is not None else np.zeros(0, np.int64)
        both, ia, ib = np.intersect1d(rows["utc"], b_utc, assume_unique=True, return_indices=True)
        merged = len(both)
        alone = np.ones(len(rows["utc"]), dtype=bool)
        alone[ia] = False
        for pos in np.nonzero(alone)[0]:  # active energy without basal: the minute's total is unknown
            i = int(s.index[kept[pos]])
            d.reject("energy_part_missing", s.raw(i), i, int(rows["ts"][pos]))
        rows["value"] = rows["value"].copy()
        rows["value"][ia] += b.value[bkept][ib] if b is not None else 0
        only = np.ones(len(b_utc), dtype=bool)
        only[ib] = False
        if b is not None:
            offset = len(labels)
            labels += b.labels
            extra = {"ts": b.ts, "utc": b.utc, "value": b.value, "source": b.source + offset}
            keep = ~alone
            rows = {k: np.concatenate([rows[k][keep], v[bkept][only]]) for k, v in extra.items()}
        else:
            rows = {k: v[~alone] for k, v in rows.items()}
    order = np.lexsort((rows["utc"], rows["ts"]))
    return {k: v[order] for k, v in rows.items()}, labels, duplicates, merged


def _assemble(d: _Delivery) -> Parsed:
    rows, labels, duplicates, merged = _rows(d)
    n = len(rows["ts"])
    measures = {m.name: np.full(n, np.nan) for m in d.a.measures}
    measures["value"] = rows["value"].astype(np.float64)
    daily: dict[str, Any] | None = None
    findings: list[tuple[str, str]] = []
    key, records = ("resting_heart_rate", d.resting) if d.a.daily == "heart" else ("value", d.totals)
    if len(records) == 1:
        daily = {key: records[0][0]}
    else:  # several records of one day: which one is right is unknown, none is kept
        for _, point in records:
            d.rejects.append(_summary_reject("daily_record_repeated", point, "several daily records for the day"))
    if daily is not None and key == "value" and n:
        tolerance = d.ctx.limits.tolerance(d.a.name)
        if abs(float(measures["value"].sum()) - daily["value"]) > tolerance + 1e-9:
            findings.append(("daily_total_mismatch", f"daily total and intraday sum differ by more than {tolerance:g}"))
    counts = np.bincount(rows["source"], minlength=len(labels)) if n else np.zeros(len(labels), np.int64)
    per_label: dict[str, int] = {}
    for label, count in zip(labels, counts.tolist(), strict=True):
        if count:
            per_label[label] = per_label.get(label, 0) + count
    assert d.ctx.path_date is not None
    return Parsed(
        date=d.ctx.path_date,
        dataset_type="second" if d.a.name == "heart" else "minute",
        dataset_interval=1,
        ts=rows["ts"].astype(np.int64),
        measures=measures,
        daily=daily,
        zones=d.zones,
        rejects=d.rejects,
        findings=findings,
        rows_read=d.read - merged,
        rows_rejected=len(d.rejects) - duplicates,
        rows_duplicate=duplicates,
        ts_utc=rows["utc"].astype(np.int64),
        sources="; ".join(f"{label}: {n}" for label, n in sorted(per_label.items())) or None,
    )
