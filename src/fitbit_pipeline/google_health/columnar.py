"""The columnar way through a Google Health list document: pyarrow's JSON reader, then numpy.

A day of second-level heart rate is ~86 000 points and ~35 MB of JSON; building a Python object per point
costs seconds, this way a few hundred milliseconds. The document is read with an explicit schema of the
fields the pipeline uses (the others are read too, so that a repeated key anywhere is noticed), then
:data:`.points.CHECKS` run on whole columns in the same order as :func:`.points.read_points`. Whatever this
way does not fully recognise returns ``None`` and the document is read the general way: a field of another
JSON type, a repeated key, a top-level member besides ``dataPoints``, an instant or offset not in the API's
canonical form (``2026-11-03T06:00:00Z``, ``-21600s``), an int64 of 19 digits, more than one top-level
value. Both ways give the same :class:`~.points.Series` (tests/test_google_health_reader.py checks it).
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..export_rows import utc_instants
from .datatypes import DataType
from .points import CHECKS, LATER_FORMS, Rejected, Series

_CIVIL = pa.struct(
    [
        pa.field("date", pa.struct([pa.field(k, pa.int64()) for k in ("year", "month", "day")])),
        pa.field("time", pa.struct([pa.field(k, pa.int64()) for k in ("hours", "minutes", "seconds", "nanos")])),
    ]
)
_SOURCE = pa.struct(
    [
        pa.field("platform", pa.string()),
        pa.field("device", pa.struct([pa.field("formFactor", pa.string()), pa.field("displayName", pa.string())])),
    ]
)
_INSTANT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
_OFFSET = r"^-?[0-9]{1,12}s$"
_INT64 = r"^-?(0|[1-9][0-9]{0,17})$"  # 19 digits may not fit: the general way decides those
_CODE = {rule: i + 1 for i, rule in enumerate(CHECKS)}


def _schema(dtype: DataType) -> pa.Schema:
    value = pa.float64() if dtype.value_key == "kcal" else pa.string()
    if dtype.shape == "sample":
        holder = pa.field(
            "sampleTime",
            pa.struct(
                [
                    pa.field("physicalTime", pa.string()),
                    pa.field("utcOffset", pa.string()),
                    pa.field("civilTime", _CIVIL),
                ]
            ),
        )
    else:
        holder = pa.field(
            "interval",
            pa.struct(
                [
                    pa.field("startTime", pa.string()),
                    pa.field("startUtcOffset", pa.string()),
                    pa.field("endTime", pa.string()),
                    pa.field("civilStartTime", _CIVIL),
                ]
            ),
        )
    point = pa.struct(
        [
            pa.field("dataSource", _SOURCE),
            pa.field(dtype.field, pa.struct([pa.field(dtype.value_key or "", value), holder])),
        ]
    )
    return pa.schema([pa.field("dataPoints", pa.list_(point)), pa.field("nextPageToken", pa.string())])


def _table(raw: bytes, dtype: DataType) -> pa.StructArray | None:
    options = pj.ParseOptions(
        explicit_schema=_schema(dtype), unexpected_field_behavior="infer", newlines_in_values=True
    )
    try:
        table = pj.read_json(
            io.BytesIO(raw), read_options=pj.ReadOptions(block_size=len(raw) + 1), parse_options=options
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != 1 or table.num_columns != 2 or table["nextPageToken"][0].is_valid:
        return None
    points = table["dataPoints"].combine_chunks()
    if points.null_count:
        return None
    return pc.list_flatten(points)


def _child(struct: pa.StructArray, name: str) -> pa.Array:
    """A field of a struct array, null wherever the struct is null."""
    return struct.flatten()[struct.type.get_field_index(name)]


def _text(arr: pa.Array) -> pa.Array:
    """Empty strings as nulls (the general way skips both)."""
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def _all_match(arr: pa.Array, pattern: str) -> bool:
    valid = arr.drop_null()
    return bool(pc.all(pc.match_substring_regex(valid, pattern)).as_py() is not False)


def _np(arr: pa.Array, fill: int = 0) -> np.ndarray:
    return pc.fill_null(arr, fill).to_numpy(zero_copy_only=False)


def _civil_us(civil: pa.StructArray) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds, valid) of CivilDateTime values; proto3: omitted numbers are 0."""
    date, time = _child(civil, "date"), _child(civil, "time")
    y, m, d = (_np(_child(date, k)) for k in ("year", "month", "day"))
    hh, mm, ss, ns = (_np(_child(time, k)) for k in ("hours", "minutes", "seconds", "nanos"))
    ok = (y >= 1) & (y <= 9999) & (m >= 1) & (m <= 12) & (d >= 1) & (hh >= 0) & (hh <= 23) & (mm >= 0) & (mm <= 59)
    ok &= (ss >= 0) & (ss <= 59) & (ns >= 0) & (ns < 10**9)
    ys, ms = np.where(ok, y, 1970), np.where(ok, m, 1)
    month = (ys - 1970) * 12 + (ms - 1)
    start = month.astype("datetime64[M]").astype("datetime64[D]")
    length = (month + 1).astype("datetime64[M]").astype("datetime64[D]") - start
    ok &= d <= length.astype(np.int64)
    days = (start + np.where(ok, d - 1, 0).astype("timedelta64[D]")).astype(np.int64)
    seconds = days * 86_400 + np.where(ok, hh * 3600 + mm * 60 + ss, 0)
    return seconds * 1_000_000 + np.where(ok, ns // 1000, 0), ok


def read_columns(raw: bytes, dtype: DataType, day: dt.date, bounds: tuple[float, float] | None) -> Series | None:
    """The document's points checked column by column, or None when the general way must read it."""
    points = _table(raw, dtype)
    if points is None:
        return None
    n = len(points)
    obj = _child(points, dtype.field)
    holder = _child(obj, "sampleTime" if dtype.shape == "sample" else "interval")
    if dtype.shape == "sample":
        civil, start, shift = (_child(holder, k) for k in ("civilTime", "physicalTime", "utcOffset"))
        ends = None
    else:
        civil, start, shift = (_child(holder, k) for k in ("civilStartTime", "startTime", "startUtcOffset"))
        ends = _child(holder, "endTime")
    value = _child(obj, dtype.value_key or "")
    recognised = _all_match(start, _INSTANT) and _all_match(shift, _OFFSET)
    recognised = recognised and (ends is None or _all_match(ends, _INSTANT))
    if not recognised or (value.type == pa.string() and not _all_match(value, _INT64)):
        return None

    codes = np.zeros(n, np.int8)

    def fail(mask: np.ndarray, rule_id: str) -> None:
        codes[(codes == 0) & mask] = _CODE[rule_id]

    present = lambda a: a.is_valid().to_numpy(zero_copy_only=False)  # noqa: E731
    fail(~present(obj) | ~present(holder), "missing_field")
    fail(~present(civil) | ~present(_child(civil, "date")), "missing_field")
    local, civil_ok = _civil_us(civil)
    fail(~civil_ok, "time_invalid")
    fail(~present(start), "missing_field")
    utc, utc_ok = utc_instants(start)
    fail(~utc_ok, "time_invalid")
    if ends is not None:
        fail(~present(ends), "missing_field")
        end, end_ok = utc_instants(ends)
        fail(~end_ok, "time_invalid")
        on_minute = (local % 60_000_000) == 0
        fail((end - utc != 60_000_000) | ~on_minute, "interval_not_minute")
    fail(~present(shift), "missing_field")
    offset_us = pc.cast(pc.replace_substring(pc.fill_null(shift, "0s"), "s", ""), pa.int64()).to_numpy() * 1_000_000
    fail(utc + offset_us != local, "time_invalid")
    base = (day - dt.date(1970, 1, 1)).days * 86_400_000_000
    fail((local < base) | (local >= base + 86_400_000_000), "point_outside_day")
    number = _np(pc.cast(value, pa.float64()) if value.type == pa.string() else value, 0).astype(np.float64)
    if dtype.value_key == "kcal":
        fail(~np.isfinite(number), "value_wrong_type")
    if dtype.hard_range:
        fail((number < dtype.hard_range[0]) | (number > dtype.hard_range[1]), "value_out_of_range")
    number = number * dtype.scale
    if bounds is not None:
        fail((number < bounds[0]) | (number > bounds[1]), "value_out_of_range")

    reported = {"missing_field", "time_invalid"}
    rejected = [
        Rejected(CHECKS[codes[i] - 1], int(i), None if CHECKS[codes[i] - 1] in reported else int(local[i]))
        for i in np.nonzero(codes)[0]
    ]
    good = codes == 0
    source = _child(points, "dataSource")
    device = _child(source, "device")
    form = pc.fill_null(_text(_child(device, "formFactor")), "FORM_FACTOR_UNSPECIFIED")
    platform, name = _text(_child(source, "platform")), _text(_child(device, "displayName"))
    label = pc.binary_join_element_wise(platform, form, name, "/", null_handling="skip")
    encoded = label.dictionary_encode()
    rank = pc.is_in(form, pa.array(LATER_FORMS)).to_numpy(zero_copy_only=False).astype(np.int8)
    return Series(
        ts=local[good],
        utc=utc[good],
        value=number[good],
        rank=rank[good],
        source=encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)[good],
        index=np.nonzero(good)[0].astype(np.int64),
        labels=encoded.dictionary.to_pylist(),
        raw=lambda i: _as_py(points, i),
        rejected=rejected,
        read=n,
    )


def _as_py(points: pa.StructArray, i: int) -> Any:
    """The fields this way read of point ``i`` (for a reject's raw value)."""
    return points[i].as_py()
