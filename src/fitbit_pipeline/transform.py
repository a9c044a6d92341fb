"""Transform: source documents -> validated, typed staging Parquet (one run's staging area).

Documents are processed in bounded chunks, on all cores (a process pool). Each chunk
writes its own Parquet parts for every staged table and returns only small counts, so
memory does not grow with the number of files and nothing large crosses processes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import activities, schema
from .layouts import LayoutError, match
from .limits import DEFAULT_LIMITS, Limits
from .parse import FileContext, FileRejected, Parsed, parse_document
from .rules import rule
from .sources import Reader, SourceDoc, filesystem

_EPOCH = dt.date(1970, 1, 1)
CHUNK_BYTES = 48 << 20
CHUNK_DOCS = 400


@dataclass(frozen=True)
class RunContext:
    run_id: str
    run_date: dt.date
    staging_uri: str  # <lake>/staging/run_id=<id>
    quarantine_uri: str  # <lake>/quarantine/run_id=<id>
    processed_at: dt.datetime
    limits: Limits = DEFAULT_LIMITS


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

    def add(self, parsed: Parsed, participant: str, source_file: str) -> None:
        if not len(parsed.ts):
            return
        self.ts.append(parsed.ts)
        for name, arr in parsed.measures.items():
            self.measures[name].append(arr)
        self.lengths.append(len(parsed.ts))
        self.context.append((participant, (parsed.date - _EPOCH).days, source_file))

    def table(self, run_id: str) -> pa.Table | None:
        if not self.lengths:
            return None
        idx = pa.array(np.repeat(np.arange(len(self.lengths), dtype=np.int32), self.lengths))
        participants, days, files = zip(*self.context, strict=True)
        cols: dict[str, Any] = {
            "participant_id": pc.take(pa.array(participants, pa.string()), idx),
            "date": pc.take(pa.array(np.array(days, dtype=np.int32), pa.int32()).cast(pa.date32()), idx),
            "ts": pa.array(np.concatenate(self.ts), schema.TS),
        }
        for name, parts in self.measures.items():
            cols[name] = np.concatenate(parts)
        cols["source_file"] = pc.take(pa.array(files, pa.string()), idx)
        n = int(sum(self.lengths))
        cols["run_id"] = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([run_id])).cast(
            pa.string()
        )
        return pa.Table.from_pydict(cols, schema=schema.INTRADAY[self.activity.name].schema)


def _quarantine(fs: Any, ctx: RunContext, doc: SourceDoc, data: bytes | None) -> str | None:
    """Keep a rejected document's raw bytes; the file name never derives from the member name."""
    if data is None:
        return None
    digest = hashlib.sha256(doc.source_file.encode()).hexdigest()[:24]
    path = posixpath.join(ctx.quarantine_uri, f"{digest}.raw")
    qfs, qpath = filesystem(path)
    qfs.makedirs(posixpath.dirname(qpath), exist_ok=True)
    with qfs.open(qpath, "wb") as fh:
        fh.write(data)
    return path


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


def process_chunk(chunk_id: str, docs: Sequence[SourceDoc], ctx: RunContext) -> ChunkResult:
    """Parse, validate and stage one chunk of documents. Never raises for one bad document."""
    result = ChunkResult()
    columns = {a.name: _Columns(a) for a in activities.ACTIVITIES}
    rows: dict[str, list[dict[str, Any]]] = {t.name: [] for t in schema.STAGED_TABLES if t.kind != "intraday"}
    fs, _ = filesystem(docs[0].object_path if docs else ".")
    with Reader(fs) as reader:
        for doc in docs:
            result.files += 1
            data: bytes | None = None
            info: dict[str, Any] = {}
            try:
                if doc.error:
                    raise FileRejected("file_unreadable", doc.error)
                try:
                    data = reader.read(doc)
                except Exception as exc:  # any I/O or archive fault rejects this document only
                    raise FileRejected("file_unreadable", f"{type(exc).__name__}: {exc}") from None
                try:
                    path = match(doc.logical_path)
                except LayoutError as exc:
                    raise FileRejected("unknown_layout", f"{exc}: {doc.logical_path}") from None
                info = {"participant_id": path.participant_id, "activity": path.activity, "date": path.date}
                activity = activities.BY_NAME.get(path.activity)
                if activity is None:
                    raise FileRejected("unknown_layout", f"unknown activity '{path.activity}'")
                fctx = FileContext(doc.source_file, path.participant_id, activity, path.date, ctx.run_date, ctx.limits)
                parsed = parse_document(data, fctx)
            except FileRejected as rej:
                q = _quarantine(fs, ctx, doc, data)
                reason = str(rej) + (f" (raw bytes kept at {q})" if q else "")
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
                continue
            result.bytes_read += len(data)
            pid, name, day = path.participant_id, activity.name, parsed.date
            base = {"participant_id": pid, "date": day}
            prov = {"source_file": doc.source_file, "run_id": ctx.run_id}
            columns[name].add(parsed, pid, doc.source_file)
            if parsed.daily is not None:
                rows[activity.daily_table].append({**base, **parsed.daily, **prov})
            rows["heart_rate_zones"].extend({**base, **z, **prov} for z in parsed.zones)
            for r in parsed.rejects:
                ts = r["ts"]
                rows["rejected_records"].append(
                    {
                        "run_id": ctx.run_id,
                        "source_file": doc.source_file,
                        "participant_id": pid,
                        "activity": name,
                        "date": day,
                        **r,
                        "ts": None if ts is None else dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ts),
                    }
                )
                result.rules[r["rule_id"]] += 1
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

    tables: dict[str, pa.Table | None] = {a: c.table(ctx.run_id) for a, c in columns.items()}
    tables = {schema.INTRADAY[a].name: t for a, t in tables.items()}
    for name, items in rows.items():
        tables[name] = pa.Table.from_pylist(items, schema=schema.BY_NAME[name].schema) if items else None
    for name, table in tables.items():
        if table is not None and table.num_rows:
            write_parquet(table, posixpath.join(ctx.staging_uri, name, f"part-{chunk_id}.parquet"))
    return result


def write_parquet(table: pa.Table, uri: str) -> None:
    """Write one Parquet file (zstd), creating parent folders."""
    fs, path = filesystem(uri)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd", row_group_size=1 << 20)


def chunked(docs: Sequence[SourceDoc], workers: int) -> list[list[SourceDoc]]:
    """Contiguous chunks (zip members stay together), bounded in bytes and documents."""
    total = sum(d.size for d in docs)
    target = max(1 << 20, min(CHUNK_BYTES, total // max(1, workers * 4)))
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
    mp = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=mp) as pool:
        pending = {pool.submit(process_chunk, f"{part_prefix}{i:05d}", chunk, ctx) for i, chunk in enumerate(chunks)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                res = fut.result()
                total.add(res)
                if on_progress:
                    on_progress(res.files)
    return total


def iter_parts(staging_uri: str, table: str) -> Iterable[str]:
    fs, path = filesystem(posixpath.join(staging_uri, table))
    if not fs.exists(path):
        return []
    return sorted(fs.glob(posixpath.join(path, "*.parquet")))
