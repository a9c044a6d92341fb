"""Read one activity of a Fitabase export (pure: CSV bytes in, one ``Parsed`` per participant-day out).

Columnar throughout: pyarrow's CSV reader with every column as text (a bad cell never fails the file),
numbers and times checked and converted as whole columns, rows grouped by participant and local day with
numpy. Rules as for the Web API: ``missing_field``, ``time_invalid``, ``value_wrong_type``,
``value_out_of_range``, ``time_off_grid`` (a minute file's row not on the minute), ``duplicate_timestamp``
(the first row of a participant's instant kept; the narrow file before the wide one). A level or METs row
whose minute has no kept calories row is ``measure_without_value``; a row the CSV reader cannot split, or one
without a participant or a valid time, belongs to no participant-day and is returned apart (``unattributed``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .. import activities
from ..limits import Limits
from ..parse import _CODE, _ROW_RULES, FileRejected, Parsed, _check_measure, _not_integral, _set
from ..rules import rule
from . import files

_US = 1_000_000
_DAY_US = 86_400 * _US
_NUMBER = r"^\s*-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$"


@dataclass
class Slice:
    """One participant-day of the export: its parsed rows, or why it is rejected whole."""

    participant: str
    date: dt.date
    parsed: Parsed | None = None
    rejected: FileRejected | None = None


@dataclass
class ExportRead:
    slices: list[Slice]
    unattributed: list[dict[str, Any]] = field(default_factory=list)  # reject records of no participant-day


@dataclass
class _Rows:
    """One file's rows, typed: participant text, local time (µs), value, rule code, and their raw text."""

    name: str
    pid: np.ndarray  # object array of participant ids ("" when missing)
    ts: np.ndarray  # int64 µs, local wall clock; meaningless where the time is invalid
    time_ok: np.ndarray
    value: np.ndarray
    codes: np.ndarray
    texts: tuple[pa.Array, ...] = ()

    def text(self, i: int) -> str:
        return ",".join(str(col[i].as_py()) for col in self.texts)


def _header(raw: bytes, name: str) -> list[str]:
    first = raw[: raw.find(b"\n") if b"\n" in raw else len(raw)].decode("utf-8-sig", "replace")
    header = next(csv.reader(io.StringIO(first)), [])
    if not header:
        raise FileRejected("csv_invalid", f"{name}: no header row")
    return [h.strip() for h in header]


def _read(raw: bytes, name: str, columns: list[str]) -> tuple[pa.Table, list[str]]:
    """The named columns as text, and the lines the reader could not split (kept for the rejects)."""
    header = _header(raw, name)
    missing = [c for c in columns if c not in header]
    if missing:
        raise FileRejected("csv_invalid", f"{name}: no column {missing[0]!r}")
    malformed: list[str] = []

    def keep(row: Any) -> str:
        malformed.append(row.text)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(raw),
            parse_options=pacsv.ParseOptions(invalid_row_handler=keep),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()), include_columns=columns, strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise FileRejected("csv_invalid", f"{name}: {type(exc).__name__}") from None
    return table, malformed


def _numbers(col: pa.Array, codes: np.ndarray) -> np.ndarray:
    empty = pc.equal(pc.utf8_trim_whitespace(col), "").to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(col, _NUMBER).to_numpy(zero_copy_only=False)
    _set(codes, empty, "missing_field")
    _set(codes, ~ok, "value_wrong_type")
    clean = pc.if_else(pa.array(ok), pc.utf8_trim_whitespace(col), "0")
    return pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False)


