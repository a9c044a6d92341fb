"""Transform: source documents -> validated, typed staging Parquet (one run's staging area).

Documents are processed in bounded chunks, on all cores (a process pool). Each chunk
writes its own Parquet parts for every staged table and returns only small counts, so
memory does not grow with the number of files and nothing large crosses processes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.abc
import json
import multiprocessing
import os
import posixpath
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from . import activities, lifeline, schema
from .account_export.reader import parse_account_export
from .fitabase.bundles import slice_id
from .fitabase.reader import parse_export
from .forgotten import Forgetting
from .google_health.reader import parse_delivery
from .layouts import LayoutError, PathInfo, match
from .limits import DEFAULT_LIMITS, Limits
from .parse import FileContext, FileRejected, Parsed, parse_document
from .rules import rule
from .sources import Reader, SourceDoc, filesystem, full_uri, is_transient
from .timezones import FLAGS, ZoneMap, convert

_EPOCH = dt.date(1970, 1, 1)
_EXPORTS = ("fitabase", "account-export")  # layouts of whole exports: many days (and participants) a delivery
CHUNK_BYTES = 16 << 20  # measured in bench/: faster and lighter than 32 MB on 2 cores
CHUNK_DOCS = 400
QUARANTINE_FULL_BYTES = 1 << 20  # a larger reject keeps its first QUARANTINE_HEAD_BYTES, its size and SHA-256
QUARANTINE_HEAD_BYTES = 64 << 10


@dataclass(frozen=True)
class RunContext:
    run_id: str
    run_date: dt.date
    staging_uri: str  # <lake>/staging/run_id=<id>
    quarantine_uri: str  # <lake>/quarantine/run_id=<id>
    processed_at: dt.datetime
    limits: Limits = DEFAULT_LIMITS
    zones: ZoneMap | None = None  # participant time zones; None or empty: ts_utc stays null
    forgetting: Forgetting | None = None  # withdrawn participants: their slices of whole exports are dropped


@dataclass
class ChunkResult:
    files: int = 0
    bytes_read: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)  # read / valid / rejected / duplicate
    rules: Counter[str] = field(default_factory=Counter)

    def add(self, other: ChunkResult) -> None:
        self.files += other.files
        self.bytes_read += other.bytes_read
        self.statuses.update(other.statuses)
        self.rows.update(other.rows)
        self.rules.update(other.rules)


class _Columns:
    """Intraday arrays of one activity, gathered file by file, assembled once per chunk."""

    def __init__(self, activity: activities.Activity) -> None:
        self.activity = activity
        self.ts: list[np.ndarray] = []
        self.measures: dict[str, list[np.ndarray]] = {m.name: [] for m in activity.measures}
        self.lengths: list[int] = []
        self.context: list[tuple[str, int, str]] = []  # participant, date (days), source_file
        self.utc: list[np.ndarray | None] = []  # the instants a source gives (Google Health), per file

    def add(self, parsed: Parsed, participant: str, source_file: str) -> None:
        if not len(parsed.ts):
            return
        self.ts.append(parsed.ts)
        for name, arr in parsed.measures.items():
            self.measures[name].append(arr)
        self.lengths.append(len(parsed.ts))
        self.context.append((participant, (parsed.date - _EPOCH).days, source_file))
        self.utc.append(parsed.ts_utc)

    def table(self, run_id: str, zones: ZoneMap | None = None) -> pa.Table | None:
        """The chunk's rows, grouped by day (files in their order within a day), so that the production
        lake takes each day as one slice; the repeated strings as dictionary columns (no string per row).
        ``ts_utc``/``tz_flag`` come from the zone of each file's participant-day (null without one)."""
        if not self.lengths:
            return None
        participants, days, files = zip(*self.context, strict=True)
        order = np.argsort(np.array(days, dtype=np.int32), kind="stable")
        lengths = np.array(self.lengths, dtype=np.int64)[order]
        n = int(lengths.sum())
        per_file = pa.array([participants[i] for i in order], pa.string()).dictionary_encode()
        cols: dict[str, Any] = {
            "participant_id": pa.DictionaryArray.from_arrays(
                np.repeat(per_file.indices.to_numpy(), lengths), per_file.dictionary
            ),
            "date": pa.array(np.repeat(np.array(days, dtype=np.int32)[order], lengths), pa.int32()).cast(pa.date32()),
            "ts": pa.array(np.concatenate([self.ts[i] for i in order]), schema.TS),
        }
        cols["ts_utc"], cols["tz_flag"] = self._utc(order, n, zones)
        for name, parts in self.measures.items():  # NaN: a measure the source does not give (null)
            cols[name] = pa.array(np.concatenate([parts[i] for i in order]), from_pandas=True)
        cols["source_file"] = pa.DictionaryArray.from_arrays(
            np.repeat(np.arange(len(files), dtype=np.int32), lengths), pa.array([files[i] for i in order], pa.string())
        )
        cols["run_id"] = pa.DictionaryArray.from_arrays(np.zeros(n, dtype=np.int32), pa.array([run_id]))
        target = schema.INTRADAY[self.activity.name].schema
        return pa.Table.from_arrays([cols[f.name] for f in target], schema=_dictionary_schema(target))

    def _utc(self, order: np.ndarray, n: int, zones: ZoneMap | None) -> tuple[pa.Array, pa.Array]:
        """UTC timestamps and DST flags of the chunk's rows (in ``order``): the instants a source gives, else one
        vectorised conversion per file by the participant's zone."""
        no_zones = zones is None or zones.empty
        if no_zones and all(u is None for u in self.utc):
            return pa.nulls(n, schema.TS), pa.nulls(n, _FLAG_TYPE)
        utc_parts, code_parts = [], []
        for i in order:
            participant, days, _ = self.context[i]
            day = _EPOCH + dt.timedelta(days=days)
            given = self.utc[i]
            if given is not None or no_zones:
                utc_parts.append(given if given is not None else np.full(len(self.ts[i]), -1, np.int64))
                code_parts.append(np.zeros(len(self.ts[i]), np.int8))
                continue
            assert zones is not None
            utc, codes = convert(self.ts[i], day, zones.zone_for(participant, day))
            utc_parts.append(utc)
            code_parts.append(codes)
        utc, codes = np.concatenate(utc_parts), np.concatenate(code_parts)
        missing = utc == -1
        ts_utc = pa.array(utc, schema.TS, mask=missing if missing.any() else None)
        flagged = codes != 0
        if not flagged.any():
            return ts_utc, pa.nulls(n, _FLAG_TYPE)
        indices = pa.array(codes.astype(np.int32) - 1, pa.int32(), mask=~flagged)
        return ts_utc, pa.DictionaryArray.from_arrays(indices, pa.array(FLAGS, pa.string()))


