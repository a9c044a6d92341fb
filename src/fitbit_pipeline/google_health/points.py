"""The points of one Google Health list document, checked one by one (the general way).

Checks run in one order and the first failure names the point's rule (:data:`CHECKS`); the columnar
reader (:mod:`.columnar`) applies the same checks to whole columns and must give the same result. Scalar
fields follow proto3 JSON: an omitted or null number is 0 (a true zero of steps may come without
``count``), and an int64 may be given as a string of digits (the API's form) or as a JSON integer.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .datatypes import DataType

_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)
INT64 = re.compile(r"-?(?:0|[1-9][0-9]{0,18})")
_DURATION = re.compile(r"(-?[0-9]{1,12})(?:\.([0-9]{1,9}))?s")
LATER_FORMS = ("PHONE", "TABLET", "SMART_DISPLAY", "HEAD_MOUNTED")  # a wearable's point wins over these
# The rules of a point, in the order they are checked.
CHECKS = (
    "missing_field",
    "time_invalid",
    "interval_not_minute",
    "point_outside_day",
    "value_wrong_type",
    "value_out_of_range",
)


class RowError(Exception):
    def __init__(self, rule_id: str, ts: int | None = None) -> None:
        self.rule_id = rule_id
        self.ts = ts


@dataclass
class Rejected:
    rule_id: str
    index: int  # position of the point in its document
    ts: int | None  # civil time (microseconds), when it was read


@dataclass
class Series:
    """The valid points of one data type, as columns; ``raw(i)`` gives back the point at document position i."""

    ts: np.ndarray  # int64 civil time, microseconds since the epoch
    utc: np.ndarray  # int64 physical instant, microseconds since the epoch
    value: np.ndarray  # float64, in the table's unit
    rank: np.ndarray  # int8: 0 a wearable (or unknown), 1 a phone or other non-wearable
    source: np.ndarray  # int32 codes into ``labels``
    index: np.ndarray  # int64 document positions
    labels: list[str]
    raw: Any  # Callable[[int], Any]
    rejected: list[Rejected] = field(default_factory=list)
    read: int = 0


def source_label(source: Any) -> tuple[int, str]:
    """(rank, label) of a point's ``dataSource``: platform/form factor/device name (no values)."""
    source = source if isinstance(source, dict) else {}
    device = source.get("device") if isinstance(source.get("device"), dict) else {}
    form = str(device.get("formFactor") or "FORM_FACTOR_UNSPECIFIED")
    label = "/".join(str(x) for x in (source.get("platform"), form, device.get("displayName")) if x)
    return (1 if form in LATER_FORMS else 0), label


def _int(value: Any) -> int:
    """A proto3 int32 field: omitted or null is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError("time_invalid")
    return value


def civil(value: Any) -> dt.datetime:
    """A ``CivilDateTime``: ``{date{year,month,day}, time{hours,minutes,seconds,nanos}}``."""
    if not isinstance(value, dict) or not isinstance(value.get("date"), dict):
        raise RowError("missing_field")
    d = value["date"]
    t = value.get("time") if isinstance(value.get("time"), dict) else {}
    if value.get("time") is not None and not isinstance(value.get("time"), dict):
        raise RowError("time_invalid")
    parts = [_int(d.get(k)) for k in ("year", "month", "day")] + [
        _int(t.get(k)) for k in ("hours", "minutes", "seconds")
    ]
    nanos = _int(t.get("nanos"))
    if not 0 <= nanos < 10**9:
        raise RowError("time_invalid")
    try:
        return dt.datetime(*parts, nanos // 1000)
    except (ValueError, OverflowError):
        raise RowError("time_invalid") from None


def instant(value: Any) -> dt.datetime:
    """A ``google-datetime`` (RFC 3339, with a zone) as naive UTC."""
    if value is None:
        raise RowError("missing_field")
    if not isinstance(value, str):
        raise RowError("time_invalid")
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise RowError("time_invalid") from None
    if t.tzinfo is None:
        raise RowError("time_invalid")
    return t.astimezone(dt.UTC).replace(tzinfo=None)


def offset(value: Any) -> dt.timedelta:
    """A ``google-duration`` such as ``"-18000s"``."""
    if value is None:
        raise RowError("missing_field")
    m = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise RowError("time_invalid")
    sign = -1 if m[1].startswith("-") else 1
    return dt.timedelta(microseconds=sign * (abs(int(m[1])) * 1_000_000 + int((m[2] or "0").ljust(6, "0")[:6])))


def us(t: dt.datetime) -> int:
    return (t - _EPOCH) // _US


def number(dtype: DataType, raw: Any) -> float:
    """The value in the API's unit: int64 (a string of digits, or a JSON integer) or a finite double."""
    if raw is None:
        return 0.0
    if isinstance(raw, bool):
        raise RowError("value_wrong_type")
    if dtype.value_key == "kcal":
        if not isinstance(raw, int | float) or not np.isfinite(raw):
            raise RowError("value_wrong_type")
        return float(raw)
    if isinstance(raw, str) and INT64.fullmatch(raw):
        raw = int(raw)
    if not isinstance(raw, int) or not -(2**63) <= raw < 2**63:
        raise RowError("value_wrong_type")
    return float(raw)


