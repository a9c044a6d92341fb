"""The lake: a staging area per run, the production layer as Apache Iceberg tables, and quarantine.

Layout below the lake URI::

    catalog.db                                     the SQL catalog (SQLite) of a local lake
    staging/run_id=<run>/<table>/part-*.parquet    what one run staged, with _plan.json and _state.json
    production/<table>/metadata/                   Iceberg metadata of the table <schema>.<table>
    production/<table>/data/[date=<d>/]*.parquet   its data files
    quarantine/run_id=<run>/<digest>.json          raw bytes of rejected files

:mod:`.catalog` opens the catalog and the tables, :mod:`.commit` replaces a run's participant-days in
them (one snapshot per table, tagged with the run id), :mod:`.journal` records where a run stands, and
:mod:`.snapshot` lists what a snapshot holds (for the DuckDB views, ``verify`` and tests).
"""

from __future__ import annotations

from .catalog import CatalogConfig, LakeConfigError
from .paths import production_uri, quarantine_uri, staging_uri
from .store import Lake, LakeBusy, lake_lock

__all__ = [
    "CatalogConfig",
    "Lake",
    "LakeBusy",
    "LakeConfigError",
    "lake_lock",
    "production_uri",
    "quarantine_uri",
    "staging_uri",
]