def _dictionary_schema(target: pa.Schema) -> pa.Schema:
    """``target`` with its repeated string columns dictionary-encoded (the Parquet files read as strings)."""
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), pa.string()), f.nullable) if f.name in _DICTIONARY else f
            for f in target
        ]
    )


@dataclass(frozen=True)
class _Sample:
    """What quarantine keeps of a large reject: its first bytes, its size and its SHA-256."""

    head: bytes
    size: int
    sha256: str


def _quarantine(
    ctx: RunContext, doc: SourceDoc, data: bytes | _Sample | list[tuple[SourceDoc, bytes]] | None
) -> str | None:
    """Keep a rejected document's raw bytes (of a delivery of several, joined), or of a large one a bounded
    sample (``<id>.raw``: the first bytes, ``<id>.json``: size and SHA-256); the file name never derives from
    the member name."""
    if data is None:
        return None
    if isinstance(data, list):
        data = _joined(data)
    if isinstance(data, bytes) and len(data) > QUARANTINE_FULL_BYTES:
        data = _Sample(data[:QUARANTINE_HEAD_BYTES], len(data), hashlib.sha256(data).hexdigest())
    digest = hashlib.sha256(doc.source_file.encode()).hexdigest()[:24]
    path = posixpath.join(ctx.quarantine_uri, f"{digest}.raw")
    qfs, qpath = filesystem(path)
    qfs.makedirs(posixpath.dirname(qpath), exist_ok=True)
    with qfs.open(qpath, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.head)
    if isinstance(data, _Sample):
        meta = {"source_file": doc.source_file, "size": data.size, "sha256": data.sha256, "kept_bytes": len(data.head)}
        with qfs.open(qpath[: -len(".raw")] + ".json", "w") as fh:
            json.dump(meta, fh)
    return path


