"""One lake: its catalog, its Iceberg tables, and the lock a run holds on it."""

from __future__ import annotations

import fcntl
import logging
import os
import posixpath
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa
from pyiceberg.table import Table as IcebergTable

from .. import schema
from ..errors import SafeError
from ..sources import filesystem, is_local
from .catalog import CatalogConfig, local_path, open_catalog, open_tables
from .commit import TableCommit, commit_run, leftovers, replace_keys, write_rows
from .snapshot import added_files, current_snapshot_id, data_files

log = logging.getLogger(__name__)


class LakeBusy(SafeError):
    """Another run holds the lake."""


class Lake:
    def __init__(self, uri: str, namespace: str, config: CatalogConfig | None = None) -> None:
        self.uri, self.namespace = uri, namespace
        self.catalog = open_catalog(uri, config)
        self.tables: dict[str, IcebergTable] = open_tables(self.catalog, uri, namespace)

    def refresh(self) -> None:
        self.tables = {name: table.refresh() for name, table in self.tables.items()}

    def files(self) -> dict[str, list[str]]:
        """The current data files of every data table."""
        return {name: data_files(table) for name, table in self.tables.items()}

    def added(self, run_id: str) -> dict[str, list[str]]:
        """Per data table, the files holding the rows ``run_id`` committed (what a warehouse with its own copy
        of the rows loads)."""
        return {name: added_files(table, run_id) for name, table in self.tables.items()}

    def snapshots(self) -> dict[str, int | None]:
        return {name: current_snapshot_id(table) for name, table in self.tables.items()}

    def commit(self, run_id: str, staging: str, winners: pa.Table) -> dict[str, TableCommit]:
        out = commit_run(self.tables, run_id, staging, winners)
        self.refresh()
        return out

    def replace(self, table: str, run_id: str, keys: set[tuple[str, int]], rows: pa.Table) -> TableCommit:
        """Replace the participant-days ``keys`` of ``table`` with ``rows`` (one snapshot)."""
        t = schema.BY_NAME[table]
        added = write_rows(self.tables[table], t, run_id, rows)
        out = replace_keys(self.tables[table], t, run_id, keys, added, rows.num_rows)
        self.refresh()
        return out

    def remove_leftovers(self, run_id: str) -> int:
        """Delete the data files a crashed attempt of ``run_id`` wrote and never committed."""
        files = leftovers(self.tables.values(), run_id)
        if files:
            fs, _ = filesystem(self.uri)
            fs.rm(files)
        return len(files)


@contextmanager
def lake_lock(uri: str, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the lake for one run: a second run waits (``FITBIT_LAKE_LOCK_TIMEOUT`` seconds, default an hour),
    then fails with :class:`LakeBusy`.

    A local lake is locked with ``flock`` on ``<lake>/_lock`` (released by the kernel when the process dies,
    however it dies). An object-store lake is serialised by the warehouse's lock and Iceberg's optimistic
    commits (a conflicting commit fails and the run is recovered by the next).
    """
    if timeout_s is None:
        timeout_s = float(os.environ.get("FITBIT_LAKE_LOCK_TIMEOUT", "3600"))
    if not is_local(uri):
        yield
        return
    root = local_path(uri)
    os.makedirs(root, exist_ok=True)
    fd = os.open(posixpath.join(root, "_lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LakeBusy(f"another run is using the lake {uri}; try again when it has finished") from None
                if deadline - time.monotonic() + 0.5 >= timeout_s:
                    log.warning("another run is using the lake: waiting up to %.0f s", timeout_s)
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)
