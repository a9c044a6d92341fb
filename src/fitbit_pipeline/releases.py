"""Frozen data releases: ``fitbit-pipeline release create NAME`` and what reads a release.

A release freezes, under the run lock and once any interrupted run is recovered, the state the lake and the
warehouse agree on:

- every data table: an Iceberg tag ``release-<NAME>`` on its current snapshot (new runs move ``main`` only;
  snapshot expiry keeps tagged snapshots, so their files stay);
- the warehouse's own tables that a report and a collaborator need (:data:`FROZEN_TABLES`: daily wear, findings,
  rejected records, deliveries, runs), written once as Parquet into ``<lake>/releases/<NAME>/``, next to a
  ``release.json`` that describes the release without the warehouse;
- ``pipeline_releases`` (the commit point, one transaction): the name, time, note, pipeline version and, per
  table, the snapshot, the row count and a content checksum (:data:`.verify.CHECKSUM_ALGORITHM`).

An interrupted ``release create`` leaves no release (no row): the same command again replaces what it left.
A withdrawal (``forget --include-releases``) rewrites the releases holding the participant: the tag moves to a
snapshot without the participant's rows, the frozen files are written again, the record is updated and says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import logging
import posixpath
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import faults, schema
from .errors import ConfigError, SafeError
from .lake import Lake
from .lake.snapshot import RUN_PROPERTY, current_snapshot_id, data_files
from .sources import filesystem, is_local
from .sql import ident
from .verify import content_checksum, parquet_reader
from .warehouse import DuckDBWarehouse, Warehouse, open_warehouse
from .warehouse.duckdb_backend import select_parquet

log = logging.getLogger(__name__)

TAG_PREFIX = "release-"
FOLDER = "releases"
DESCRIPTION = "release.json"
# The warehouse's own tables a release freezes (the data tables are frozen by their Iceberg tags).
FROZEN_TABLES: tuple[schema.Table, ...] = (
    schema.DAILY_WEAR,
    schema.DATA_QUALITY_FINDINGS,
    schema.REJECTED_RECORDS,
    schema.PIPELINE_DELIVERIES,
    schema.PIPELINE_RUNS,
)
RELEASED_TABLES: tuple[schema.Table, ...] = (*schema.DATA_TABLES, *FROZEN_TABLES)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


class ReleaseDamaged(SafeError):
    """The lake no longer holds what a release's record says (a tag removed or moved by hand)."""


@dataclass(frozen=True)
class ReleaseTable:
    table_name: str
    snapshot_id: int | None  # the tagged snapshot of a data table; None: no snapshot yet, or a frozen table
    row_count: int
    checksum: str


