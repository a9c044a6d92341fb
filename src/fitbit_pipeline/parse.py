"""Parse and validate one Fitbit Web API intraday response (pure: bytes in, columns out).

The hot path is columnar: one ``orjson`` parse, one list comprehension per field, then
numpy for time parsing, range checks, grid checks and duplicates. Rows that break a rule
are not dropped: they come back as reject records with the rule id and the raw row.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .activities import Activity, Measure
from .limits import DEFAULT_LIMITS, Limits
from .rules import rule

_EPOCH = dt.date(1970, 1, 1)
_MISSING = object()
# Row rule codes, in the order they are checked (first failure wins).
_ROW_RULES = (
    "",
    "missing_field",
    "time_invalid",
    "value_wrong_type",
    "value_out_of_range",
    "time_off_grid",
    "duplicate_timestamp",
)
_CODE = {r: i for i, r in enumerate(_ROW_RULES)}
_RAW_LIMIT = 500


@dataclass(frozen=True)
class FileContext:
    """What is known about a document before it is opened (from its path)."""

    source_file: str
    participant_id: str
    activity: Activity
    path_date: dt.date | None
    run_date: dt.date
    limits: Limits = DEFAULT_LIMITS


class FileRejected(Exception):
    """The whole document is rejected; ``rule_id`` names the rule."""

    def __init__(self, rule_id: str, detail: str, rows_read: int = 0) -> None:
        super().__init__(f"{rule(rule_id).message}: {detail}")
        self.rule_id = rule_id
        self.detail = detail
        self.rows_read = rows_read


@dataclass
class Parsed:
    """Validated content of one document."""

    date: dt.date
    dataset_type: str | None
    dataset_interval: int | None
    ts: np.ndarray  # int64 microseconds since epoch, local time
    measures: dict[str, np.ndarray]
    daily: dict[str, Any] | None  # {"value": ...} or {"resting_heart_rate": ...}
    zones: list[dict[str, Any]]
    rejects: list[dict[str, Any]] = field(default_factory=list)
    findings: list[tuple[str, str]] = field(default_factory=list)  # (rule_id, message)
    rows_read: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0

    @property
    def rows_valid(self) -> int:
        return len(self.ts) + (self.daily is not None) + len(self.zones)


def _raw(obj: Any) -> str:
    try:
        text = orjson.dumps(obj).decode()
    except TypeError:
        text = repr(obj)
    return text if len(text) <= _RAW_LIMIT else text[:_RAW_LIMIT] + "…"


def _date(value: Any) -> dt.date | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    """A JSON number, or a number given as a string (as the API does for daily totals)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        f = float(value)
    elif isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _extract(rows: list[Any], key: str) -> list[Any]:
    try:
        return [r[key] for r in rows]
    except (KeyError, TypeError, IndexError):
        return [r.get(key, _MISSING) if isinstance(r, dict) else _MISSING for r in rows]


def _set(codes: np.ndarray, mask: np.ndarray, code: str) -> None:
    """Mark rows failing a rule, unless an earlier rule already failed them."""
    codes[mask & (codes == 0)] = _CODE[code]


