"""Rows of an export file (many participants or many days in one file) checked and gathered per participant-day.

Shared by the readers of whole exports (Fitabase CSV, Fitbit account exports): each reads its files into
:class:`Rows` (participant, local time, value, the raw text for rejects), and :class:`Assembly` applies the
rules as for the Web API (``missing_field``, ``time_invalid``, ``value_wrong_type``, ``value_out_of_range``,
``time_off_grid`` for a minute file's row not on the minute, ``duplicate_timestamp``: the first row of a
participant's instant kept, files in the order given), joins the extra measures (calories ``level``, ``mets``)
to their minute, and splits everything into participant-days, each a :class:`Slice`. A level or METs row whose
minute has no kept value is ``measure_without_value``; a row without a participant or a valid time belongs to no
participant-day and is returned apart (``unattributed``). Columnar throughout: numpy and pyarrow, no Python
object per row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from . import activities
from .limits import Limits
from .parse import _CODE, _ROW_RULES, FileRejected, Parsed, _check_measure, _not_integral, _set
from .rules import rule

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
    empty: list[str] = field(default_factory=list)  # files read that hold no measurement (``no data``)


@dataclass
class Rows:
    """One file's rows, typed: participant text, local time (µs), value, rule code, and their raw text.

    ``name`` is the file's name, quoted in every reject message."""

    name: str
    pid: np.ndarray  # int64 participant codes of :class:`Participants` (-1 when missing)
    ts: np.ndarray  # int64 µs, local wall clock; meaningless where the time is invalid
    time_ok: np.ndarray
    value: np.ndarray
    codes: np.ndarray
    texts: tuple[pa.Array, ...] = ()  # the columns whose text, joined by commas, shows a rejected row
    utc: np.ndarray | None = None  # int64 µs, the instant, where the file gives it (-1: unknown)
    positions: np.ndarray | None = None  # the row number in the file of each row, where not ``arange``

    def text(self, i: int) -> str:
        return ",".join(str(col[i].as_py()) for col in self.texts)


def header(raw: bytes, name: str) -> list[str]:
    first = raw[: raw.find(b"\n") if b"\n" in raw else len(raw)].decode("utf-8-sig", "replace")
    names = next(csv.reader(io.StringIO(first)), [])
    if not names:
        raise FileRejected("csv_invalid", f"{name}: no header row")
    return [h.strip() for h in names]


_BLOCK_BYTES = 8 << 20  # CSV read in blocks of this size: only the rows kept are held


@dataclass
class CsvRead:
    table: pa.Table  # the named columns as text
    malformed: list[str]  # the lines the reader could not split (kept for the rejects)
    rows: np.ndarray | None = None  # the file's row number of each row kept (None: every row was)


def read_csv(
    raw: bytes, name: str, columns: list[str], select: Callable[[pa.RecordBatch], pa.Array] | None = None
) -> CsvRead:
    """The named columns as text, block by block, keeping the rows ``select`` marks (all without it)."""
    names = header(raw, name)
    missing = [c for c in columns if c not in names]
    if missing:
        raise FileRejected("csv_invalid", f"{name}: no column {missing[0]!r}")
    malformed: list[str] = []

    def keep(row: Any) -> str:
        malformed.append(row.text)
        return "skip"

    batches: list[pa.RecordBatch] = []
    rows: list[np.ndarray] = []
    seen = 0
    try:
        reader = pacsv.open_csv(
            pa.BufferReader(raw),
            read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(invalid_row_handler=keep),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()), include_columns=columns, strings_can_be_null=False
            ),
        )
        for batch in reader:
            if select is None:
                batches.append(batch)
                continue
            mask = select(batch)
            batches.append(batch.filter(mask))
            rows.append(seen + np.flatnonzero(mask.to_numpy(zero_copy_only=False)))
            seen += batch.num_rows
        schema = reader.schema
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        raise FileRejected("csv_invalid", f"{name}: {type(exc).__name__}") from None
    kept = (np.concatenate(rows) if rows else np.zeros(0, np.int64)) if select is not None else None
    return CsvRead(pa.Table.from_batches(batches, schema=schema), malformed, kept)