@dataclass
class Release:
    name: str
    created_at: dt.datetime
    note: str | None
    pipeline_version: str
    tables: dict[str, ReleaseTable]
    rewritten: str | None = None

    @property
    def rows(self) -> int:
        return sum(t.row_count for t in self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["created_at"] = self.created_at.isoformat()
        return out


def pipeline_version() -> str:
    try:
        return importlib.metadata.version("fitbit-pipeline")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def tag(name: str) -> str:
    """The Iceberg tag of release ``name`` on every data table."""
    return f"{TAG_PREFIX}{name}"


def folder(lake_uri: str, name: str) -> str:
    return posixpath.join(lake_uri.rstrip("/"), FOLDER, name)


def frozen_file(lake_uri: str, name: str, table: str) -> str:
    return posixpath.join(folder(lake_uri, name), f"{table}.parquet")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            "NAME", "a release name is 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


# ---- creating ------------------------------------------------------------------------------------------


def create(
    lake_uri: str,
    warehouse: str,
    name: str,
    schema_name: str = "rural",
    *,
    note: str | None = None,
    lock_timeout_s: float | None = 0.0,
    valid_day_minutes: int = 600,
) -> Release:
    """Freeze the current state of every table as release ``name`` (see the module's description)."""
    from .pipeline import held_lake

    check_name(name)
    held = held_lake(
        lake_uri, warehouse, schema_name, lock_timeout_s=lock_timeout_s, valid_day_minutes=valid_day_minutes
    )
    with held as (the_lake, wh):
        if any(r.name == name for r in releases(wh)):
            raise ConfigError("NAME", f"a release named {name} exists already (a release is never replaced)")
        tables: dict[str, ReleaseTable] = {}
        for t in schema.DATA_TABLES:
            table = the_lake.tables[t.name]
            rows, checksum = content_checksum(data_files(table), t)
            tables[t.name] = ReleaseTable(t.name, current_snapshot_id(table), rows, checksum)
            log.info("release %s: %s, %d rows", name, t.name, rows)
        for t in FROZEN_TABLES:
            path = frozen_file(lake_uri, name, t.name)
            _freeze(wh, t, path)
            rows, checksum = content_checksum([path], t)
            tables[t.name] = ReleaseTable(t.name, None, rows, checksum)
        faults.point("release-frozen")
        for t in schema.DATA_TABLES:
            _set_tag(the_lake, t.name, tag(name), tables[t.name].snapshot_id)
        faults.point("release-tagged")
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        release = Release(name, now, note, pipeline_version(), tables)
        _describe(lake_uri, release)
        _record(wh, release)
    return release


def _freeze(wh: Warehouse, t: schema.Table, path: str) -> None:
    """Write the warehouse's table ``t`` to ``path`` (streamed: memory holds one batch)."""
    fs, target = filesystem(path)
    fs.makedirs(posixpath.dirname(target), exist_ok=True)
    with fs.open(target, "wb") as fh, pq.ParquetWriter(fh, t.schema, compression="zstd") as writer:
        for batch in wh.stream_arrow(f"SELECT {wh.names.column_list(t)} FROM {wh.names.q(t.name)}"):
            writer.write_batch(batch.cast(t.schema))


def _set_tag(the_lake: Lake, table_name: str, name: str, snapshot_id: int | None) -> None:
    """Point tag ``name`` of a table at ``snapshot_id`` (one left by an interrupted attempt is replaced)."""
    table = the_lake.tables[table_name]
    manage = table.manage_snapshots()
    changed = False
    if name in table.metadata.refs:
        manage, changed = manage.remove_tag(name), True
    if snapshot_id is not None:
        manage, changed = manage.create_tag(snapshot_id, name), True
    if changed:
        manage.commit()
        the_lake.tables[table_name] = table.refresh()


def _describe(lake_uri: str, release: Release) -> None:
    """``release.json`` in the release's folder: the release without the warehouse."""
    fs, path = filesystem(posixpath.join(folder(lake_uri, release.name), DESCRIPTION))
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        fh.write(json.dumps(release.as_dict(), indent=2).encode())


def _record(wh: Warehouse, release: Release) -> None:
    """The release's rows in ``pipeline_releases`` (replacing any earlier record of the same release)."""
    t = schema.PIPELINE_RELEASES
    rows = [
        [
            release.name,
            release.created_at,
            release.note,
            entry.table_name,
            entry.snapshot_id,
            entry.row_count,
            entry.checksum,
            release.pipeline_version,
            release.rewritten,
        ]
        for entry in release.tables.values()
    ]
    with wh.transaction():
        wh.execute(f"DELETE FROM {wh.names.q(t.name)} WHERE release_name = ?", [release.name])
        wh.execute(wh.names.insert_values(t, len(rows)), [v for r in rows for v in r])


# ---- reading -------------------------------------------------------------------------------------------


def releases(wh: Warehouse) -> list[Release]:
    """Every release recorded in the warehouse, oldest first."""
    t = schema.PIPELINE_RELEASES
    found: dict[str, Release] = {}
    for row in wh.query(f"SELECT {wh.names.column_list(t)} FROM {wh.names.q(t.name)} ORDER BY created_at, 1, 4"):
        r = dict(zip(t.columns, row, strict=True))
        release = found.setdefault(
            r["release_name"],
            Release(r["release_name"], r["created_at"], r["note"], r["pipeline_version"], {}, r["rewritten"]),
        )
        release.tables[r["table_name"]] = ReleaseTable(
            r["table_name"], r["snapshot_id"], int(r["row_count"]), r["checksum"]
        )
    return list(found.values())


def get(wh: Warehouse, name: str) -> Release:
    for release in releases(wh):
        if release.name == name:
            return release
    raise ConfigError("--release", f"no release named {name} (`fitbit-pipeline release list` lists them)")


def release_files(the_lake: Lake, release: Release) -> dict[str, list[str]]:
    """The Parquet files holding each table of ``release``: the tagged snapshots' data files, the frozen files
    (the tags checked against the record)."""
    for t in schema.DATA_TABLES:
        entry = release.tables.get(t.name)
        tagged = the_lake.tables[t.name].snapshot_by_name(tag(release.name))
        if (tagged.snapshot_id if tagged else None) != (entry.snapshot_id if entry else None):
            raise ReleaseDamaged(f"the lake's tag {tag(release.name)} of {t.name} is missing or was moved")
    return files_by_tag(the_lake, release.name)


def files_by_tag(the_lake: Lake, name: str) -> dict[str, list[str]]:
    """The files of release ``name`` as the lake's tags say."""
    out: dict[str, list[str]] = {}
    for t in schema.DATA_TABLES:
        tagged = the_lake.tables[t.name].snapshot_by_name(tag(name))
        out[t.name] = data_files(the_lake.tables[t.name], tagged.snapshot_id) if tagged else []
    for t in FROZEN_TABLES:
        out[t.name] = [frozen_file(the_lake.uri, name, t.name)]
    return out


@contextmanager
def opened(lake_uri: str, warehouse: str, name: str, schema_name: str = "rural") -> Iterator[tuple[Release, Lake]]:
    """Release ``name`` (its record) and the lake holding it."""
    with open_warehouse(warehouse, schema_name) as wh:
        wh.ensure_schema()
        release = get(wh, name)
    yield release, Lake(lake_uri, schema_name)


@contextmanager
def release_warehouse(lake_uri: str, warehouse: str, name: str, schema_name: str = "rural") -> Iterator[Warehouse]:
    """An in-memory DuckDB whose tables are the release's (views over its files): what a report reads."""
    with opened(lake_uri, warehouse, name, schema_name) as (release, the_lake):
        files = release_files(the_lake, release)
    view = DuckDBWarehouse(":memory:", schema_name)
    try:
        if not is_local(lake_uri):  # the lake's objects through fsspec, as everywhere
            view.con.register_filesystem(filesystem(lake_uri)[0])
        view.execute(f"CREATE SCHEMA {ident(schema_name)}")
        for t in RELEASED_TABLES:
            view.execute(f"CREATE VIEW {view.names.q(t.name)} AS {select_parquet(t, files[t.name])}")
        yield view
    finally:
        view.close()


# ---- a withdrawal --------------------------------------------------------------------------------------


def holding(the_lake: Lake, wh: Warehouse, participant: str) -> list[str]:
    """The releases holding rows of ``participant``."""
    return [r.name for r in releases(wh) if _holds(the_lake, r, participant)]


def _holds(the_lake: Lake, release: Release, participant: str) -> bool:
    from pyiceberg.expressions import EqualTo

    for t in schema.DATA_TABLES:
        tagged = the_lake.tables[t.name].snapshot_by_name(tag(release.name))
        if tagged is not None:
            scan = the_lake.tables[t.name].scan(
                row_filter=EqualTo("participant_id", participant),
                selected_fields=("participant_id",),
                snapshot_id=tagged.snapshot_id,
                limit=1,
            )
            if scan.to_arrow().num_rows:
                return True
    return any(_frozen_holds(the_lake.uri, release.name, t, participant) for t in FROZEN_TABLES)


def _frozen_holds(lake_uri: str, name: str, t: schema.Table, participant: str) -> bool:
    if "participant_id" not in t.columns:
        return False
    with parquet_reader([frozen_file(lake_uri, name, t.name)]) as (con, source):
        found = con.execute(f"SELECT COUNT(*) FROM {source} WHERE participant_id = ?", [participant]).fetchone()
    return bool(found and found[0])


def rewrite_without(the_lake: Lake, wh: Warehouse, name: str, participant: str, op: str, note: str) -> Release:
    """Release ``name`` without ``participant``'s rows (idempotent: an interrupted rewrite is finished by running it
    again): each data table's tag moved to a snapshot branched from the tagged one that deletes them, the frozen
    files written again, the record's counts and checksums updated and ``note`` added to what rewrote it."""
    from pyiceberg.expressions import EqualTo

    release = get(wh, name)
    for t in schema.DATA_TABLES:
        table = the_lake.tables[t.name]
        tagged = table.snapshot_by_name(tag(name))
        if tagged is None:
            continue
        branch = f"{tag(name)}-rewrite"
        manage = table.manage_snapshots()
        if branch in table.metadata.refs:  # left by an interrupted rewrite
            manage = manage.remove_branch(branch)
        manage.create_branch(tagged.snapshot_id, branch).commit()
        table = table.refresh()
        table.delete(EqualTo("participant_id", participant), branch=branch, snapshot_properties={RUN_PROPERTY: op})
        table = table.refresh()
        head = table.snapshot_by_name(branch)
        assert head is not None
        table.manage_snapshots().remove_tag(tag(name)).create_tag(head.snapshot_id, tag(name)).remove_branch(
            branch
        ).commit()
        the_lake.tables[t.name] = table.refresh()
        faults.point("release-rewrite-table")
    for t in FROZEN_TABLES:
        if "participant_id" in t.columns:
            _drop_from_frozen(frozen_file(the_lake.uri, name, t.name), participant)
    files = files_by_tag(the_lake, name)
    tables = {}
    for t in RELEASED_TABLES:
        rows, checksum = content_checksum(files[t.name], t)
        snapshot = the_lake.tables[t.name].snapshot_by_name(tag(name)) if t in schema.DATA_TABLES else None
        tables[t.name] = ReleaseTable(t.name, snapshot.snapshot_id if snapshot else None, rows, checksum)
    rewritten = release.rewritten or ""
    if note not in rewritten:
        rewritten = f"{rewritten}; {note}" if rewritten else note
    updated = dataclasses.replace(release, tables=tables, rewritten=rewritten)
    _describe(the_lake.uri, updated)
    _record(wh, updated)
    return updated


def _drop_from_frozen(path: str, participant: str) -> None:
    """Write a frozen file again without ``participant``'s rows (through a new file put in its place)."""
    fs, target = filesystem(path)
    with fs.open(target, "rb") as fh:
        data = pq.read_table(fh)
    keep = pc.invert(pc.fill_null(pc.equal(data["participant_id"], participant), False))
    if pc.all(keep).as_py():
        return
    fresh = f"{target}.rewrite"
    with fs.open(fresh, "wb") as fh:
        pq.write_table(data.filter(keep), fh, compression="zstd")
    fs.mv(fresh, target)
