"""Fitabase times read strictly and fast: ``M/D/YYYY h:mm:ss AM`` (or the 24-hour form), and ``M/D/YYYY``.

Read straight from the bytes of the Arrow column with numpy (no Python object per row), because Arrow's
``strptime`` is both the slowest step of reading an export and lenient where it must not be: it turns
``2/30/2016`` into March 1, a second ``60`` into the next minute and ``4/12/16`` into the year 16. Here month
and day have one or two digits and must form a real date, the year has four, the hour one or two (1-12 with
``AM``/``PM``, 0-23 without), minutes and seconds two; anything else is not a time (``time_invalid``).
Surrounding whitespace is allowed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_US = 1_000_000
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm, vectorised)."""
    y, m, d = y.astype(np.int64), m.astype(np.int64), d.astype(np.int64)
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


class _Text:
    """One string chunk as bytes and bounds: ``at(pos)`` the byte at each row's position.

    Positions are not checked against the row's bounds: a row whose reading passes every check was read
    entirely inside itself (the date read from its start and the time from its end must meet at one space), so
    a byte of a neighbour only ever lands in a row that fails anyway."""

    def __init__(self, col: pa.StringArray) -> None:
        offsets = np.frombuffer(col.buffers()[1], np.int32)[col.offset : col.offset + len(col) + 1].astype(np.int64)
        data = col.buffers()[2]
        self.data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(1, np.uint8)
        if not len(self.data):
            self.data = np.zeros(1, np.uint8)
        self.start, self.end = offsets[:-1], offsets[1:]

    def at(self, pos: np.ndarray) -> np.ndarray:
        return np.take(self.data, pos, mode="clip")


def _digit(t: _Text, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = t.at(pos) - np.uint8(48)  # a byte below "0" wraps above 9
    return d, d <= 9


def _digits(t: _Text, first: np.ndarray, width: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """The number written by ``width`` digits from ``first`` (an array of 1 or 2 per row, or a fixed 2 or 4),
    and whether they are digits."""
    if isinstance(width, int):
        value, ok = _digit(t, first)
        value = value.astype(np.int16)  # up to four digits
        for k in range(1, width):
            d, good = _digit(t, first + k)
            value, ok = value * 10 + d, ok & good
        return value, ok
    d0, ok0 = _digit(t, first)
    d1, ok1 = _digit(t, first + 1)
    two = width == 2
    return np.where(two, d0 * np.uint8(10) + d1, d0), ok0 & (ok1 | ~two)  # up to 99: a byte holds it


def _chunk(col: pa.StringArray, date_only: bool) -> tuple[np.ndarray, np.ndarray]:
    t = _Text(col)
    s, e = t.start, t.end  # the shortest text of either form has 8 bytes (1/1/2016)
    slash = ord("/")
    # the date from the start: M/ or MM/, then D/ or DD/, then YYYY
    mw = np.where(t.at(s + 1) == slash, 1, 2)
    month, ok = _digits(t, s, mw)
    ok &= t.at(s + mw) == slash
    ds = s + mw + 1
    dw = np.where(t.at(ds + 1) == slash, 1, 2)
    day, good = _digits(t, ds, dw)
    ok &= good & (t.at(ds + dw) == slash)
    ys = ds + dw + 1
    year, good = _digits(t, ys, 4)
    ok &= good
    if date_only:
        ok &= ys + 4 == e
        seconds = np.zeros(len(s), np.int64)
    else:
        # the time from the end: [ AM|PM], ss, :mm, :h or :hh, after one space
        last, before = t.at(e - 1) | 0x20, t.at(e - 2) | 0x20  # lower case
        meridiem = (last == ord("m")) & ((before == ord("a")) | (before == ord("p")))
        te = np.where(meridiem, e - 3, e)
        ok &= ~meridiem | (t.at(e - 3) == ord(" "))
        second, good = _digits(t, te - 2, 2)
        ok &= good & (t.at(te - 3) == ord(":"))
        minute, good = _digits(t, te - 5, 2)
        ok &= good & (t.at(te - 6) == ord(":"))
        hw = np.where(t.at(te - 8) == ord(" "), 1, 2)
        hour, good = _digits(t, te - 6 - hw, hw)
        ok &= good & (t.at(te - 7 - hw) == ord(" ")) & (ys + 4 == te - 7 - hw)
        twelve = np.where(before == ord("p"), 12, 0)
        ok &= np.where(meridiem, (hour >= 1) & (hour <= 12), hour <= 23) & (minute <= 59) & (second <= 59)
        hour = np.where(meridiem, hour % 12 + twelve, hour)
        seconds = (hour.astype(np.int64) * 60 + minute) * 60 + second
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    limit = _DAYS_IN_MONTH[np.where(month_ok, month, 0)] + (leap & (month == 2))
    ok &= month_ok & (day >= 1) & (day <= limit) & (year >= 1)
    if col.null_count:
        ok &= col.is_valid().to_numpy(zero_copy_only=False)
    ts = (_days(year, month, day) * 86_400 + seconds) * _US
    return np.where(ok, ts, 0), ok


def _days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970 of each row's date, computed once per run of rows with the same date (a file's rows come
    in time order: a day is one run)."""
    key = (year.astype(np.int32) << 9) | (month.astype(np.int32) << 5) | day
    if not len(key):
        return key.astype(np.int64)
    heads = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    days = _days_from_civil(year[heads], month[heads], day[heads])
    return np.repeat(days, np.diff(np.append(heads, len(key))))


def read_times(col: pa.Array | pa.ChunkedArray, date_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Local wall-clock microseconds of Fitabase times (or dates), and which cells are valid ones."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = [_chunk(c, date_only) for c in chunks if len(c)]
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    ts = np.concatenate([p[0] for p in parts])
    ok = np.concatenate([p[1] for p in parts])
    if not ok.all():  # surrounding whitespace: the failing cells once more, trimmed
        missing = np.flatnonzero(~ok)
        trimmed = pc.utf8_trim_whitespace(pa.chunked_array(chunks).take(pa.array(missing))).combine_chunks()
        again, fine = _chunk(trimmed, date_only)
        ts[missing[fine]] = again[fine]
        ok[missing[fine]] = True
    return ts, ok