def _times(col: pa.Array, formats: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    parsed = None
    for fmt in formats:
        if parsed is not None and parsed.null_count == 0:
            break  # every time read: the other forms are not tried
        t = pc.strptime(pc.utf8_trim_whitespace(col), format=fmt, unit="us", error_is_null=True)
        parsed = t if parsed is None else pc.coalesce(parsed, t)
    assert parsed is not None
    ok = pc.is_valid(parsed).to_numpy(zero_copy_only=False)
    ts = pc.fill_null(parsed.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return ts, ok


def _intraday(raw: bytes, f: files.Intraday) -> tuple[_Rows, list[str]]:
    value_columns = files.minute_columns(f) if f.wide else [f.column]
    table, malformed = _read(raw, f"{f.name}_merged.csv", [files.PARTICIPANT, f.time, *value_columns])
    pid = table[files.PARTICIPANT].combine_chunks()
    time = table[f.time].combine_chunks()
    ts, ok = _times(time, files.TIME_FORMATS)
    if not f.wide:
        texts = (pid, time, table[f.column].combine_chunks())
        return _rows(f.name, pid, ts, ok, texts[2], texts), malformed
    n = len(table)  # one row an hour: 60 rows a line, minute m at the hour plus m minutes
    values = pa.concat_arrays([table[c].combine_chunks() for c in value_columns])
    order = np.arange(60 * n).reshape(60, n).T.reshape(-1)  # line by line, minute by minute
    values = values.take(pa.array(order))
    pid = pid.take(pa.array(np.repeat(np.arange(n), 60)))
    minute = np.tile(np.arange(60, dtype=np.int64) * 60 * _US, n)
    ts = np.repeat(ts, 60) + minute
    ok = np.repeat(ok, 60)
    label = pa.array(value_columns * n)
    texts = (pid, time.take(pa.array(np.repeat(np.arange(n), 60))), label, values)
    return _rows(f.name, pid, ts, ok, values, texts), malformed


def _rows(name: str, pid: pa.Array, ts: np.ndarray, ok: np.ndarray, values: pa.Array, texts: tuple) -> _Rows:
    n = len(pid)
    codes = np.zeros(n, dtype=np.int8)
    pid_text = pc.utf8_trim_whitespace(pid)
    _set(codes, pc.equal(pid_text, "").to_numpy(zero_copy_only=False), "missing_field")
    _set(codes, ~ok, "time_invalid")
    value = _numbers(values, codes)
    return _Rows(name, pid_text.to_numpy(zero_copy_only=False), ts, ok, value, codes, texts=texts)


def _daily(raw: bytes, activity: str) -> tuple[_Rows | None, list[str]]:
    d = files.daily_of(activity)
    name = f"{files.DAILY_FILE}_merged.csv"
    if d is None:
        return None, []
    if d.optional and d.column not in _header(raw, name):
        return None, []
    table, malformed = _read(raw, name, [files.PARTICIPANT, files.DAILY_DATE, d.column])
    pid = table[files.PARTICIPANT].combine_chunks()
    day = table[files.DAILY_DATE].combine_chunks()
    ts, ok = _times(day, files.DATE_FORMATS)
    texts = (pid, day, table[d.column].combine_chunks())
    return _rows(files.DAILY_FILE, pid, ts, ok, texts[2], texts), malformed


def _reject(rows: _Rows, i: int, rule_id: str, record: str = "intraday") -> dict[str, Any]:
    return {
        "record_type": record,
        "rule_id": rule_id,
        "raw_value": rows.text(i),
        "message": f"{rule(rule_id).message} ({rows.name}_merged.csv)",
        "ts": int(rows.ts[i]) if rows.time_ok[i] and record == "intraday" else None,
        "row_index": int(i),
    }


def _keys(pid: np.ndarray, ts: np.ndarray, unit: int = _US) -> np.ndarray:
    """One int64 per (participant, ``ts // unit``): participants numbered in order of appearance."""
    if not len(pid):
        return np.zeros(0, np.int64)
    codes = pa.array(pid, pa.string()).dictionary_encode().indices.to_numpy(zero_copy_only=False).astype(np.int64)
    steps = ts // unit
    return (codes << 36) + (steps - steps.min())


def _first_per_instant(pid: np.ndarray, ts: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Of ``candidates`` (row positions, in priority order), the positions repeating an earlier (participant,
    instant)."""
    if not len(candidates):
        return candidates
    _, first = np.unique(_keys(pid[candidates], ts[candidates]), return_index=True)
    repeated = np.ones(len(candidates), dtype=bool)
    repeated[first] = False
    return candidates[repeated]


def parse_export(activity_name: str, parts: list[tuple[str, bytes]], run_date: dt.date, limits: Limits) -> ExportRead:
    """Read one activity's files of an export (``parts``: ``(file name, bytes)``) into participant-days.
    Raises :class:`FileRejected` when a file is unusable as a whole (the activity's delivery is rejected)."""
    a = activities.get(activity_name)
    by_measure: dict[str, list[tuple[files.Intraday, bytes]]] = {}
    daily_raw: bytes | None = None
    for file_name, raw in parts:
        name = files.MERGED.match(file_name)["name"]  # type: ignore[index]
        if name == files.DAILY_FILE:
            daily_raw = raw
        else:
            f = files.BY_NAME[name]
            by_measure.setdefault(f.measure, []).append((f, raw))
    out = _Assembly(a, run_date, limits)
    for measure, forms in sorted(by_measure.items(), key=lambda item: item[0] != "value"):  # the value first
        forms.sort(key=lambda fr: fr[0].wide)  # narrow first: it wins a minute both forms hold
        read = [_intraday(raw, f) for f, raw in forms]
        out.add_measure(measure, [r for r, _ in read], forms[0][0].second)
        for (f, _), (_, malformed) in zip(forms, read, strict=True):
            out.add_malformed(f.name, malformed)
    if daily_raw is not None:
        daily, malformed = _daily(daily_raw, a.name)
        if daily is not None:
            out.add_daily(daily)
            out.add_malformed(files.DAILY_FILE, malformed)
    return out.result(has_intraday="value" in by_measure, has_daily=daily_raw is not None)


class _Assembly:
    """The rows of one activity gathered per participant-day."""

    def __init__(self, a: activities.Activity, run_date: dt.date, limits: Limits) -> None:
        self.a, self.run_date, self.limits = a, run_date, limits
        self.kept: dict[tuple[str, int], dict[str, Any]] = {}  # slice -> {"ts": ..., measure: ...}
        self.rejects: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.read: dict[tuple[str, int], int] = {}
        self.duplicates: dict[tuple[str, int], int] = {}
        self.daily: dict[tuple[str, int], dict[str, Any]] = {}
        self.unattributed: list[dict[str, Any]] = []
        empty = np.zeros(0, dtype=object)
        self.value_rows: tuple[np.ndarray, np.ndarray, np.ndarray] = (empty, np.zeros(0, np.int64), np.zeros(0))
        self.extras: list[tuple[Any, ...]] = []  # measure, participant, ts, value, files, file, row of each

    def _count(self, target: dict, key: tuple[str, int], n: int = 1) -> None:
        target[key] = target.get(key, 0) + n

    def _attributed(self, rows: _Rows, i: int) -> tuple[str, int] | None:
        if not rows.time_ok[i] or not rows.pid[i]:
            return None
        return (str(rows.pid[i]), int(rows.ts[i] // _DAY_US))

    def _reject(self, rows: _Rows, i: int, rule_id: str, record: str = "intraday") -> None:
        key = self._attributed(rows, i)
        item = _reject(rows, i, rule_id, record)
        if key is None:
            self.unattributed.append(item)
            return
        self.rejects.setdefault(key, []).append(item)
        self._count(self.read, key)
        if rule_id == "duplicate_timestamp":
            self._count(self.duplicates, key)

    def add_malformed(self, name: str, lines: list[str]) -> None:
        for i, text in enumerate(lines):
            self.unattributed.append(
                {
                    "record_type": "intraday",
                    "rule_id": "csv_row_malformed",
                    "raw_value": text[:500],
                    "message": f"{rule('csv_row_malformed').message} ({name}_merged.csv)",
                    "ts": None,
                    "row_index": i,
                }
            )

    def add_measure(self, measure: str, forms: list[_Rows], second: bool) -> None:
        m = next(x for x in self.a.measures if x.name == measure)
        bounds = self.limits.range(f"{self.a.name}.{measure}")
        for rows in forms:
            _check_measure(rows.value, m, bounds, rows.codes, 1 / 60 if second else 1)
            if not second:
                _set(rows.codes, rows.time_ok & (rows.ts % (60 * _US) != 0), "time_off_grid")
        pid = np.concatenate([r.pid for r in forms])
        ts = np.concatenate([r.ts for r in forms])
        codes = np.concatenate([r.codes for r in forms])
        which = np.concatenate([np.full(len(r.pid), k) for k, r in enumerate(forms)])
        index = np.concatenate([np.arange(len(r.pid)) for r in forms])
        repeated = _first_per_instant(pid, ts, np.flatnonzero(codes == 0))
        codes[repeated] = _CODE["duplicate_timestamp"]
        for pos in np.flatnonzero(codes):
            self._reject(forms[which[pos]], int(index[pos]), _ROW_RULES[codes[pos]])
        good = np.flatnonzero(codes == 0)
        value = np.concatenate([r.value for r in forms])[good]
        if measure == "value":
            self.value_rows = (pid[good], ts[good], value)
        else:
            self.extras.append((measure, pid[good], ts[good], value, forms, which[good], index[good]))

    def _join(self) -> None:
        """Level and METs joined to the kept calories row of their participant and minute (one sorted search
        per column), then the kept rows split into participant-days."""
        pid, ts, value = self.value_rows
        n = len(pid)
        columns: dict[str, np.ndarray] = {"value": value}
        for measure, epid, ets, evalue, forms, which, index in self.extras:
            keys = _keys(np.concatenate([pid, epid]), np.concatenate([ts, ets]))
            order = np.argsort(keys[:n], kind="stable")
            ordered = keys[:n][order]
            pos = np.searchsorted(ordered, keys[n:])
            clipped = np.minimum(pos, max(n - 1, 0))
            hit = (pos < n) & (ordered[clipped] == keys[n:]) if n else np.zeros(len(epid), dtype=bool)
            column = columns.setdefault(measure, np.full(n, np.nan))
            column[order[clipped[hit]]] = evalue[hit]
            for k in np.flatnonzero(~hit):
                self._reject(forms[which[k]], int(index[k]), "measure_without_value")
        if not n:
            return
        day_keys = _keys(pid, ts, _DAY_US)
        order = np.lexsort((ts, day_keys))
        day_keys = day_keys[order]
        cuts = (np.flatnonzero(day_keys[1:] != day_keys[:-1]) + 1).tolist()
        for start, end in zip([0, *cuts], [*cuts, n], strict=True):
            rows = order[start:end]
            key = (str(pid[rows[0]]), int(ts[rows[0]] // _DAY_US))
            self.kept[key] = {"ts": ts[rows], **{name: col[rows] for name, col in columns.items()}}
            self._count(self.read, key, end - start)

    def add_daily(self, rows: _Rows) -> None:
        """The daily total (or resting heart rate) of each participant-day; several rows of one day: none kept."""
        a = self.a
        candidates: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = {}
        for i in range(len(rows.pid)):
            code = _ROW_RULES[rows.codes[i]]
            if code in ("missing_field", "time_invalid") and self._attributed(rows, i) is None:
                self._reject(rows, i, code, "daily")
                continue
            number = float(rows.value[i])
            if a.daily == "heart":
                lo, hi = self.limits.range("heart.resting_heart_rate")
                if code or not (lo <= number <= hi and number.is_integer()):
                    self._reject(rows, i, "resting_hr_out_of_range", "daily")
                    continue
                record: dict[str, Any] = {"resting_heart_rate": int(number)}
            else:
                integral = a.daily_kind != "int" or number.is_integer()
                if code or number < 0 or not np.isfinite(number) or not integral:
                    self._reject(rows, i, "daily_value_invalid", "daily")
                    continue
                record = {"value": int(number) if a.daily_kind == "int" else number}
            key = self._attributed(rows, i)
            assert key is not None
            candidates.setdefault(key, []).append((i, record))
        for key, found in candidates.items():
            if len(found) == 1:
                self.daily[key] = found[0][1]
                self._count(self.read, key)
            else:
                for i, _ in found:
                    self._reject(rows, i, "daily_record_repeated", "daily")

    def result(self, has_intraday: bool, has_daily: bool) -> ExportRead:
        self._join()
        keys = sorted(set(self.kept) | set(self.rejects) | set(self.daily))
        slices = []
        epoch = dt.date(1970, 1, 1)
        for key in keys:
            participant, days = key
            day = epoch + dt.timedelta(days=days)
            read = self.read.get(key, 0)
            if day > self.run_date:
                detail = f"{day} is after the run date {self.run_date}"
                slices.append(Slice(participant, day, rejected=FileRejected("date_in_future", detail, read)))
                continue
            kept = self.kept.get(key, {"ts": np.zeros(0, np.int64), "value": np.zeros(0)})
            n = len(kept["ts"])
            measures = {m.name: kept.get(m.name, np.full(n, np.nan)).astype(np.float64) for m in self.a.measures}
            daily = self.daily.get(key)
            findings = _not_integral(self.a, {k: v[~np.isnan(v)] for k, v in measures.items()})
            if daily and "value" in daily and n:
                tolerance = self.limits.tolerance(self.a.name)
                if abs(float(measures["value"].sum()) - daily["value"]) > tolerance + 1e-9:
                    detail = f"daily total and intraday sum differ by more than {tolerance:g}"
                    findings.append(("daily_total_mismatch", detail))
            declared = files.daily_of(self.a.name)
            if has_daily and daily is None and n and declared is not None and not declared.optional:
                findings.append(("daily_summary_missing", "no dailyActivity row for the day"))
            if has_intraday and daily is not None and not n and key not in self.rejects:
                findings.append(("intraday_missing", "a dailyActivity row without minute rows"))
            rejects = self.rejects.get(key, [])
            duplicates = self.duplicates.get(key, 0)
            parsed = Parsed(
                date=day,
                dataset_type="second" if self.a.name == "heart" else "minute",
                dataset_interval=1,
                ts=kept["ts"].astype(np.int64),
                measures=measures,
                daily=daily,
                zones=[],
                rejects=rejects,
                findings=findings,
                rows_read=read,
                rows_rejected=len(rejects) - duplicates,
                rows_duplicate=duplicates,
            )
            slices.append(Slice(participant, day, parsed=parsed))
        return ExportRead(slices, self.unattributed)