def _seconds(times: list[Any], codes: np.ndarray) -> np.ndarray:
    """Seconds of the day from ``HH:MM:SS`` strings; invalid ones are marked."""
    n = len(times)
    secs = np.zeros(n, dtype=np.int64)
    try:
        arr = pa.array(times, type=pa.string())
        ok_type = np.ones(n, dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        ok_type = np.fromiter((isinstance(t, str) for t in times), dtype=bool, count=n)
        _set(codes, ~ok_type & np.fromiter((t is _MISSING for t in times), bool, n), "missing_field")
        arr = pa.array([t if isinstance(t, str) else "" for t in times], type=pa.string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    lengths = np.diff(offsets)
    good_len = ok_type & (lengths == 8)
    if good_len.all():
        chars = np.frombuffer(arr.buffers()[2], dtype=np.uint8, count=8 * n, offset=int(offsets[0]))
        chars = chars.reshape(n, 8)
    else:
        chars = np.zeros((n, 8), dtype=np.uint8)
        for i in np.nonzero(good_len)[0]:
            chars[i] = np.frombuffer(times[i].encode("latin-1", "replace")[:8].ljust(8), dtype=np.uint8)
    d = chars.astype(np.int64) - 48
    digits = np.delete(d, [2, 5], axis=1)
    valid = good_len & ((digits >= 0) & (digits <= 9)).all(axis=1)
    valid &= (chars[:, 2] == ord(":")) & (chars[:, 5] == ord(":"))
    h = d[:, 0] * 10 + d[:, 1]
    m = d[:, 3] * 10 + d[:, 4]
    s = d[:, 6] * 10 + d[:, 7]
    valid &= (h < 24) & (m < 60) & (s < 60)
    _set(codes, ~valid, "time_invalid")
    secs[:] = h * 3600 + m * 60 + s
    return secs


def _measure(
    values: list[Any], m: Measure, bounds: tuple[float, float], codes: np.ndarray, interval: int
) -> np.ndarray:
    """One numeric column, typed, with type and range violations marked."""
    n = len(values)
    arr: np.ndarray | None = None
    try:
        pa_arr = pa.array(values)
        if pa_arr.null_count == 0 and (pa.types.is_integer(pa_arr.type) or pa.types.is_floating(pa_arr.type)):
            arr = pa_arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        elif n == 0:
            arr = np.zeros(0, dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    if arr is None:  # mixed or wrong types: classify element by element
        arr = np.zeros(n, dtype=np.float64)
        bad = np.zeros(n, dtype=bool)
        missing = np.zeros(n, dtype=bool)
        for i, v in enumerate(values):
            if v is _MISSING:
                missing[i] = True
            elif isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                arr[i] = v
            else:
                bad[i] = True
        _set(codes, missing, "missing_field")
        _set(codes, bad, "value_wrong_type")
    if m.kind == "int":
        _set(codes, arr != np.floor(arr), "value_wrong_type")
    low, high = bounds
    high = high * interval if m.scale_with_interval else high
    _set(codes, (arr < low) | (arr > high), "value_out_of_range")
    return arr


def _summary_item(doc: dict[str, Any], a: Activity) -> dict[str, Any] | None:
    summary = doc.get(a.summary_key, _MISSING)
    if summary is _MISSING:
        return None
    if not isinstance(summary, list) or len(summary) != 1 or not isinstance(summary[0], dict):
        raise FileRejected("wrong_structure", f"'{a.summary_key}' must be a list of one day")
    return summary[0]


def _zones(
    item: dict[str, Any], minutes_range: tuple[float, float], parsed_rejects: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Heart-rate zones from either summary shape (inside ``value`` or at the item's top level)."""
    value = item.get("value")
    holder = value if isinstance(value, dict) else item
    out: list[dict[str, Any]] = []
    for zone_type, key in (("standard", "heartRateZones"), ("custom", "customHeartRateZones")):
        zones = holder.get(key, item.get(key)) or []
        if not isinstance(zones, list):
            parsed_rejects.append(_summary_reject("zone_invalid", zones, f"'{key}' is not a list"))
            continue
        kept: list[dict[str, Any]] = []
        for z in zones:
            problem = _zone_problem(z, minutes_range)
            if problem is None and any(z["min"] < k["max_bpm"] and z["max"] > k["min_bpm"] for k in kept):
                problem = "overlaps another zone"
            if problem:
                parsed_rejects.append(_summary_reject("zone_invalid", z, problem))
                continue
            kept.append(
                {
                    "zone_type": zone_type,
                    "zone_name": z["name"],
                    "min_bpm": int(z["min"]),
                    "max_bpm": int(z["max"]),
                    "minutes": int(z["minutes"]) if z.get("minutes") is not None else None,
                    "calories_out": _number(z.get("caloriesOut")),
                }
            )
        out.extend(kept)
    return out


def _zone_problem(z: Any, minutes_range: tuple[float, float]) -> str | None:
    if not isinstance(z, dict) or not isinstance(z.get("name"), str):
        return "zone without a name"
    lo, hi, minutes = z.get("min"), z.get("max"), z.get("minutes")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
        return "min/max are not integers"
    if lo >= hi:
        return "min is not below max"
    if minutes is not None and (not isinstance(minutes, int) or not minutes_range[0] <= minutes <= minutes_range[1]):
        return f"minutes outside {minutes_range[0]:g}-{minutes_range[1]:g}"
    return None


def _summary_reject(rule_id: str, raw: Any, detail: str) -> dict[str, Any]:
    return {
        "record_type": "zone" if rule_id == "zone_invalid" else "daily",
        "rule_id": rule_id,
        "raw_value": _raw(raw),
        "message": f"{rule(rule_id).message}: {detail}",
        "ts": None,
        "row_index": None,
    }


def _daily(item: dict[str, Any], a: Activity, limits: Limits, rejects: list[dict[str, Any]]) -> dict[str, Any] | None:
    if a.daily == "heart":
        value = item.get("value")
        resting = value.get("restingHeartRate") if isinstance(value, dict) else item.get("restingHeartRate")
        if resting is None:
            return {"resting_heart_rate": None}
        lo, hi = limits.range("heart.resting_heart_rate")
        if isinstance(resting, int) and not isinstance(resting, bool) and lo <= resting <= hi:
            return {"resting_heart_rate": resting}
        rejects.append(_summary_reject("resting_hr_out_of_range", resting, f"expected {lo:g}-{hi:g} bpm"))
        return None
    number = _number(item.get("value"))
    if number is None or number < 0 or (a.daily_kind == "int" and not number.is_integer()):
        rejects.append(_summary_reject("daily_value_invalid", item.get("value"), f"'{a.summary_key}' value"))
        return None
    return {"value": int(number) if a.daily_kind == "int" else number}


def parse_document(raw: bytes, ctx: FileContext) -> Parsed:
    """Parse and validate one response. Raises :class:`FileRejected` for a whole-file failure."""
    a = ctx.activity
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FileRejected("invalid_json", str(exc).split(":")[0]) from None
    if not isinstance(doc, dict) or (a.summary_key not in doc and a.intraday_key not in doc):
        raise FileRejected("wrong_structure", f"neither '{a.summary_key}' nor '{a.intraday_key}' present")

    intraday = doc.get(a.intraday_key)
    rows: list[Any] = []
    dataset_type: str | None = None
    interval: int | None = None
    if intraday is not None:
        if not isinstance(intraday, dict) or not isinstance(intraday.get("dataset"), list):
            raise FileRejected("wrong_structure", f"'{a.intraday_key}.dataset' is not a list")
        rows = intraday["dataset"]
        dataset_type = intraday.get("datasetType", "minute")
        interval = intraday.get("datasetInterval", 1)
        if dataset_type not in ("minute", "second") or not isinstance(interval, int) or interval < 1:
            raise FileRejected("wrong_structure", "datasetType/datasetInterval not understood", len(rows))

    item = _summary_item(doc, a)
    json_date = None
    if item is not None:
        json_date = _date(item.get("dateTime"))
        if json_date is None:
            raise FileRejected("date_invalid", "summary dateTime is not YYYY-MM-DD", len(rows))
    if json_date and ctx.path_date and json_date != ctx.path_date:
        raise FileRejected("date_mismatch", f"path says {ctx.path_date}, JSON says {json_date}", len(rows))
    day = json_date or ctx.path_date
    if day is None:
        raise FileRejected("date_invalid", "no date in the path or the JSON", len(rows))
    if day > ctx.run_date:
        raise FileRejected("date_in_future", f"{day} is after the run date {ctx.run_date}", len(rows))

    rejects: list[dict[str, Any]] = []
    findings: list[tuple[str, str]] = []
    daily = _daily(item, a, ctx.limits, rejects) if item is not None else None
    zones = (
        _zones(item, ctx.limits.range("heart.zone_minutes"), rejects)
        if (item is not None and a.daily == "heart")
        else []
    )
    # Summary records read: the daily row (kept or rejected) and every zone (kept or rejected).
    summary_read = (item is not None) + len(zones) + sum(r["record_type"] == "zone" for r in rejects)

    n = len(rows)
    codes = np.zeros(n, dtype=np.int8)
    secs = _seconds(_extract(rows, "time"), codes)
    step = (interval or 1) if dataset_type == "minute" else 1
    measures = {
        m.name: _measure(_extract(rows, m.name), m, ctx.limits.range(f"{a.name}.{m.name}"), codes, step)
        for m in a.measures
    }
    if dataset_type == "minute":
        _set(codes, secs % (60 * step) != 0, "time_off_grid")
    good = np.nonzero(codes == 0)[0]
    s = secs[good]
    if len(s) > 1 and not (np.diff(s) > 0).all():
        _, first = np.unique(s, return_index=True)
        dup = np.ones(len(s), dtype=bool)
        dup[first] = False
        codes[good[dup]] = _CODE["duplicate_timestamp"]
        good = good[~dup]

    base_us = (day - _EPOCH).days * 86_400_000_000
    ts = base_us + secs[good] * 1_000_000
    typed = {m.name: measures[m.name][good].astype(np.int32 if m.kind == "int" else np.float64) for m in a.measures}
    bad = np.nonzero(codes)[0]
    for i in bad:
        code = _ROW_RULES[codes[i]]
        rejects.append(
            {
                "record_type": "intraday",
                "rule_id": code,
                "raw_value": _raw(rows[i]),
                "message": rule(code).message,
                "ts": int(base_us + secs[i] * 1_000_000) if code not in ("missing_field", "time_invalid") else None,
                "row_index": int(i),
            }
        )
    duplicates = int((codes == _CODE["duplicate_timestamp"]).sum())

    if item is None and intraday is not None:
        findings.append(("daily_summary_missing", "no daily summary in the response"))
    if intraday is None:
        findings.append(("intraday_missing", "no intraday dataset in the response"))
    if daily is not None and "value" in daily and intraday is not None and n:
        total = float(typed["value"].sum())
        tolerance = ctx.limits.tolerance(a.name)
        if abs(total - daily["value"]) > tolerance + 1e-9:
            findings.append(
                (
                    "daily_total_mismatch",
                    f"daily total and intraday sum differ by more than {tolerance:g}",
                )
            )

    return Parsed(
        date=day,
        dataset_type=dataset_type,
        dataset_interval=interval,
        ts=ts,
        measures=typed,
        daily=daily,
        zones=zones,
        rejects=rejects,
        findings=findings,
        rows_read=n + summary_read,
        rows_rejected=len(rejects) - duplicates,
        rows_duplicate=duplicates,
    )