def _too_large(reader: Reader, doc: SourceDoc) -> _Sample | None:
    """The bounded sample of a loose file above the size limit (None if it cannot be read now)."""
    try:
        return _Sample(*reader.sample(doc, QUARANTINE_HEAD_BYTES))
    except Exception:  # the reject stands; only its quarantine sample is missing
        return None


def _skipped(doc: SourceDoc, ctx: RunContext, rows: dict[str, list[dict[str, Any]]]) -> None:
    """A source entry that is not a document (a link to a directory, a FIFO): in the ledger as ``skipped``
    with its rule and reason, and one warning finding; never read, never a reject."""
    rows["pipeline_files"].append(_file_row(doc, ctx, status="skipped", rule_id=doc.rule_id, reason=doc.error))
    rows["data_quality_findings"].append(
        {
            "run_id": ctx.run_id,
            "source_file": doc.source_file,
            "participant_id": None,
            "activity": None,
            "date": None,
            "rule_id": doc.rule_id,
            "severity": "warning",
            "message": f"{rule(doc.rule_id).message}: {doc.error}",
        }
    )


def _joined(parts: list[tuple[SourceDoc, bytes]]) -> bytes:
    """The documents of one delivery as one blob (for the quarantine), each behind a line naming it."""
    return b"".join(f"--- {p.logical_path} ({len(b)} bytes)\n".encode() + b + b"\n" for p, b in parts)


def _file_row(doc: SourceDoc, ctx: RunContext, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source_file": doc.source_file,
        "fingerprint": doc.fingerprint,
        "size_bytes": doc.size,
        "participant_id": None,
        "activity": None,
        "date": None,
        "delivery_rank": doc.delivery_rank,
        "status": "staged",
        "rule_id": None,
        "reason": None,
        "run_id": ctx.run_id,
        "rows_read": 0,
        "rows_valid": 0,
        "rows_loaded": 0,
        "rows_rejected": 0,
        "rows_duplicate": 0,
        "rows_superseded": 0,
        "processed_at": ctx.processed_at,
    }
    row.update(values)
    return row


def _unreadable(transient: bool) -> str:
    """The rule of a document that could not be read: ``read_failed`` (retried by the next run) or not."""
    return "read_failed" if transient else "file_unreadable"