_PLAIN_NUMBER = np.zeros(256, bool)
_PLAIN_NUMBER[np.frombuffer(b"0123456789.eE-", np.uint8)] = True


def _only(col: pa.Array | pa.ChunkedArray, allowed: np.ndarray) -> bool:
    """Whether every byte of a text column's cells is one ``allowed`` marks (one pass over the bytes)."""
    for chunk in col.chunks if isinstance(col, pa.ChunkedArray) else [col]:
        if not pa.types.is_string(chunk.type):
            return False
        if not len(chunk) or chunk.buffers()[2] is None:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        data = np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        if not allowed[data].all():
            return False
    return True


def numbers(col: pa.Array, codes: np.ndarray) -> np.ndarray:
    """The numbers of a text column; an empty cell is ``missing_field``, anything but a decimal number (no
    ``nan``, ``inf`` or sign other than ``-``) is ``value_wrong_type`` (read as 0)."""
    if _only(col, _PLAIN_NUMBER):  # nothing to check cell by cell
        try:
            return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:  # an empty cell, "1.2.3", "-": cell by cell
            pass
    empty = pc.equal(pc.utf8_trim_whitespace(col), "").to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(col, _NUMBER).to_numpy(zero_copy_only=False)
    _set(codes, empty, "missing_field")
    _set(codes, ~ok, "value_wrong_type")
    clean = pc.if_else(pa.array(ok), pc.utf8_trim_whitespace(col), "0")
    return pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False)


def strptime_exact(col: pa.Array | pa.ChunkedArray, fmt: str) -> pa.Array | pa.ChunkedArray:
    """``strptime`` of zero-padded texts, null where the time written back differs from the text: Arrow's
    ``strptime`` is lenient (``02/30/24`` becomes March 1, second 60 the next minute)."""
    parsed = pc.strptime(col, format=fmt, unit="us", error_is_null=True)
    written = pc.strftime(parsed.cast(pa.timestamp("s")), format=fmt)  # whole seconds: %S without a fraction
    same = pc.fill_null(pc.equal(written, col), False)
    return pc.if_else(same, parsed, pa.scalar(None, parsed.type))


_EPOCH_TEXT = "1970-01-01T00:00:00Z"


