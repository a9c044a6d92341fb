"""Participant time zones: local intraday timestamps (no offset in the data) -> UTC.

A mapping (CSV: ``participant_id,timezone,valid_from,valid_to``; empty dates are open-ended) plus
a default zone say which IANA zone applies to a participant-day. Local times that do not exist
(the spring-forward gap) get no UTC timestamp and the flag ``nonexistent``; local times that occur
twice (the fall-back hour) are resolved to the **first** occurrence (daylight time, ``fold=0``)
and flagged ``ambiguous``. Nothing is ever shifted silently. Without a zone, UTC stays empty.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

_EPOCH = dt.datetime(1970, 1, 1)
_US = 1_000_000
NONEXISTENT = "nonexistent"
AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class ZoneSpan:
    zone: str
    valid_from: dt.date | None
    valid_to: dt.date | None  # inclusive

    def covers(self, day: dt.date) -> bool:
        return (self.valid_from is None or day >= self.valid_from) and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True)
class ZoneMap:
    """Which zone applies to a participant on a day."""

    spans: dict[str, tuple[ZoneSpan, ...]] = field(default_factory=dict)
    default: str | None = None

    def zone_for(self, participant_id: str, day: dt.date) -> str | None:
        for span in self.spans.get(participant_id, ()):
            if span.covers(day):
                return span.zone
        return self.default

    @property
    def empty(self) -> bool:
        return not self.spans and self.default is None

    @classmethod
    def from_csv(cls, path: str | Path, default: str | None = None) -> ZoneMap:
        """Read the mapping; an unknown zone or a bad date is an error naming the line."""
        spans: dict[str, list[ZoneSpan]] = {}
        with open(path, newline="", encoding="utf-8") as fh:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    zone = row["timezone"].strip()
                    check_zone(zone)
                    span = ZoneSpan(zone, _date(row.get("valid_from")), _date(row.get("valid_to")))
                except (KeyError, ValueError) as exc:
                    raise ValueError(f"{path}, line {n}: {exc}") from None
                spans.setdefault(row["participant_id"].strip(), []).append(span)
        if default:
            check_zone(default)
        return cls({p: tuple(s) for p, s in spans.items()}, default)


def _date(text: str | None) -> dt.date | None:
    text = (text or "").strip()
    return dt.date.fromisoformat(text) if text else None


def check_zone(zone: str) -> None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {zone!r}") from None


def _offset_us(local: dt.datetime, tz: ZoneInfo, fold: int) -> int:
    off = local.replace(tzinfo=tz, fold=fold).utcoffset()
    assert off is not None
    return int(off.total_seconds()) * _US


# Flag codes of :func:`convert` (int8): index + 1 into FLAGS, 0 for no flag.
FLAGS = (NONEXISTENT, AMBIGUOUS)


def to_utc(local_us: np.ndarray, day: dt.date, zone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """UTC microseconds and flags for local timestamps of one day (int64 microseconds since epoch).

    Returns ``(utc_us, flags)``: ``utc_us`` is int64 with -1 where there is no UTC time (no zone,
    or a nonexistent local time); ``flags`` is an object array of None, ``nonexistent`` or ``ambiguous``.
    """
    utc, codes = convert(local_us, day, zone)
    flags = np.full(len(codes), None, dtype=object)
    for code, name in enumerate(FLAGS, start=1):
        flags[codes == code] = name
    return utc, flags


@functools.lru_cache(maxsize=4096)
def _constant_offset(zone: str, day: dt.date) -> int | None:
    """The UTC offset (microseconds) of a day without a transition in ``zone``; None on a transition day."""
    tz = ZoneInfo(zone)
    start = dt.datetime.combine(day, dt.time())
    # Transitions happen at most a few times a year: a day whose offset is the same at both ends and in
    # between (checked hourly, both folds) is converted with one subtraction.
    offsets = {_offset_us(start + dt.timedelta(hours=h), tz, f) for h in range(25) for f in (0, 1)}
    return offsets.pop() if len(offsets) == 1 else None


def convert(local_us: np.ndarray, day: dt.date, zone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`to_utc`, with the flags as int8 codes (0 none, 1 ``nonexistent``, 2 ``ambiguous``).

    A day without a transition costs one subtraction (the offset is cached per zone and day); only the
    rows of a transition day are converted one by one.
    """
    n = len(local_us)
    codes = np.zeros(n, dtype=np.int8)
    if zone is None or n == 0:
        return np.full(n, -1, dtype=np.int64), codes
    offset = _constant_offset(zone, day)
    if offset is not None:
        return local_us - offset, codes
    tz = ZoneInfo(zone)
    utc = np.empty(n, dtype=np.int64)
    for i, us in enumerate(local_us.tolist()):
        local = _EPOCH + dt.timedelta(microseconds=us)
        off0, off1 = _offset_us(local, tz, 0), _offset_us(local, tz, 1)
        if off0 == off1:
            utc[i] = us - off0
            continue
        # Round-trip test: a nonexistent local time does not survive UTC and back.
        back = (local.replace(tzinfo=tz, fold=0).astimezone(dt.UTC).astimezone(tz)).replace(tzinfo=None)
        if back != local:
            utc[i] = -1
            codes[i] = 1  # nonexistent
        else:
            utc[i] = us - off0  # fold=0: the first occurrence (daylight time)
            codes[i] = 2  # ambiguous
    return utc, codes


_BUCKET_US = 15 * 60 * _US  # every UTC offset change of the tz database falls on a quarter hour


def from_utc(utc_us: np.ndarray, zone: str) -> np.ndarray:
    """Local wall-clock microseconds for UTC instants in ``zone``: one offset per quarter hour the instants
    touch (the zone's transitions fall on quarter hours), so a year of seconds costs a few thousand lookups."""
    if not len(utc_us):
        return utc_us.astype(np.int64)
    tz = ZoneInfo(zone)
    buckets, inverse = np.unique(utc_us // _BUCKET_US, return_inverse=True)
    offsets = np.array(
        [
            int(dt.datetime.fromtimestamp(int(b) * _BUCKET_US / _US, dt.UTC).astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]
            for b in buckets.tolist()
        ],
        dtype=np.int64,
    )
    return utc_us + offsets[inverse] * _US