class _Staged:
    """What one chunk stages: intraday columns per activity, rows of the other tables, counters."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.result = ChunkResult()
        self.columns = {a.name: _Columns(a) for a in activities.ACTIVITIES}
        self.rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in schema.STAGED_TABLES if t.kind != "intraday"}

    def rejected(
        self, doc: SourceDoc, info: dict[str, Any], rej: FileRejected, quarantined: str | None, record: bool = True
    ) -> None:
        """A delivery rejected whole: its ledger row and (``record``) one reject record for the whole."""
        ctx, rows, result = self.ctx, self.rows, self.result
        reason = str(rej) + (f" (raw bytes kept at {quarantined})" if quarantined else "")
        rows["pipeline_files"].append(
            _file_row(
                doc,
                ctx,
                **info,
                status="rejected",
                rule_id=rej.rule_id,
                reason=reason,
                rows_read=rej.rows_read,
                rows_rejected=rej.rows_read,
            )
        )
        if record:
            rows["rejected_records"].append(
                {
                    "run_id": ctx.run_id,
                    "source_file": doc.source_file,
                    **info,
                    "ts": None,
                    "row_index": None,
                    "record_type": "file",
                    "rule_id": rej.rule_id,
                    "raw_value": None,
                    "message": reason,
                }
            )
        result.statuses["rejected"] += 1
        result.rules[rej.rule_id] += 1
        result.rows["read"] += rej.rows_read
        result.rows["rejected"] += rej.rows_read

    def skipped(self, doc: SourceDoc) -> None:
        """A document not read (its rule a warning): a skipped ledger row."""
        _skipped(doc, self.ctx, self.rows)
        self.result.statuses["skipped"] += 1
        self.result.rules[doc.rule_id or ""] += 1

    def rejects(self, source_file: str, info: dict[str, Any], rejects: list[dict[str, Any]]) -> None:
        for r in rejects:
            ts = r["ts"]
            self.rows["rejected_records"].append(
                {
                    "run_id": self.ctx.run_id,
                    "source_file": source_file,
                    **info,
                    **r,
                    "ts": None if ts is None else dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ts),
                }
            )
            self.result.rules[r["rule_id"]] += 1

    def parsed(self, doc: SourceDoc, pid: str, activity: activities.Activity, parsed: Parsed) -> None:
        """A parsed delivery of one participant-day-activity: its rows, rejects, findings and ledger row."""
        ctx, rows, result = self.ctx, self.rows, self.result
        name, day = activity.name, parsed.date
        base = {"participant_id": pid, "date": day}
        prov = {"source_file": doc.source_file, "run_id": ctx.run_id}
        self.columns[name].add(parsed, pid, doc.source_file)
        if parsed.daily is not None:
            rows[activity.daily_table].append({**base, **parsed.daily, **prov})
        rows["heart_rate_zones"].extend({**base, **z, **prov} for z in parsed.zones)
        self.rejects(doc.source_file, {"participant_id": pid, "activity": name, "date": day}, parsed.rejects)
        for rule_id, message in parsed.findings:
            rows["data_quality_findings"].append(
                {
                    "run_id": ctx.run_id,
                    "source_file": doc.source_file,
                    "participant_id": pid,
                    "activity": name,
                    "date": day,
                    "rule_id": rule_id,
                    "severity": rule(rule_id).severity,
                    "message": message,
                }
            )
            result.rules[rule_id] += 1
        rows["pipeline_deliveries"].append(
            {
                "participant_id": pid,
                "activity": name,
                "date": day,
                "source_file": doc.source_file,
                "delivery_rank": doc.delivery_rank,
                "run_id": ctx.run_id,
                "data_sources": parsed.sources,
            }
        )
        rows["pipeline_files"].append(
            _file_row(
                doc,
                ctx,
                participant_id=pid,
                activity=name,
                date=day,
                rows_read=parsed.rows_read,
                rows_valid=parsed.rows_valid,
                rows_rejected=parsed.rows_rejected,
                rows_duplicate=parsed.rows_duplicate,
            )
        )
        result.statuses["staged"] += 1
        result.rows["read"] += parsed.rows_read
        result.rows["valid"] += parsed.rows_valid
        result.rows["rejected"] += parsed.rows_rejected
        result.rows["duplicate"] += parsed.rows_duplicate

    def export(
        self, doc: SourceDoc, path: PathInfo, activity: activities.Activity, parts: list[tuple[SourceDoc, bytes]]
    ) -> None:
        """A whole export's files of one activity (Fitabase, Fitbit account export): each participant-day a
        delivery of its own (a slice); rows of no participant-day on one rejected ledger row of the bundle; an
        account export's files without measurements on skipped ledger rows of their own."""
        ctx = self.ctx
        if path.layout == "fitabase":
            named = [(posixpath.basename(p.logical_path), b) for p, b in parts]
            read = parse_export(activity.name, named, ctx.run_date, ctx.limits, path.part)
            not_loaded = "fitabase_not_loaded"
        else:
            by_path = {p.logical_path: p for p, _ in parts}
            named = [(p.logical_path, b) for p, b in parts]
            read = parse_account_export(activity.name, path.participant_id, named, ctx.run_date, ctx.limits, ctx.zones)
            not_loaded = "account_export_not_loaded"
            for empty in read.empty:
                self.skipped(replace(by_path[empty], rule_id="no_data_file", error="the file holds no measurements"))
        for s in read.slices:
            if ctx.forgetting and ctx.forgetting.forgotten(s.participant):
                self.result.statuses["forgotten"] += 1  # a withdrawn participant's day: nothing of it is kept
                continue
            piece = replace(doc, source_file=slice_id(doc.source_file, s.participant, s.date), size=0)
            info = {"participant_id": s.participant, "activity": activity.name, "date": s.date}
            if s.rejected is not None:
                self.rejected(piece, info, s.rejected, None)
            else:
                assert s.parsed is not None
                self.parsed(piece, s.participant, activity, s.parsed)
        if not read.slices and not read.unattributed:  # e.g. no Floors column in dailyActivity: nothing to hold
            k, n = path.part
            where = "the export" if n == 1 else f"part {k} of {n} of the export (its participants by id)"
            self.skipped(replace(doc, rule_id=not_loaded, error=f"{where} holds no {activity.name} rows"))
        if read.unattributed:
            n = len(read.unattributed)
            rej = FileRejected("rows_unattributed", f"{n} rows name no participant or no valid time", n)
            info = {"participant_id": None, "activity": activity.name, "date": None}
            self.rejected(doc, info, rej, None, record=False)  # the rows themselves are the records
            self.rejects(doc.source_file, info, read.unattributed)


