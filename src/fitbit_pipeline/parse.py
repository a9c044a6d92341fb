"""Parse and validate one Fitbit Web API intraday response (pure: bytes in, columns out).

The hot path is columnar and builds no Python object per row: the intraday dataset of a
compact response is scanned straight from the bytes with numpy (:func:`_scan_dataset`), only
the small rest of the document goes through ``orjson``; anything the scanner does not fully
recognise is parsed the general way (``orjson`` for the whole document, one list
comprehension per field). Both ways give identical results. Then numpy does the time
parsing, range checks, grid checks and duplicates. Rows that break a rule are not dropped:
they come back as reject records with the rule id and the raw row.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
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
_INT32 = (-(2**31), 2**31 - 1)  # the columns of heart-rate zones and resting heart rate
_INT64_MAX = 2**63 - 1  # integer daily totals
# A number as JSON writes it (RFC 8259), the only grammar accepted for numbers given as strings.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


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
    ts_utc: np.ndarray | None = None  # int64 microseconds, UTC, when the source gives the instant
    sources: str | None = None  # the data sources of the kept rows, when the source names them

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
    """A finite JSON number, or a number given as a string in JSON number grammar (as the API does for
    daily totals); ``"3_0"``, ``" 1"``, ``"nan"`` or ``"1e999"`` are not numbers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and not _JSON_NUMBER.fullmatch(value):
        return None
    if not isinstance(value, int | float | str):
        return None
    try:
        f = float(value)
    except (ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _DuplicateKey
    return None


def _ignore(_text: str) -> None:
    return None


def _has_duplicate_key(raw: bytes) -> bool:
    """Whether some JSON object of ``raw`` repeats a key (``orjson`` silently keeps the last one).

    ``raw`` has already been parsed by ``orjson``; anything the standard parser objects to otherwise
    (depth, encoding) is not a duplicate key and is left to ``orjson``'s verdict."""
    try:  # numbers are not converted: only the keys matter (and no digit limit applies)
        json.loads(raw, object_pairs_hook=_no_duplicates, parse_int=_ignore, parse_float=_ignore)
    except _DuplicateKey:
        return True
    except (ValueError, RecursionError):
        return False
    return False


def _extract(rows: list[Any], key: str) -> list[Any]:
    try:
        return [r[key] for r in rows]
    except (KeyError, TypeError, IndexError):
        return [r.get(key, _MISSING) if isinstance(r, dict) else _MISSING for r in rows]


def _set(codes: np.ndarray, mask: np.ndarray, code: str) -> None:
    """Mark rows failing a rule, unless an earlier rule already failed them."""
    if mask.any():
        codes[mask & (codes == 0)] = _CODE[code]


def _seconds(times: list[Any], codes: np.ndarray) -> np.ndarray:
    """Seconds of the day from ``HH:MM:SS`` strings; invalid ones are marked."""
    n = len(times)
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
    else:
        chars = np.zeros((n, 8), dtype=np.uint8)
        for i in np.nonzero(good_len)[0]:
            chars[i] = np.frombuffer(times[i].encode("latin-1", "replace")[:8].ljust(8), dtype=np.uint8)
    secs, shape, in_range = _clock(chars.reshape(n, 8).view("<u8").reshape(n))
    _set(codes, ~(shape & in_range & good_len), "time_invalid")
    return secs


# ``HH:MM:SS`` read as one little-endian 64-bit word per row (byte k of the text is bits 8k..8k+7).
_CLOCK_PATTERN = int.from_bytes(b"00:00:00", "little")
_HIGH_NIBBLES = 0xF0F0F0F0F0F0F0F0
_LOW_NIBBLES = 0x0F0F0F0F0F0F0F0F
_COLONS = 0xFF << 16 | 0xFF << 40
_U64 = np.uint64


def _digits_ok(x: np.ndarray) -> np.ndarray:
    """Every byte of ``x`` (ASCII xor "0") is 0..9."""
    low = x & _U64(_LOW_NIBBLES)
    return ((x & _U64(_HIGH_NIBBLES)) | ((low + _U64(0x0606060606060606)) & _U64(_HIGH_NIBBLES))) == 0


def _clock(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds of the day, digits and colons where they belong, hours/minutes/seconds in range) for
    8-byte ``HH:MM:SS`` texts given as uint64 words."""
    x = words ^ np.uint64(_CLOCK_PATTERN)  # a digit byte becomes 0..9, a colon 0; nothing else does
    shape = _digits_ok(x) & ((x & np.uint64(_COLONS)) == 0)
    pairs = x * np.uint64(10) + (x >> np.uint64(8))  # byte k: 10 * digit k + digit k + 1 (at most 99)
    h = (pairs & np.uint64(0xFF)).astype(np.int64)
    m = ((pairs >> np.uint64(24)) & np.uint64(0xFF)).astype(np.int64)
    s = ((pairs >> np.uint64(48)) & np.uint64(0xFF)).astype(np.int64)
    return h * 3600 + m * 60 + s, shape, (h < 24) & (m < 60) & (s < 60)


def _measure(
    values: list[Any], m: Measure, bounds: tuple[float, float], codes: np.ndarray, minutes: float
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
            elif isinstance(v, int) and not isinstance(v, bool):
                arr[i] = _as_float(v)
            elif isinstance(v, float) and math.isfinite(v):
                arr[i] = v
            else:
                bad[i] = True
        _set(codes, missing, "missing_field")
        _set(codes, bad, "value_wrong_type")
    return _check_measure(arr, m, bounds, codes, minutes)


def _as_float(v: int) -> float:
    """An integer as float64; one beyond float64 becomes an infinity (out of every range)."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _check_measure(arr: np.ndarray, m: Measure, bounds: tuple[float, float], codes: np.ndarray, minutes: float):
    """Mark values outside the plausible range; ``minutes``: the length of one dataset interval in minutes
    (a second-level dataset has 1/60: per-second bounds). Non-integral values of integer measures stay
    (counted by :func:`_not_integral`)."""
    low, high = bounds
    if m.scale_with_interval:
        high = high * minutes
        if m.kind == "int":  # one whole unit per interval stays possible (a floor within one second)
            high = math.ceil(high - 1e-9)
    _set(codes, ~((arr >= low) & (arr <= high)), "value_out_of_range")
    return arr


def _not_integral(a: Activity, measures: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """Warnings for integer measures delivered with a fraction (kept as delivered, never rounded)."""
    out = []
    for m in a.measures:
        if m.kind == "int":
            arr = measures[m.name]
            n = int((arr != np.floor(arr)).sum())
            if n:
                out.append(("value_not_integral", f"{n} values of '{m.name}' are not whole numbers"))
    return out


# ---- the scanner: a compact dataset read from the bytes, no Python object per row -------------------
#
# It recognises exactly one shape: ``"dataset":[`` then rows ``{"k1":v1,"k2":v2,...}`` separated by
# single commas, no whitespace, every row with the keys of the first row in the same order (``time`` and
# the activity's measures, nothing else), ``time`` an ``"NN:NN:NN"`` string of digits and colons, each
# measure a plain JSON number (``-?(0|[1-9][0-9]*)(\.[0-9]+)?``, no exponent). That is how the Fitbit
# Web API and the exports write intraday data. Everything else (whitespace, other keys, strings, nulls,
# exponents, escapes, nesting) makes the scanner give up, and the document is parsed the general way.
#
# Equivalence: the recognised text is a valid JSON array of ASCII-only objects whose values the scanner
# computes exactly as ``orjson`` would (integers exactly; decimals correctly rounded). The rest of the
# document is parsed by ``orjson`` with that array replaced by ``["\u0000"]``; a string holding U+0000
# can only come from the sentinel (the text is checked for ``\u0000``), so finding it at
# ``doc[<activity>-intraday]["dataset"]`` proves the scanned array is exactly that value. Invalid JSON
# around it fails in ``orjson`` and falls back, so errors are reported by the general path as before.

_DATASET = b'"dataset":['
_SENTINEL = b'["\\u0000"]'
_SENTINEL_VALUE = ["\x00"]
_NUL_ESCAPE = b"\\u0000"
_POW10 = 10.0 ** np.arange(23)
_EXACT_DIGITS = 15  # below 2**53: integer / 10**k is then correctly rounded
_MAX_NUMBER = 32  # longer numbers are left to the general path


@dataclass
class _Scanned:
    """The rows of a compact dataset, columnar, with where each row's text lies in the document."""

    raw: bytes
    starts: np.ndarray  # offset of each row's "{"
    ends: np.ndarray  # offset after each row's "}"
    secs: np.ndarray
    time_ok: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.starts)

    def row(self, i: int) -> Any:
        return orjson.loads(self.raw[int(self.starts[i]) : int(self.ends[i])])

    def outside(self) -> bytes:
        """The document with the scanned rows taken out (an empty dataset)."""
        if not len(self):
            return self.raw
        return self.raw[: int(self.starts[0])] + self.raw[int(self.ends[-1]) :]


def _words(raw: bytes, start: int) -> np.ndarray:
    """Overlapping little-endian uint64 words: ``w[i]`` is bytes ``start + i .. start + i + 7``."""
    return np.ndarray((len(raw) - start - 7,), dtype="<u8", buffer=raw, offset=start, strides=(1,))


def _literal_ok(words: np.ndarray, at: np.ndarray, text: bytes) -> bool:
    for k in range(0, len(text), 8):
        piece = text[k : k + 8]
        mask = (1 << (8 * len(piece))) - 1
        if not ((words[at + k] & np.uint64(mask)) == np.uint64(int.from_bytes(piece, "little"))).all():
            return False
    return True


def _numbers(chars: np.ndarray, width: np.ndarray) -> np.ndarray | None:
    """JSON numbers from left-aligned bytes (row i has ``width[i]`` of them), as orjson reads them."""
    n, w = chars.shape
    col = np.arange(w)
    inside = col < width[:, None]
    neg = chars[:, 0] == 45  # "-"
    lead = neg.astype(np.int64)
    body = inside & ~((col == 0) & neg[:, None])
    digits = chars - np.uint8(48)
    is_digit = (digits <= 9) & body
    is_dot = (chars == 46) & body
    if not (is_digit | is_dot | ~body).all():
        return None
    n_dots = is_dot.sum(axis=1)
    rows = np.arange(n)
    size = width - lead
    if (size < 1).any() or (n_dots > 1).any() or not is_digit[rows, lead].all():
        return None
    second = np.minimum(lead + 1, w - 1)
    if ((digits[rows, lead] == 0) & (size > 1) & is_digit[rows, second]).any():  # a leading zero
        return None
    dot_at = np.where(n_dots == 1, is_dot.argmax(axis=1), -1)
    has_dot = dot_at >= 0
    if (has_dot & ((dot_at == width - 1) | (dot_at == lead))).any():
        return None
    n_digits = is_digit.sum(axis=1)
    exact = n_digits <= _EXACT_DIGITS
    mantissa = np.zeros(n, dtype=np.int64)
    for k in range(w):  # Horner over the digit columns
        take = is_digit[:, k] & exact
        mantissa = np.where(take, mantissa * 10 + digits[:, k], mantissa)
    signed = np.where(neg, -mantissa, mantissa)
    frac = np.where(has_dot, width - 1 - dot_at, 0)
    out = np.where(has_dot, np.where(neg, -1.0, 1.0) * (mantissa / _POW10[np.minimum(frac, 22)]), signed)
    if not exact.all():  # more than 15 significant digits: a correctly rounded conversion
        if w > _MAX_NUMBER:
            return None
        long_rows = np.nonzero(~exact)[0]
        text = np.where(inside[long_rows], chars[long_rows], 0).astype(np.uint8)
        out[long_rows] = np.ascontiguousarray(text).view(f"S{w}").ravel().astype(np.float64)
    return out.astype(np.float64, copy=False)


_BYTE_MASK = np.array([(1 << (8 * w)) - 1 for w in range(9)], dtype=np.uint64)  # the first w bytes
_ZEROS = _U64(0x3030303030303030)
_DOTS = _U64(0x2E2E2E2E2E2E2E2E)
_ONES = _U64(0x0101010101010101)
_HIGHS = _U64(0x8080808080808080)


def _swar_value(digits: np.ndarray, width: np.ndarray) -> np.ndarray:
    """The integer of ``width`` ASCII digits in the low bytes (first digit in byte 0), up to 8 digits."""
    v = digits << (_U64(8) * (_U64(8) - width.astype(np.uint64)))  # right-aligned: last digit in byte 7
    v = ((v & _U64(0x0F0F0F0F0F0F0F0F)) * _U64(2561)) >> _U64(8)
    v = ((v & _U64(0x00FF00FF00FF00FF)) * _U64(6553601)) >> _U64(16)
    v = ((v & _U64(0x0000FFFF0000FFFF)) * _U64(42949672960001)) >> _U64(32)
    return v


def _short_numbers(words: np.ndarray, width: np.ndarray) -> np.ndarray | None:
    """Unsigned numbers of at most 8 characters (``72``, ``0.0123``) from 8-byte words, 8 bytes at a time.

    None when some row needs :func:`_numbers` (a sign, or not a plain number at all).
    """
    mask = _BYTE_MASK[width]
    x = (words ^ _ZEROS) & mask  # digits become 0..9
    if _digits_ok(x).all():  # integers, the usual case
        if (((x & _U64(0xFF)) == 0) & (width > 1)).any():  # a leading zero
            return None
        return _swar_value(x, width).astype(np.float64)
    y = words & mask
    t = (y ^ _DOTS) | ~mask  # a zero byte where there is a dot
    dots = (t - _ONES) & ~t & _HIGHS  # exact at the lowest dot (higher bits may be borrow artefacts)
    lowest = dots & (~dots + _U64(1))
    has_dot = lowest != 0
    bit = np.frexp(lowest.astype(np.float64))[1] - 1  # lowest is 0 or a power of two: exact
    dot_at = np.where(has_dot, bit // 8, 8)
    before = _BYTE_MASK[np.minimum(dot_at, 8)]
    compact = np.where(has_dot, (y & before) | ((y >> _U64(8)) & ~before), y)  # the dot taken out
    n_digits = width - has_dot
    if not _digits_ok((compact ^ _ZEROS) & _BYTE_MASK[n_digits]).all():
        return None  # a sign, a second dot, another character
    if (has_dot & ((dot_at == 0) | (dot_at >= width - 1))).any():
        return None
    first, second = y & _U64(0xFF), (y >> _U64(8)) & _U64(0xFF)
    if ((first == 48) & (width > 1) & (second != 46)).any():  # a leading zero
        return None
    mantissa = _swar_value(compact & _BYTE_MASK[n_digits], n_digits).astype(np.float64)
    if not has_dot.any():
        return mantissa
    return mantissa / _POW10[np.where(has_dot, width - 1 - dot_at, 0)]


def _scan_dataset(raw: bytes, lo: int, hi: int, a: Activity) -> _Scanned | None:
    """Rows between ``raw[lo - 1] == "["`` and ``raw[hi] == "]"``, or None when not the compact shape."""
    names = ["time", *(m.name for m in a.measures)]
    if hi == lo:
        empty = np.zeros(0, dtype=np.int64)
        return _Scanned(raw, empty, empty, empty, np.zeros(0, bool), {k: np.zeros(0) for k in names[1:]})
    size = hi - lo
    first_end = raw.find(b"}", lo, hi)
    if raw[lo] != 123 or first_end < 0:  # "{"
        return None
    try:
        first = orjson.loads(raw[lo : first_end + 1])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(first, dict) or sorted(first) != sorted(names) or len(names) != len(set(names)):
        return None
    keys = list(first)
    k = len(keys)
    buf = np.frombuffer(raw, dtype=np.uint8, count=size, offset=lo)
    # Every comma separates fields or rows: row i is "{" field,...,field "}" then the comma after its
    # last field. Each field's bytes are all checked below, so together with the braces every byte
    # of the array is accounted for.
    commas = np.flatnonzero(buf == 44)
    if (len(commas) + 1) % k:
        return None
    n = (len(commas) + 1) // k
    bounds = np.append(commas, size).reshape(n, k)  # field ends; the last column: after each row
    opens = np.empty(n, dtype=np.int64)
    opens[0] = 0
    opens[1:] = bounds[:-1, -1] + 1
    ends = bounds[:, -1] - 1  # each row's "}"
    if not ((buf[opens] == 123).all() and (buf[ends] == 125).all()):
        return None
    if len(raw) < hi + 16:  # the 8-byte words read a little past the array
        raw = raw + b" " * 16
    words = _words(raw, lo)
    values: dict[str, np.ndarray] = {}
    secs = time_ok = None
    for j, key in enumerate(keys):
        start = opens + 1 if j == 0 else bounds[:, j - 1] + 1
        stop = bounds[:, j] if j < k - 1 else ends
        if key == "time":  # "time":"NN:NN:NN"
            if not ((stop - start == 17).all() and _literal_ok(words, start, b'"time":"')):
                return None
            if not (buf[start + 16] == 34).all():
                return None
            secs, shape, time_ok = _clock(words[start + 8])
            if not shape.all():
                return None  # not digits and colons: strings are left to the general path
            continue
        literal = b'"' + key.encode() + b'":'
        if not _literal_ok(words, start, literal):
            return None
        at = start + len(literal)
        width = stop - at
        top = int(width.max())
        if int(width.min()) < 1 or top > _MAX_NUMBER:
            return None
        number = _short_numbers(words[at], width) if top <= 8 else None
        if number is None:
            chars = buf[np.minimum(at[:, None] + np.arange(top), size - 1)]
            number = _numbers(chars, width)
        if number is None:
            return None
        values[key] = number
    assert secs is not None and time_ok is not None
    return _Scanned(raw, opens + lo, ends + lo + 1, secs, time_ok, values)


def _fast_document(raw: bytes, a: Activity) -> tuple[Any, _Scanned] | None:
    """(document with the dataset replaced by the sentinel, scanned rows), or None for the general path."""
    key = raw.find(_DATASET)
    if key < 0:
        return None
    lo = key + len(_DATASET)
    hi = raw.find(b"]", lo)
    if hi < 0:
        return None
    rows = _scan_dataset(raw, lo, hi, a)
    if rows is None:
        return None
    head, tail = raw[: lo - 1], raw[hi + 1 :]
    if _NUL_ESCAPE in head or _NUL_ESCAPE in tail:
        return None
    try:
        doc = orjson.loads(head + _SENTINEL + tail)
    except orjson.JSONDecodeError:
        return None
    intraday = doc.get(a.intraday_key) if isinstance(doc, dict) else None
    if not isinstance(intraday, dict) or intraday.get("dataset") != _SENTINEL_VALUE:
        return None
    return doc, rows


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


def _fits32(v: int) -> bool:
    return _INT32[0] <= v <= _INT32[1]


def _zone_problem(z: Any, minutes_range: tuple[float, float]) -> str | None:
    if not isinstance(z, dict) or not isinstance(z.get("name"), str):
        return "zone without a name"
    lo, hi, minutes = z.get("min"), z.get("max"), z.get("minutes")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
        return "min/max are not integers"
    if not (_fits32(lo) and _fits32(hi)):
        return "min/max do not fit a 32-bit integer"
    if lo >= hi:
        return "min is not below max"
    if minutes is not None and (
        not isinstance(minutes, int)
        or isinstance(minutes, bool)
        or not (minutes_range[0] <= minutes <= minutes_range[1] and _fits32(minutes))
    ):
        return f"minutes outside {minutes_range[0]:g}-{minutes_range[1]:g}"
    if z.get("caloriesOut") is not None and _number(z["caloriesOut"]) is None:
        return "caloriesOut is not a finite number"
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
        if isinstance(resting, int) and not isinstance(resting, bool) and lo <= resting <= hi and _fits32(resting):
            return {"resting_heart_rate": resting}
        rejects.append(_summary_reject("resting_hr_out_of_range", resting, f"expected {lo:g}-{hi:g} bpm"))
        return None
    raw = item.get("value")
    number = _number(raw)
    if number is None or number < 0 or (a.daily_kind == "int" and not (number.is_integer() and number <= _INT64_MAX)):
        rejects.append(_summary_reject("daily_value_invalid", item.get("value"), f"'{a.summary_key}' value"))
        return None
    if a.daily_kind == "float":
        return {"value": number}
    return {"value": raw if isinstance(raw, int) else int(number)}


def parse_document(raw: bytes, ctx: FileContext) -> Parsed:
    """Parse and validate one response. Raises :class:`FileRejected` for a whole-file failure."""
    a = ctx.activity
    fast = _fast_document(raw, a)
    if fast is not None:
        doc, scanned = fast
    else:
        scanned = None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise FileRejected("invalid_json", str(exc).split(":")[0]) from None
    # The scanned rows are checked key by key; the rest of the document (all of it off the fast path) here.
    if _has_duplicate_key(raw if scanned is None else scanned.outside()):
        raise FileRejected("duplicate_key", "an object repeats a key")
    if not isinstance(doc, dict) or (a.summary_key not in doc and a.intraday_key not in doc):
        raise FileRejected("wrong_structure", f"neither '{a.summary_key}' nor '{a.intraday_key}' present")

    intraday = doc.get(a.intraday_key)
    rows: list[Any] | _Scanned = []
    dataset_type: str | None = None
    interval: int | None = None
    if intraday is not None:
        if not isinstance(intraday, dict) or not isinstance(intraday.get("dataset"), list):
            raise FileRejected("wrong_structure", f"'{a.intraday_key}.dataset' is not a list")
        rows = scanned if scanned is not None else intraday["dataset"]
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
    step = (interval or 1) if dataset_type == "minute" else 1
    minutes = step if dataset_type == "minute" else (interval or 1) / 60  # one interval, in minutes
    if isinstance(rows, _Scanned):
        secs = rows.secs
        _set(codes, ~rows.time_ok, "time_invalid")
        measures = {
            m.name: _check_measure(rows.values[m.name], m, ctx.limits.range(f"{a.name}.{m.name}"), codes, minutes)
            for m in a.measures
        }
    else:
        secs = _seconds(_extract(rows, "time"), codes)
        measures = {
            m.name: _measure(_extract(rows, m.name), m, ctx.limits.range(f"{a.name}.{m.name}"), codes, minutes)
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
    everything = len(good) == n  # the usual case: no copies through an index
    ts = base_us + (secs if everything else secs[good]) * 1_000_000
    # Every measure column is float64 (see schema.py): integer measures keep a delivered fraction.
    typed = {m.name: (measures[m.name] if everything else measures[m.name][good]) for m in a.measures}
    typed = {name: arr.astype(np.float64, copy=False) for name, arr in typed.items()}
    bad = np.nonzero(codes)[0]
    for i in bad:
        code = _ROW_RULES[codes[i]]
        rejects.append(
            {
                "record_type": "intraday",
                "rule_id": code,
                "raw_value": _raw(rows.row(i) if isinstance(rows, _Scanned) else rows[i]),
                "message": rule(code).message,
                "ts": int(base_us + secs[i] * 1_000_000) if code not in ("missing_field", "time_invalid") else None,
                "row_index": int(i),
            }
        )
    duplicates = int((codes == _CODE["duplicate_timestamp"]).sum())

    findings.extend(_not_integral(a, typed))
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
