"""The Iceberg catalog of a lake and its tables (one per data table of the model, same names).

Which catalog (environment, like the other storage settings):

- ``FITBIT_ICEBERG_CATALOG`` = ``sql`` (default), ``glue`` (the AWS Glue Data Catalog) or ``rest``
  (an Iceberg REST catalog: S3 Tables, Polaris, Nessie, ...);
- ``FITBIT_ICEBERG_CATALOG_URI``: the SQL catalog's database (``sqlite:////path/catalog.db`` or a
  ``postgresql+psycopg://...`` URL) or the REST endpoint. A local lake defaults to ``<lake>/catalog.db``;
  an ``s3://`` lake has no default: a catalog file on one machine would silently split the lake.

The namespace is the warehouse schema (``rural``); table ``intraday_heart`` lives at
``<lake>/production/intraday_heart``. Intraday tables are partitioned by ``date`` (a participant-day is
replaced by rewriting files of one day only); the small daily tables are not partitioned (maintenance
compacts them into one file per month, so a replacement's date filter finds the recent files by their
statistics). Rows are sorted by participant then time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.schema import Schema
from pyiceberg.table import Table as IcebergTable
from pyiceberg.table.name_mapping import create_mapping_from_schema
from pyiceberg.table.sorting import NullOrder
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
)

from .. import schema
from ..errors import ConfigError
from ..sources import is_local
from .paths import production_uri

CATALOG_NAME = "fitbit"
NAME_MAPPING = "schema.name-mapping.default"


class LakeConfigError(ConfigError):
    """The lake's catalog is not configured as it needs to be (exit 2)."""

    def __init__(self, problem: str) -> None:
        super().__init__("FITBIT_ICEBERG_CATALOG", problem)


@dataclass(frozen=True)
class CatalogConfig:
    kind: str = "sql"
    uri: str | None = None

    @classmethod
    def from_env(cls) -> CatalogConfig:
        kind = (os.environ.get("FITBIT_ICEBERG_CATALOG") or "sql").strip().lower()
        if kind not in ("sql", "glue", "rest"):
            raise LakeConfigError("FITBIT_ICEBERG_CATALOG must be sql, glue or rest")
        return cls(kind, os.environ.get("FITBIT_ICEBERG_CATALOG_URI") or None)


def local_path(uri: str) -> str:
    """An absolute local path for a plain path or ``file://`` URI."""
    return os.path.abspath(uri.removeprefix("file://"))


def table_location(lake: str, table: str) -> str:
    uri = production_uri(lake, table)
    return local_path(uri) if is_local(uri) else uri


def _io_properties(lake: str) -> dict[str, str]:
    """FileIO for metadata: fsspec, as the rest of the pipeline (on S3: the same s3fs and AWS chain).

    Locally too: pyiceberg's default, ``PyArrowFileIO``, imports ``pyarrow.dataset`` (and pandas, when installed:
    ~40 MB) into the run's process before the transform, when its workers need the memory.
    """
    props = {"py-io-impl": "pyiceberg.io.fsspec.FsspecFileIO"}
    if is_local(lake):
        return props
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if endpoint:
        props["s3.endpoint"] = endpoint
    if region:
        props["s3.region"] = region
    return props


# The Arrow types of the model's data tables -> their Iceberg types (as pyiceberg.io.pyarrow converts them).
_ICEBERG_TYPES: dict[pa.DataType, IcebergType] = {
    pa.string(): StringType(),
    pa.int64(): LongType(),
    pa.int32(): IntegerType(),
    pa.float64(): DoubleType(),
    pa.float32(): FloatType(),
    pa.bool_(): BooleanType(),
    pa.date32(): DateType(),
    pa.timestamp("us"): TimestampType(),
}


def iceberg_schema(t: schema.Table) -> Schema:
    """The Iceberg schema of a data table, from the model (field ids in column order, as a new table gets).

    pyiceberg would convert the Arrow schema itself, but its converter lives in ``pyiceberg.io.pyarrow``, which
    imports ``pyarrow.dataset`` and pandas (~40 MB) into the run's process while its workers run."""
    return Schema(
        *(NestedField(i, f.name, _ICEBERG_TYPES[f.type], required=not f.nullable) for i, f in enumerate(t.schema, 1))
    )


def open_catalog(lake: str, config: CatalogConfig | None = None) -> Catalog:
    """The lake's catalog (see the module docstring for the choice)."""
    config = config or CatalogConfig.from_env()
    props: dict[str, Any] = {"type": config.kind, **_io_properties(lake)}
    if config.kind == "sql":
        uri = config.uri
        if uri is None:
            if not is_local(lake):
                raise LakeConfigError(
                    "an s3:// lake needs a shared Iceberg catalog: set FITBIT_ICEBERG_CATALOG=glue or rest, "
                    "or FITBIT_ICEBERG_CATALOG_URI to a SQL catalog database every run can reach"
                )
            os.makedirs(local_path(lake), exist_ok=True)
            uri = "sqlite:///" + os.path.join(local_path(lake), "catalog.db")
        props.update(uri=uri, warehouse=table_location(lake, ""))
    elif config.kind == "rest":
        if not config.uri:
            raise LakeConfigError("FITBIT_ICEBERG_CATALOG=rest needs FITBIT_ICEBERG_CATALOG_URI (the REST endpoint)")
        props["uri"] = config.uri
    return load_catalog(CATALOG_NAME, **props)


def open_tables(catalog: Catalog, lake: str, namespace: str) -> dict[str, IcebergTable]:
    """Every data table of the model in ``namespace``, created where missing."""
    catalog.create_namespace_if_not_exists(namespace)
    return {t.name: _table(catalog, lake, namespace, t) for t in schema.DATA_TABLES}


def _table(catalog: Catalog, lake: str, namespace: str, t: schema.Table) -> IcebergTable:
    identifier = (namespace, t.name)
    try:
        return _relaxed(catalog.load_table(identifier), t)
    except NoSuchTableError:
        pass
    table = catalog.create_table_if_not_exists(
        identifier, schema=iceberg_schema(t), location=table_location(lake, t.name)
    )
    order = ("participant_id", "ts") if t.kind == "intraday" else ("participant_id", "date")
    with table.transaction() as tx:
        tx.set_properties(
            **{
                NAME_MAPPING: create_mapping_from_schema(table.schema()).model_dump_json(),
                "write.parquet.compression-codec": "zstd",
                "write.metadata.delete-after-commit.enabled": "true",
                "write.metadata.previous-versions-max": "20",
            }
        )
        if t.kind == "intraday":
            with tx.update_spec() as spec:
                spec.add_identity("date")
        with tx.update_sort_order() as sort:
            for column in order:
                sort.asc(column, IdentityTransform(), null_order=NullOrder.NULLS_FIRST)
    return catalog.load_table(identifier)


def _relaxed(table: IcebergTable, t: schema.Table) -> IcebergTable:
    """Columns the model now allows to be null, made optional in a table created by an earlier version
    (required to optional is a safe change of an Iceberg schema; old files read the same)."""
    relax = [f.name for f in t.schema if f.nullable and table.schema().find_field(f.name).required]
    if not relax:
        return table
    with table.update_schema() as update:
        for name in relax:
            update.update_column(name, required=False)
    return table