def process_chunk(chunk_id: str, docs: Sequence[SourceDoc], ctx: RunContext) -> ChunkResult:
    """Parse, validate and stage one chunk of documents. Never raises for one bad document."""
    staged = _Staged(ctx)
    result, rows, columns = staged.result, staged.rows, staged.columns
    fs, _ = filesystem(docs[0].object_path if docs else ".")
    with Reader(fs) as reader:
        reader.prefetch(docs)
        for doc in docs:
            result.files += 1
            data: bytes | _Sample | list[tuple[SourceDoc, bytes]] | None = None
            info: dict[str, Any] = {}
            if doc.rule_id and rule(doc.rule_id).severity == "warning":
                staged.skipped(doc)
                continue
            try:
                if doc.rule_id == "file_too_large":
                    data = _too_large(reader, doc)
                if doc.error:
                    raise FileRejected(doc.rule_id or _unreadable(doc.transient), doc.error)
                try:
                    parts = reader.read_parts(doc)
                except Exception as exc:  # any I/O or archive fault rejects this document only
                    raise FileRejected(_unreadable(is_transient(exc)), f"{type(exc).__name__}: {exc}") from None
                data = parts[0][1] if len(parts) == 1 else parts  # joined only to be quarantined
                try:
                    path = match(doc.logical_path)
                except LayoutError as exc:
                    raise FileRejected("unknown_layout", f"{exc}: {doc.logical_path}") from None
                info = {"participant_id": path.participant_id or None, "activity": path.activity, "date": None}
                if path.layout not in _EXPORTS:
                    info["date"] = path.date
                activity = activities.BY_NAME.get(path.activity)
                if activity is None:
                    raise FileRejected("unknown_layout", f"unknown activity '{path.activity}'")
                if path.layout in _EXPORTS:
                    staged.export(doc, path, activity, parts)
                    result.bytes_read += sum(len(b) for _, b in parts)
                    continue
                fctx = FileContext(doc.source_file, path.participant_id, activity, path.date, ctx.run_date, ctx.limits)
                if path.layout == "google-health":
                    parsed = parse_delivery(list(zip(path.data_types, (b for _, b in parts), strict=True)), fctx)
                else:
                    parsed = parse_document(parts[0][1], fctx)
            except FileRejected as rej:
                staged.rejected(doc, info, rej, _quarantine(ctx, doc, data))
                continue
            result.bytes_read += sum(len(b) for _, b in parts)
            staged.parsed(doc, path.participant_id, activity, parsed)

    tables: dict[str, pa.Table | None] = {a: c.table(ctx.run_id, ctx.zones) for a, c in columns.items()}
    tables = {schema.INTRADAY[a].name: t for a, t in tables.items()}
    for name, items in rows.items():
        tables[name] = pa.Table.from_pylist(items, schema=schema.BY_NAME[name].schema) if items else None
    for name, table in tables.items():
        if table is None or not table.num_rows:
            continue
        if schema.BY_NAME[name].kind == "intraday":  # one file per day: the production lake links them
            for day, piece in _by_day(table):
                write_parquet(piece, posixpath.join(ctx.staging_uri, name, f"part-{chunk_id}-{day}.parquet"))
        else:
            if schema.BY_NAME[name].data:  # daily and zone rows sorted as in the lake, which adds the file as it is
                table = table.sort_by([("participant_id", "ascending"), ("date", "ascending")])
            write_parquet(table, posixpath.join(ctx.staging_uri, name, f"part-{chunk_id}.parquet"))
    return result


