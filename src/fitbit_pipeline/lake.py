"""The Parquet lake: a staging area per run and a production layer partitioned by date.

Layout below the lake URI::

    staging/run_id=<run>/<table>/part-<chunk>.parquet     what the warehouse loads
    production/<table>/date=<YYYY-MM-DD>/data.parquet     the current data, one file per day
    quarantine/run_id=<run>/<digest>.json                 raw bytes of rejected files

The production layer is refreshed after the warehouse merge with the same winners: for each
affected day the partition is rebuilt (kept rows + new deliveries) in a temporary folder and
then moved into place with a rename, so readers never see a half-written file.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from . import schema
from .sources import filesystem
from .sql import ident


def staging_uri(lake: str, run_id: str) -> str:
    return posixpath.join(lake, "staging", f"run_id={run_id}")


def quarantine_uri(lake: str, run_id: str) -> str:
    return posixpath.join(lake, "quarantine", f"run_id={run_id}")


def production_uri(lake: str, table: str) -> str:
    return posixpath.join(lake, "production", table)


def _parquet_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def publish(lake: str, staging: str, winners: pa.Table, run_id: str) -> dict[str, int]:
    """Rebuild the production partitions touched by ``winners``; partitions rewritten per table."""
    if not _is_local(lake):
        raise NotImplementedError("publishing the production lake to object storage is not supported yet")
    fs, _ = filesystem(lake)
    rewritten: dict[str, int] = {}
    tmp_root = posixpath.join(lake, "production", "_tmp", f"run_id={run_id}")
    con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    try:
        con.register("winners", winners)
        for t in schema.DATA_TABLES:
            mine = winners.filter(pc.equal(winners["activity"], t.activity))
            if not mine.num_rows:
                continue
            days = [d.isoformat() for d in sorted(set(mine["date"].to_pylist()))]
            prod = production_uri(lake, t.name)
            old = [p for d in days for p in sorted(fs.glob(posixpath.join(prod, f"date={d}", "*.parquet")))]
            parts = sorted(fs.glob(posixpath.join(staging, t.name, "*.parquet")))
            cols = ", ".join(ident(c) for c in t.columns)
            selects, params = [], {}
            if old:
                params["activity"] = t.activity
                selects.append(
                    f"SELECT {cols} FROM read_parquet({_parquet_list(old)}) o WHERE NOT EXISTS "
                    "(SELECT 1 FROM winners w WHERE w.activity = $activity "
                    "AND w.participant_id = o.participant_id AND w.date = o.date)"
                )
            if parts:
                selects.append(
                    f"SELECT {cols} FROM read_parquet({_parquet_list(parts)}) s "
                    "WHERE s.source_file IN (SELECT source_file FROM winners)"
                )
            tmp = posixpath.join(tmp_root, t.name)
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp, exist_ok=True)
            if selects:
                order = "participant_id, " + ("ts" if t.kind == "intraday" else "date")
                con.execute(
                    f"COPY ({' UNION ALL '.join(selects)} ORDER BY {order}) TO '{tmp}' (FORMAT parquet, "
                    "PARTITION_BY (date), WRITE_PARTITION_COLUMNS true, COMPRESSION zstd, "
                    "FILENAME_PATTERN 'data_{i}', OVERWRITE_OR_IGNORE true)",
                    params,
                )
            for d in days:
                _swap_partition(fs, posixpath.join(tmp, f"date={d}"), posixpath.join(prod, f"date={d}"))
            rewritten[t.name] = len(days)
    finally:
        con.close()
        shutil.rmtree(tmp_root, ignore_errors=True)
    return rewritten


def _swap_partition(fs: object, new_dir: str, part_dir: str) -> None:
    """Move a rebuilt partition into place file by file with atomic renames; drop what is stale."""
    new_files = sorted(fs.glob(posixpath.join(new_dir, "*.parquet")))  # type: ignore[attr-defined]
    keep: set[str] = set()
    if new_files:
        os.makedirs(part_dir, exist_ok=True)
    for i, src in enumerate(new_files):
        dst = posixpath.join(part_dir, "data.parquet" if i == 0 else f"data-{i}.parquet")
        os.replace(src, dst)
        keep.add(dst)
    if os.path.isdir(part_dir):
        for stale in os.listdir(part_dir):
            path = posixpath.join(part_dir, stale)
            if path not in keep:
                os.remove(path)
        if not keep:
            os.rmdir(part_dir)