def utc_instants(col: pa.Array, shape: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """UTC microseconds of RFC 3339 instants ``2024-10-27T00:00:04[.fraction]Z`` (the first six fraction digits
    kept), and which are real times: ``2024-02-30``, hour 24 or second 60 are not (Arrow's ``strptime`` alone
    would raise or move them). A null counts as valid (0): the caller checks presence. With ``shape`` (a
    regular expression), a text or null that does not match it is not valid either."""
    valid = np.ones(len(col), dtype=bool)
    text = pc.fill_null(col, _EPOCH_TEXT)
    if shape is not None:
        matches = pc.fill_null(pc.match_substring_regex(col, shape), False)
        text = pc.if_else(matches, text, _EPOCH_TEXT)
        valid = matches.to_numpy(zero_copy_only=False)
    base = strptime_exact(pc.utf8_slice_codeunits(text, 0, 19), "%Y-%m-%dT%H:%M:%S")
    valid &= pc.is_valid(base).to_numpy(zero_copy_only=False)
    seconds = pc.fill_null(base.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    fraction = pc.utf8_slice_codeunits(pc.replace_substring(text, "Z", ""), 20, 26)
    padded = pc.utf8_rpad(pc.if_else(pc.equal(pc.utf8_length(fraction), 0), "0", fraction), 6, "0")
    return np.where(valid, seconds + pc.cast(padded, pa.int64()).to_numpy(zero_copy_only=False), 0), valid


def times(col: pa.Array | pa.ChunkedArray, formats: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds of zero-padded times of a text column in the first of ``formats`` that reads them exactly,
    and which were read. The column is read as it is; only the cells that fail get trimmed and the other forms
    tried."""
    first = strptime_exact(col, formats[0])
    ok = pc.is_valid(first).to_numpy(zero_copy_only=False)
    ts = pc.fill_null(first.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    if ok.all():
        return ts, ok
    ts, ok = ts.copy(), ok.copy()  # writable
    missing = np.flatnonzero(~ok)
    rest = pc.utf8_trim_whitespace(col.take(pa.array(missing)))
    for fmt in formats:
        got = strptime_exact(rest, fmt)
        hit = pc.is_valid(got).to_numpy(zero_copy_only=False) & ~ok[missing]
        ts[missing[hit]] = pc.fill_null(got.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)[hit]
        ok[missing[hit]] = True
    return ts, ok


class Participants:
    """Participant ids as int64 codes shared by every file of one read (no Python string per row)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def _code(self, text: str) -> int:
        text = text.strip()
        if not text:
            return -1
        if text not in self._codes:
            self._codes[text] = len(self.names)
            self.names.append(text)
        return self._codes[text]

    def encode(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Codes of ``ids`` (text, whitespace trimmed), -1 for an empty id."""
        encoded = ids.dictionary_encode()
        chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
        if not chunks or not len(ids):
            return np.zeros(0, np.int64)
        out = []
        for chunk in chunks:  # the chunks of one encoding share its dictionary; mapped once per dictionary
            mapping = np.array([self._code(t) for t in chunk.dictionary.to_pylist()] or [0], np.int64)
            out.append(mapping[chunk.indices.to_numpy(zero_copy_only=False)])
        return np.concatenate(out) if len(out) > 1 else out[0]


def typed(
    name: str, pid: pa.Array, ts: np.ndarray, ok: np.ndarray, values: pa.Array, texts: tuple, ids: Participants
) -> Rows:
    """A file's rows from their text columns: participant and value checked, times already read (``ok``)."""
    n = len(pid)
    codes = np.zeros(n, dtype=np.int8)
    pid_codes = ids.encode(pid)
    _set(codes, pid_codes < 0, "missing_field")
    _set(codes, ~ok, "time_invalid")
    value = numbers(values, codes)
    return Rows(name, pid_codes, ts, ok, value, codes, texts=texts)


def _reject(rows: Rows, i: int, rule_id: str, record: str = "intraday") -> dict[str, Any]:
    return {
        "record_type": record,
        "rule_id": rule_id,
        "raw_value": rows.text(i),
        "message": f"{rule(rule_id).message} ({rows.name})",
        "ts": int(rows.ts[i]) if rows.time_ok[i] and record == "intraday" else None,
        "row_index": int(rows.positions[i]) if rows.positions is not None else int(i),
    }


def _keys(pid: np.ndarray, ts: np.ndarray, unit: int = _US) -> np.ndarray:
    """One int64 per (participant code, ``ts // unit``), in the same order as (participant, time)."""
    if not len(pid):
        return np.zeros(0, np.int64)
    steps = ts // unit
    return (pid << 36) + (steps - steps.min())


def _in_order(pid: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Positions putting rows in (participant, time) order, stable: rows of one instant keep their order; None
    when they are in that order already (export files are usually written so: one pass finds it, no sort)."""
    if len(pid) > 1:
        later, same = pid[1:] > pid[:-1], pid[1:] == pid[:-1]  # boolean masks: a byte a row
        if not (later | (same & (ts[1:] >= ts[:-1]))).all():
            return np.lexsort((ts, pid))
    return None


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    """``arrays`` as one (the array itself when there is one: no copy)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class Assembly:
    """The rows of one activity gathered per participant-day."""

    def __init__(self, a: activities.Activity, run_date: dt.date, limits: Limits, ids: Participants) -> None:
        self.a, self.run_date, self.limits, self.ids = a, run_date, limits, ids
        self.kept: dict[tuple[str, int], dict[str, Any]] = {}  # slice -> {"ts": ..., measure: ...}
        self.rejects: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.read: dict[tuple[str, int], int] = {}
        self.duplicates: dict[tuple[str, int], int] = {}
        self.daily: dict[tuple[str, int], dict[str, Any]] = {}
        self.unattributed: list[dict[str, Any]] = []
        empty = np.zeros(0, dtype=np.int64)
        self.value_rows: tuple[np.ndarray, np.ndarray, np.ndarray] = (empty, np.zeros(0, np.int64), np.zeros(0))
        self.value_utc: np.ndarray | None = None  # the instants of the kept values, where the files give them
        # measure, participant, ts, value, the files, where each file's rows begin, each row's place (None: k)
        self.extras: list[tuple[Any, ...]] = []

    def _count(self, target: dict, key: tuple[str, int], n: int = 1) -> None:
        target[key] = target.get(key, 0) + n

    def _attributed(self, rows: Rows, i: int) -> tuple[str, int] | None:
        if not rows.time_ok[i] or rows.pid[i] < 0:
            return None
        return (self.ids.names[rows.pid[i]], int(rows.ts[i] // _DAY_US))

    def _reject(self, rows: Rows, i: int, rule_id: str, record: str = "intraday") -> None:
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
                    "message": f"{rule('csv_row_malformed').message} ({name})",
                    "ts": None,
                    "row_index": i,
                }
            )

    def add_measure(self, measure: str, forms: list[Rows], second: bool) -> None:
        m = next(x for x in self.a.measures if x.name == measure)
        bounds = self.limits.range(f"{self.a.name}.{measure}")
        for rows in forms:
            _check_measure(rows.value, m, bounds, rows.codes, 1 / 60 if second else 1)
            if not second:
                _set(rows.codes, rows.time_ok & (rows.ts % (60 * _US) != 0), "time_off_grid")
        pid, ts, codes = _cat([r.pid for r in forms]), _cat([r.ts for r in forms]), _cat([r.codes for r in forms])
        starts = np.cumsum([0, *(len(r.pid) for r in forms)])  # where each file's rows begin
        good = np.flatnonzero(codes == 0) if codes.any() else None  # None: every row (no copy of the columns)
        order = _in_order(pid, ts) if good is None else _in_order(pid[good], ts[good])
        if order is not None:  # in priority order: the files as given, then their rows
            good = order if good is None else good[order]
        gp, gt = (pid, ts) if good is None else (pid[good], ts[good])
        same = np.zeros(len(gp), dtype=bool)  # repeats the (participant, instant) before it: the first kept
        np.logical_and(gp[1:] == gp[:-1], gt[1:] == gt[:-1], out=same[1:])
        if same.any():
            kept = np.arange(len(pid)) if good is None else good
            codes[kept[same]] = _CODE["duplicate_timestamp"]
            good = kept[~same]
        for pos in np.flatnonzero(codes):
            k = int(np.searchsorted(starts, pos, "right")) - 1
            self._reject(forms[k], int(pos - starts[k]), _ROW_RULES[codes[pos]])
        value = _cat([r.value for r in forms])
        kept_rows = (pid, ts, value) if good is None else (pid[good], ts[good], value[good])
        if measure == "value":  # kept in (participant, time) order
            self.value_rows = kept_rows
            if any(r.utc is not None for r in forms):
                utc = _cat([r.utc if r.utc is not None else np.full(len(r.pid), -1, np.int64) for r in forms])
                self.value_utc = utc if good is None else utc[good]
        else:
            self.extras.append((measure, *kept_rows, forms, starts, good))

    def _join(self) -> None:
        """Level and METs joined to the kept calories row of their participant and minute (one sorted search
        per column), then the kept rows split into participant-days."""
        pid, ts, value = self.value_rows
        n = len(pid)
        columns: dict[str, np.ndarray] = {"value": value}
        if self.value_utc is not None:
            columns["utc"] = self.value_utc
        for measure, epid, ets, evalue, forms, starts, positions in self.extras:
            keys = _keys(np.concatenate([pid, epid]), np.concatenate([ts, ets]))
            ordered = keys[:n]  # the value rows are in (participant, time) order: so are their keys
            pos = np.searchsorted(ordered, keys[n:])
            clipped = np.minimum(pos, max(n - 1, 0))
            hit = (pos < n) & (ordered[clipped] == keys[n:]) if n else np.zeros(len(epid), dtype=bool)
            column = columns.setdefault(measure, np.full(n, np.nan))
            column[clipped[hit]] = evalue[hit]
            for k in np.flatnonzero(~hit):
                pos = k if positions is None else positions[k]  # the row among the files' rows
                f = int(np.searchsorted(starts, pos, "right")) - 1
                self._reject(forms[f], int(pos - starts[f]), "measure_without_value")
        if not n:
            return
        day = ts // _DAY_US
        cuts = (np.flatnonzero((pid[1:] != pid[:-1]) | (day[1:] != day[:-1])) + 1).tolist()
        for start, end in zip([0, *cuts], [*cuts, n], strict=True):
            key = (self.ids.names[pid[start]], int(day[start]))
            self.kept[key] = {"ts": ts[start:end], **{name: col[start:end] for name, col in columns.items()}}
            self._count(self.read, key, end - start)

    def add_daily(self, *daily_files: Rows) -> None:
        """The daily total (or resting heart rate) of each participant-day; several rows of one day (in one file
        or several): none kept."""
        candidates: dict[tuple[str, int], list[tuple[Rows, int, dict[str, Any]]]] = {}
        for rows in daily_files:
            for i in range(len(rows.pid)):
                record = self._daily_record(rows, i)
                key = self._attributed(rows, i)
                if record is not None and key is not None:
                    candidates.setdefault(key, []).append((rows, i, record))
        for key, found in candidates.items():
            if len(found) == 1:
                self.daily[key] = found[0][2]
                self._count(self.read, key)
            else:
                for rows, i, _ in found:
                    self._reject(rows, i, "daily_record_repeated", "daily")

    def _daily_record(self, rows: Rows, i: int) -> dict[str, Any] | None:
        """The daily record of row ``i``, or None when the row is rejected."""
        a = self.a
        code = _ROW_RULES[rows.codes[i]]
        if code in ("missing_field", "time_invalid") and self._attributed(rows, i) is None:
            self._reject(rows, i, code, "daily")
            return None
        number = float(rows.value[i])
        if a.daily == "heart":
            lo, hi = self.limits.range("heart.resting_heart_rate")
            if code or not (lo <= number <= hi and number.is_integer()):
                self._reject(rows, i, "resting_hr_out_of_range", "daily")
                return None
            return {"resting_heart_rate": int(number)}
        integral = a.daily_kind != "int" or number.is_integer()
        if code or number < 0 or not np.isfinite(number) or not integral:
            self._reject(rows, i, "daily_value_invalid", "daily")
            return None
        return {"value": int(number) if a.daily_kind == "int" else number}

    def result(self, has_intraday: bool, has_daily: bool, daily_file: str, daily_required: bool) -> ExportRead:
        """The participant-days; ``daily_file`` names the file of the daily rows in findings, and
        ``daily_required`` says whether a day with minute rows but no daily row is a finding."""
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
            if has_daily and daily is None and n and daily_required:
                findings.append(("daily_summary_missing", f"no {daily_file} row for the day"))
            if has_intraday and daily is not None and not n and key not in self.rejects:
                findings.append(("intraday_missing", f"a {daily_file} row without intraday rows"))
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
                ts_utc=kept["utc"].astype(np.int64) if "utc" in kept else None,
            )
            slices.append(Slice(participant, day, parsed=parsed))
        return ExportRead(slices, self.unattributed)