def _by_day(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """The rows of each day of a chunk's intraday table (grouped by day), each sorted by participant and time.

    Rows arrive sorted when the documents do (the usual case); otherwise the day's rows are sorted here.
    """
    days = table["date"].combine_chunks().cast(pa.int32()).to_numpy(zero_copy_only=False)
    cuts = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
    participant = table["participant_id"].combine_chunks()
    names = participant.dictionary.to_pylist()
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(np.array(names, dtype=object), kind="stable")] = np.arange(len(names))
    who = rank[participant.indices.to_numpy(zero_copy_only=False)]
    ts = table["ts"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
    out = []
    for start, end in zip(cuts[:-1], cuts[1:], strict=True):
        piece = table.slice(start, end - start)
        p, t = who[start:end], ts[start:end]
        if ((p[1:] < p[:-1]) | ((p[1:] == p[:-1]) & (t[1:] < t[:-1]))).any():
            piece = piece.take(pa.array(np.lexsort((t, p))))
        out.append(((_EPOCH + dt.timedelta(days=int(days[start]))).isoformat(), piece))
    return out


# Parquet options of the staging files: zstd at its fastest level, dictionaries only where values repeat
# (the rest would build a dictionary and abandon it), timestamps delta-encoded (about a third of the size,
# and cheaper to write), column statistics (the Iceberg lake adds these files as they are: its manifests
# carry each file's partition and value bounds from them). No Arrow schema is stored, so every reader
# sees plain strings.
_DICTIONARY = ("participant_id", "source_file", "run_id", "tz_flag")
_FLAG_TYPE = pa.dictionary(pa.int32(), pa.string())
_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "row_group_size": 1 << 20,
    "store_schema": False,
    "write_statistics": True,
}


_NAMING = ("participant_id", "source_file")  # the dictionary columns whose values name participants


def _used_dictionaries(table: pa.Table) -> pa.Table:
    """``table`` with each dictionary column's dictionary cut to the values its rows use: a chunk's dictionary
    holds every participant and file of the chunk, and Parquet stores it as it is, so a day's file would name
    participants (and files) it holds no row of."""
    for i, f in enumerate(table.schema):
        if f.name not in _NAMING or not pa.types.is_dictionary(f.type) or not table.num_rows:
            continue
        column = table.column(i)
        if column.num_chunks > 1:
            column = column.unify_dictionaries()
        dictionary = column.chunks[0].dictionary
        if len(dictionary) <= 1:
            continue
        nulls = [c.is_null().to_numpy(zero_copy_only=False) if c.null_count else None for c in column.chunks]
        indices = [
            (c.indices if null is None else c.indices.fill_null(0)).to_numpy(zero_copy_only=False)
            for c, null in zip(column.chunks, nulls, strict=True)
        ]
        used = np.zeros(len(dictionary), dtype=bool)
        for idx, null in zip(indices, nulls, strict=True):
            used[idx if null is None else idx[~null]] = True
        if used.all():
            continue
        remap = np.cumsum(used, dtype=np.int32) - 1
        kept = dictionary.take(pa.array(np.flatnonzero(used)))
        chunks = [
            pa.DictionaryArray.from_arrays(pa.array(remap[idx], f.type.index_type, mask=null), kept)
            for idx, null in zip(indices, nulls, strict=True)
        ]
        table = table.set_column(i, f, pa.chunked_array(chunks, f.type))
    return table


def write_parquet(table: pa.Table, uri: str) -> None:
    """Write one Parquet file (zstd), creating parent folders."""
    table = _used_dictionaries(table)
    fs, path = filesystem(uri)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    names = set(table.schema.names)
    options = dict(_PARQUET_OPTIONS, use_dictionary=[c for c in (*_DICTIONARY, "date") if c in names])
    if "ts" in names and table.schema.field("ts").nullable is False:
        options["column_encoding"] = {c: "DELTA_BINARY_PACKED" for c in ("ts", "ts_utc") if c in names}
    if isinstance(fs, LocalFileSystem):  # a new file (never rewritten in place: the lake may link it)
        tmp = f"{path}.tmp"
        pq.write_table(table, tmp, **options)
        os.replace(tmp, path)
        return
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh, **options)


def _chunk_order(doc: SourceDoc) -> tuple[str, str, str]:
    """Archive (members stay together), then day, then document: a chunk then holds few days."""
    try:
        day = match(doc.logical_path).date.isoformat()
    except LayoutError:
        day = ""
    return (doc.archive or "", day, doc.source_file)