def times(dtype: DataType, obj: dict[str, Any], day: dt.date) -> tuple[int, int]:
    """(civil, utc) microseconds of a sample's time or an interval's start, checked in the order of CHECKS."""
    holder = obj.get("sampleTime" if dtype.shape == "sample" else "interval")
    if not isinstance(holder, dict):
        raise RowError("missing_field")
    if dtype.shape == "sample":
        local = civil(holder.get("civilTime"))
        utc = instant(holder.get("physicalTime"))
        shift = holder.get("utcOffset")
    else:
        local = civil(holder.get("civilStartTime"))
        utc = instant(holder.get("startTime"))
        end = instant(holder.get("endTime"))
        if end - utc != dt.timedelta(minutes=1) or local.second or local.microsecond:
            raise RowError("interval_not_minute", us(local))
        shift = holder.get("startUtcOffset")
    if utc + offset(shift) != local:
        raise RowError("time_invalid")
    if local.date() != day:
        raise RowError("point_outside_day", us(local))
    return us(local), us(utc)


def read_points(points: list[Any], dtype: DataType, day: dt.date, bounds: tuple[float, float] | None) -> Series:
    """Check every point; the valid ones as columns, the others as :class:`Rejected`. ``bounds``: the study's
    plausible range (in the table's unit) of this data type's values, or None."""
    cols: dict[str, list[Any]] = {k: [] for k in ("ts", "utc", "value", "rank", "source", "index")}
    labels: dict[str, int] = {}
    rejected: list[Rejected] = []
    for i, point in enumerate(points):
        ts = None
        try:
            obj = point.get(dtype.field) if isinstance(point, dict) else None
            if not isinstance(obj, dict):
                raise RowError("missing_field")
            ts, utc = times(dtype, obj, day)
            value = number(dtype, obj.get(dtype.value_key))
            if dtype.hard_range and not dtype.hard_range[0] <= value <= dtype.hard_range[1]:
                raise RowError("value_out_of_range", ts)
            value *= dtype.scale
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                raise RowError("value_out_of_range", ts)
        except RowError as exc:
            rejected.append(Rejected(exc.rule_id, i, exc.ts if exc.ts is not None else ts))
            continue
        rank, label = source_label(point.get("dataSource"))
        for k, v in zip(cols, (ts, utc, value, rank, labels.setdefault(label, len(labels)), i), strict=True):
            cols[k].append(v)
    return Series(
        ts=np.array(cols["ts"], np.int64),
        utc=np.array(cols["utc"], np.int64),
        value=np.array(cols["value"], np.float64),
        rank=np.array(cols["rank"], np.int8),
        source=np.array(cols["source"], np.int32),
        index=np.array(cols["index"], np.int64),
        labels=list(labels),
        raw=points.__getitem__,
        rejected=rejected,
        read=len(points),
    )
