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
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..activities import Activity
from ..parse import FileContext, FileRejected, Parsed, _fits32, _has_duplicate_key, _raw, _summary_reject, _zone_problem
from ..rules import rule
from .datatypes import BY_ID, ROLLUP_BY_FOLDER, DataType, RollUp

_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)
_INT64 = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
_DURATION = re.compile(r"(-?[0-9]{1,6})(?:\.([0-9]{1,9}))?s")
_WEARABLE_LAST = ("PHONE", "TABLET", "SMART_DISPLAY", "HEAD_MOUNTED")  # ranked below a wearable's point


class _RowError(Exception):
    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id


@dataclass
class _Point:
    ts: int  # civil time, microseconds since the epoch
    utc: int
    value: float
    rank: int  # lower wins a timestamp
    source: str
    index: int
    raw: Any


def _civil(value: Any) -> dt.datetime:
    """A ``CivilDateTime`` ({date{year,month,day}, time{hours,minutes,seconds,nanos}})."""
    if not isinstance(value, dict) or not isinstance(value.get("date"), dict):
        raise _RowError("missing_field")
    d, t = value["date"], value.get("time") or {}
    try:
        fields = [d["year"], d["month"], d["day"], t.get("hours", 0), t.get("minutes", 0), t.get("seconds", 0)]
        nanos = t.get("nanos", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (*fields, nanos)) or not 0 <= nanos < 10**9:
            raise _RowError("time_invalid")
        return dt.datetime(*fields, nanos // 1000)
    except (KeyError, TypeError):
        raise _RowError("missing_field") from None
    except ValueError:
        raise _RowError("time_invalid") from None


def _instant(value: Any) -> dt.datetime:
    """A ``google-datetime`` (RFC 3339) as naive UTC."""
    if not isinstance(value, str):
        raise _RowError("missing_field")
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _RowError("time_invalid") from None
    if t.tzinfo is None:
        raise _RowError("time_invalid")
    return t.astimezone(dt.UTC).replace(tzinfo=None)


def _offset(value: Any) -> dt.timedelta:
    """A ``google-duration`` such as ``"-18000s"``."""
    m = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _RowError("missing_field" if value is None else "time_invalid")
    sign = -1 if m[1].startswith("-") else 1
    return dt.timedelta(microseconds=sign * (abs(int(m[1])) * 1_000_000 + int((m[2] or "0").ljust(6, "0")[:6])))


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // _US


def _times(dtype: DataType, obj: dict[str, Any], day: dt.date) -> tuple[int, int]:
    """(civil, utc) microseconds of a sample's time or an interval's start."""
    if dtype.shape == "sample":
        holder = obj.get("sampleTime")
        if not isinstance(holder, dict):
            raise _RowError("missing_field")
        civil, utc, offset = (
            _civil(holder.get("civilTime")),
            _instant(holder.get("physicalTime")),
            holder.get("utcOffset"),
        )
    else:
        holder = obj.get("interval")
        if not isinstance(holder, dict):
            raise _RowError("missing_field")
        civil, utc = _civil(holder.get("civilStartTime")), _instant(holder.get("startTime"))
        offset = holder.get("startUtcOffset")
        end = _instant(holder.get("endTime"))
        if end - utc != dt.timedelta(minutes=1) or civil.second or civil.microsecond:
            raise _RowError("interval_not_minute")
    if utc + _offset(offset) != civil:
        raise _RowError("time_invalid")
    if civil.date() != day:
        raise _RowError("point_outside_day")
    return _us(civil), _us(utc)


def _int64(value: Any) -> int:
    if isinstance(value, str) and _INT64.fullmatch(value):
        number = int(value)
        if -(2**63) <= number < 2**63:
            return number
    raise _RowError("value_wrong_type")


def _value(dtype: DataType, obj: dict[str, Any]) -> float:
    assert dtype.value_key is not None
    raw = obj.get(dtype.value_key)
    if raw is None:
        raise _RowError("missing_field")
    if dtype.value_key == "kcal":  # a JSON double
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not np.isfinite(raw):
            raise _RowError("value_wrong_type")
        number = float(raw)
    else:
        number = float(_int64(raw))
    if dtype.hard_range and not dtype.hard_range[0] <= number <= dtype.hard_range[1]:
        raise _RowError("value_out_of_range")
    return number * dtype.scale


def _source(point: dict[str, Any]) -> tuple[int, str]:
    """(rank, label) of a point's data source: wearables before phones; the label names no value."""
    source = point.get("dataSource") if isinstance(point.get("dataSource"), dict) else {}
    device = source.get("device") if isinstance(source.get("device"), dict) else {}
    form = str(device.get("formFactor") or "FORM_FACTOR_UNSPECIFIED")
    label = "/".join(str(x) for x in (source.get("platform"), form, device.get("displayName")) if x)
    return (1 if form in _WEARABLE_LAST else 0), label


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


class _Delivery:
    """What the documents of one delivery give, checked point by point."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.a: Activity = ctx.activity
        self.rejects: list[dict[str, Any]] = []
        self.read = 0
        self.series: dict[str, list[_Point]] = {}  # role -> points
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

    def add(self, dtype: DataType, points: list[Any]) -> None:
        day = self.ctx.path_date
        assert day is not None
        if dtype.shape == "daily":
            for i, point in enumerate(points):
                self._daily(dtype, point, i, day)
            return
        lo, hi = self.ctx.limits.range(f"{self.a.name}.value")
        series = self.series.setdefault(dtype.role, [])
        for i, point in enumerate(points):
            self.read += 1
            ts = None
            try:
                obj = point.get(dtype.field) if isinstance(point, dict) else None
                if not isinstance(obj, dict):
                    raise _RowError("missing_field")
                ts, utc = _times(dtype, obj, day)
                value = _value(dtype, obj)
                if dtype.role == "value" and not lo <= value <= hi:
                    raise _RowError("value_out_of_range")
            except _RowError as exc:
                self.reject(exc.rule_id, point, i, ts if exc.rule_id not in ("missing_field", "time_invalid") else None)
                continue
            rank, label = _source(point)
            series.append(_Point(ts, utc, value, rank, label, i, point))

    def add_rollup(self, r: RollUp, points: list[Any]) -> None:
        """Daily roll-up windows: one a day, exactly the document's civil day."""
        day = self.ctx.path_date
        assert day is not None
        for point in points:
            self.read += 1
            try:
                window = (_civil(point.get("civilStartTime")), _civil(point.get("civilEndTime")))
                obj = point.get(r.field)
                raw = obj.get(r.value_key) if isinstance(obj, dict) else None
            except (_RowError, AttributeError):
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
                except _RowError:
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
            except _RowError:
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
            except (TypeError, KeyError, _RowError):
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

    def unique(self, role: str) -> tuple[dict[int, _Point], int]:
        """One point per instant (wearable first, then the first listed), and how many were duplicates. The
        instant, not the civil time, is the key: the hour a DST change repeats holds distinct points."""
        kept: dict[int, _Point] = {}
        duplicates = 0
        for p in sorted(self.series.get(role, []), key=lambda p: (p.utc, p.rank, p.index)):
            first = kept.get(p.utc)
            if first is None:
                kept[p.utc] = p
                continue
            duplicates += 1
            rule_id = "duplicate_source" if first.source != p.source else "duplicate_timestamp"
            self.reject(rule_id, p.raw, p.index, p.ts)
        return kept, duplicates


def parse_delivery(parts: Sequence[tuple[str, bytes]], ctx: FileContext) -> Parsed:
    """Parse the documents ``(data type, bytes)`` of one participant-day-activity. Raises
    :class:`FileRejected` when a document is unusable as a whole (then the delivery is rejected whole)."""
    if ctx.path_date is None:
        raise FileRejected("date_invalid", "no civil day in the path")
    if ctx.path_date > ctx.run_date:
        raise FileRejected("date_in_future", f"{ctx.path_date} is after the run date {ctx.run_date}")
    d = _Delivery(ctx)
    for folder, raw in parts:
        where = f"{folder}/{ctx.path_date}.json"
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise FileRejected("invalid_json", f"{where}: {str(exc).split(':')[0]}", d.read) from None
        if _has_duplicate_key(raw):
            raise FileRejected("duplicate_key", f"{where}: an object repeats a key", d.read)
        if folder in ROLLUP_BY_FOLDER:
            d.add_rollup(ROLLUP_BY_FOLDER[folder], _points(doc, "rollupDataPoints", where))
        else:
            d.add(BY_ID[folder], _points(doc, "dataPoints", where))
    return _assemble(d)


def _assemble(d: _Delivery) -> Parsed:
    value, duplicates = d.unique("value")
    merged = 0
    if d.a.name == "calories":
        basal, more = d.unique("basal")
        duplicates += more
        for utc, active in list(value.items()):
            if utc in basal:
                active.value += basal[utc].value
                merged += 1
            else:  # the total of this minute is unknown
                d.reject("energy_part_missing", active.raw, active.index, active.ts)
                del value[utc]
        value.update({utc: p for utc, p in basal.items() if utc not in value})
    rows = sorted(value.values(), key=lambda p: (p.ts, p.utc))
    ts = np.fromiter((p.ts for p in rows), np.int64, len(rows))
    measures = {m.name: np.full(len(rows), np.nan) for m in d.a.measures}
    measures["value"] = np.fromiter((p.value for p in rows), np.float64, len(rows))
    daily: dict[str, Any] | None = None
    findings: list[tuple[str, str]] = []
    key, records = ("resting_heart_rate", d.resting) if d.a.daily == "heart" else ("value", d.totals)
    if len(records) == 1:
        daily = {key: records[0][0]}
    else:  # several records of one day: which one is right is unknown, none is kept
        for _, point in records:
            d.rejects.append(_summary_reject("daily_record_repeated", point, "several daily records for the day"))
    if daily is not None and key == "value" and rows:
        tolerance = d.ctx.limits.tolerance(d.a.name)
        if abs(float(measures["value"].sum()) - daily["value"]) > tolerance + 1e-9:
            findings.append(("daily_total_mismatch", f"daily total and intraday sum differ by more than {tolerance:g}"))
    assert d.ctx.path_date is not None
    return Parsed(
        date=d.ctx.path_date,
        dataset_type="second" if d.a.name == "heart" else "minute",
        dataset_interval=1,
        ts=ts,
        measures=measures,
        daily=daily,
        zones=d.zones,
        rejects=d.rejects,
        findings=findings,
        rows_read=d.read - merged,
        rows_rejected=len(d.rejects) - duplicates,
        rows_duplicate=duplicates,
        ts_utc=np.fromiter((p.utc for p in rows), np.int64, len(rows)),
        sources="; ".join(f"{label}: {n}" for label, n in sorted(Counter(p.source for p in rows).items())) or None,
    )