def chunked(docs: Sequence[SourceDoc], workers: int) -> list[list[SourceDoc]]:
    """Contiguous chunks (zip members stay together), bounded in bytes and documents."""
    docs = sorted(docs, key=_chunk_order)
    total = sum(d.size for d in docs)
    target = max(1 << 20, min(CHUNK_BYTES, total // max(1, workers * 8)))  # small tail: workers end together
    chunks: list[list[SourceDoc]] = []
    current: list[SourceDoc] = []
    size = 0
    for d in docs:
        current.append(d)
        size += d.size
        if size >= target or len(current) >= CHUNK_DOCS:
            chunks.append(current)
            current, size = [], 0
    if current:
        chunks.append(current)
    return chunks


def transform(
    docs: Sequence[SourceDoc],
    ctx: RunContext,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    part_prefix: str = "",
) -> ChunkResult:
    """Stage ``docs``; calls ``on_progress(files_done)`` as chunks finish."""
    workers = workers or os.cpu_count() or 1
    chunks = chunked(docs, workers)
    total = ChunkResult()
    if workers <= 1 or len(chunks) <= 1:
        for i, chunk in enumerate(chunks):
            res = process_chunk(f"{part_prefix}{i:05d}", chunk, ctx)
            total.add(res)
            if on_progress:
                on_progress(res.files)
        return total
    mp = _forkserver()
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        mp_context=mp,
        initializer=_init_worker,
        initargs=(_worker_env(), os.getpid()),
    )
    with pool:
        pending = {pool.submit(process_chunk, f"{part_prefix}{i:05d}", chunk, ctx) for i, chunk in enumerate(chunks)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                res = fut.result()
                total.add(res)
                if on_progress:
                    on_progress(res.files)
    return total


# The fork server is started once per process, with the environment of that moment: each pool hands its
# workers the settings the parent has now (AWS credentials chain, endpoint, region, pipeline settings).
_ENV_PREFIXES = ("AWS_", "FITBIT_")
ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_system_allocator() -> None:
    """This process's Arrow buffers go to the C library's malloc, as the workers' do, unless the user chose a pool.

    For a process that commits and applies runs: mimalloc keeps what the commit's Parquet reads and DuckDB's
    Arrow results freed, ~50 MB at the peak of a 1,000-participant week (bench/RESULTS.md)."""
    if ARROW_POOL_ENV not in os.environ:
        pa.set_memory_pool(pa.system_memory_pool())


def _forkserver() -> multiprocessing.context.ForkServerContext:
    """The forkserver context; a fork server started from here dies with this process (see :mod:`.lifeline`)."""
    os.environ[lifeline.PARENT_PID_ENV] = str(os.getpid())
    # Workers allocate Arrow buffers with the C library's malloc, which hands a chunk's large freed buffers
    # back to the system; Arrow's default (mimalloc) keeps them, ~25 MB a worker on the bench data, for no
    # measurable speed (bench/RESULTS.md). A value the user set wins. Read when the fork server starts.
    os.environ.setdefault(ARROW_POOL_ENV, "system")
    mp = multiprocessing.get_context("forkserver")
    mp.set_forkserver_preload(["__main__", "fitbit_pipeline.forkserver_preload"])
    return mp


class _NoPandas(importlib.abc.MetaPathFinder):
    """An import finder that refuses pandas (pyarrow then takes it as not installed)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ModuleNotFoundError("pandas is kept out of the transform's workers", name=name)
        return None


def _init_worker(env: dict[str, str], run_pid: int) -> None:
    """Pool worker start: die with the fork server (which dies with the run), then take the run's settings."""
    lifeline.die_with_parent(run_pid)
    _adopt_env(env)
    # pyarrow imports pandas, where installed (Airflow's providers bring it), to check whether each Python
    # list it converts is a pandas object: ~35 MB a worker. The transform uses no pandas: its workers run as
    # if it were not installed (unless the fork server's preloaded main module had imported it already).
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


def _worker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def _adopt_env(env: dict[str, str]) -> None:
    for k in [k for k in os.environ if k.startswith(_ENV_PREFIXES) and k not in env]:
        del os.environ[k]
    os.environ.update(env)


def iter_parts(staging_uri: str, table: str) -> list[str]:
    """The staging Parquet files of ``table``: local paths, or full URIs (``s3://bucket/key``) elsewhere."""
    fs, path = filesystem(posixpath.join(staging_uri, table))
    if not fs.exists(path):
        return []
    return [full_uri(fs, p) for p in sorted(fs.glob(posixpath.join(path, "*.parquet")))]
