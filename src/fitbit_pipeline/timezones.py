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


def to_utc(local_us: np.ndarray, day: dt.date, zone: str | None) -> tuple[np.ndarray, np.ndarray]:
    """UTC microseconds and flags for local timestamps of one day (int64 microseconds since epoch).

    Returns ``(utc_us, flags)``: ``utc_us`` is int64 with -1 where there is no UTC time (no zone,
    or a nonexistent local time); ``flags`` is an object array of None, ``nonexistent`` or ``ambiguous``.
    """
    n = len(local_us)
    flags = np.full(n, None, dtype=object)
    if zone is None or n == 0:
        return np.full(n, -1, dtype=np.int64), flags
    tz = ZoneInfo(zone)
    start = dt.datetime.combine(day, dt.time())
    end = start + dt.timedelta(days=1)
    first, last = _offset_us(start, tz, 0), _offset_us(end, tz, 0)
    # Transitions happen at most a few times a year: a day whose offset is the same at both ends and in
    # between (checked hourly) is converted with one subtraction.
    hourly = {_offset_us(start + dt.timedelta(hours=h), tz, f) for h in range(25) for f in (0, 1)}
    if first == last and hourly == {first}:
        return local_us - first, flags
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
            flags[i] = NONEXISTENT
        else:
            utc[i] = us - off0  # fold=0: the first occurrence (daylight time)
            flags[i] = AMBIGUOUS
    return utc, flags
