"""Table model, derived from the activity description.

One :class:`Table` per warehouse table, with its Arrow schema. The warehouse DDL
(:mod:`fitbit_pipeline.sql`) and the Parquet files of the lake use these schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from .activities import ACTIVITIES, Activity, Kind

TableKind = Literal[
    "intraday",
    "daily",
    "zones",
    "wear",
    "rejects",
    "findings",
    "deliveries",
    "files",
    "runs",
    "lake_state",
    "forgotten",
    "releases",
]

TS = pa.timestamp("us")
_DAILY: dict[Kind, pa.DataType] = {"int": pa.int64(), "float": pa.float64()}

PROVENANCE = [pa.field("source_file", pa.string(), False), pa.field("run_id", pa.string(), False)]


@dataclass(frozen=True)
class Table:
    name: str
    kind: TableKind
    schema: pa.Schema
    activity: str | None = None  # the activity whose deliveries replace its rows

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    @property
    def staging_name(self) -> str:
        return f"stg_{self.name}"

    @property
    def data(self) -> bool:
        """A table of measured data, replaced per participant-day delivery."""
        return self.kind in ("intraday", "daily", "zones")


def _intraday(a: Activity) -> Table:
    fields = [
        pa.field("participant_id", pa.string(), False),
        pa.field("date", pa.date32(), False),
        pa.field("ts", TS, False),  # local time of the participant, as delivered (no offset)
        pa.field("ts_utc", TS, True),  # null: no zone known for the participant-day, or a nonexistent local time
        pa.field("tz_flag", pa.string(), True),  # null | nonexistent | ambiguous (see timezones.py)
    ]
    # float64 for every measure, integer ones too: some exporters deliver fractions where Fitbit sends whole
    # numbers (heart rate 72.4); they are kept as delivered and counted (rule value_not_integral).
    # The extras (calories ``level``, ``mets``) are null where a source does not give them (Google Health).
    fields += [pa.field(m.name, pa.float64(), m is not a.value) for m in a.measures]
    return Table(a.intraday_table, "intraday", pa.schema(fields + PROVENANCE), a.name)


def _daily(a: Activity) -> Table:
    fields = [pa.field("participant_id", pa.string(), False), pa.field("date", pa.date32(), False)]
    if a.daily == "heart":
        fields.append(pa.field("resting_heart_rate", pa.int32(), True))
    else:
        fields.append(pa.field("value", _DAILY[a.daily_kind], False))
    return Table(a.daily_table, "daily", pa.schema(fields + PROVENANCE), a.name)


HEART_RATE_ZONES = Table(
    "heart_rate_zones",
    "zones",
    pa.schema(
        [
            pa.field("participant_id", pa.string(), False),
            pa.field("date", pa.date32(), False),
            pa.field("zone_type", pa.string(), False),  # standard | custom
            pa.field("zone_name", pa.string(), False),
            pa.field("min_bpm", pa.int32(), True),
            pa.field("max_bpm", pa.int32(), True),
            pa.field("minutes", pa.int32(), True),
            pa.field("calories_out", pa.float64(), True),
            *PROVENANCE,
        ]
    ),
    "heart",
)

_ROW_CONTEXT = [
    pa.field("run_id", pa.string(), False),
    pa.field("source_file", pa.string(), False),
    pa.field("participant_id", pa.string(), True),
    pa.field("activity", pa.string(), True),
    pa.field("date", pa.date32(), True),
]

REJECTED_RECORDS = Table(
    "rejected_records",
    "rejects",
    pa.schema(
        [
            *_ROW_CONTEXT,
            pa.field("ts", TS, True),
            pa.field("row_index", pa.int64(), True),  # position in the dataset; null for file/summary
            pa.field("record_type", pa.string(), False),  # file | intraday | daily | zone
            pa.field("rule_id", pa.string(), False),
            pa.field("raw_value", pa.string(), True),
            pa.field("message", pa.string(), False),
        ]
    ),
)

DATA_QUALITY_FINDINGS = Table(
    "data_quality_findings",
    "findings",
    pa.schema(
        [
            *_ROW_CONTEXT,
            pa.field("rule_id", pa.string(), False),
            pa.field("severity", pa.string(), False),
            pa.field("message", pa.string(), False),
        ]
    ),
)

_DELIVERY_FIELDS = [
    pa.field("participant_id", pa.string(), False),
    pa.field("activity", pa.string(), False),
    pa.field("date", pa.date32(), False),
    pa.field("source_file", pa.string(), False),
    pa.field("delivery_rank", pa.string(), False),
    pa.field("run_id", pa.string(), False),
    # Where the rows came from, when the source says (Google Health: platform/form factor/device: rows).
    pa.field("data_sources", pa.string(), True),
]
PIPELINE_DELIVERIES = Table("pipeline_deliveries", "deliveries", pa.schema(_DELIVERY_FIELDS))

PIPELINE_FILES = Table(
    "pipeline_files",
    "files",
    pa.schema(
        [
            pa.field("source_file", pa.string(), False),
            pa.field("fingerprint", pa.string(), False),
            pa.field("size_bytes", pa.int64(), True),
            pa.field("participant_id", pa.string(), True),
            pa.field("activity", pa.string(), True),
            pa.field("date", pa.date32(), True),
            pa.field("delivery_rank", pa.string(), True),
            pa.field("status", pa.string(), False),  # loaded | rejected | superseded | replaced
            pa.field("rule_id", pa.string(), True),
            pa.field("reason", pa.string(), True),
            pa.field("run_id", pa.string(), False),
            pa.field("rows_read", pa.int64(), False),
            pa.field("rows_valid", pa.int64(), False),
            pa.field("rows_loaded", pa.int64(), False),
            pa.field("rows_rejected", pa.int64(), False),
            pa.field("rows_duplicate", pa.int64(), False),
            pa.field("rows_superseded", pa.int64(), False),
            pa.field("processed_at", TS, False),
        ]
    ),
)

PIPELINE_RUNS = Table(
    "pipeline_runs",
    "runs",
    pa.schema(
        [
            pa.field("run_id", pa.string(), False),
            pa.field("activity", pa.string(), False),  # one row per activity and one named 'ALL'
            pa.field("started_at", TS, False),
            pa.field("finished_at", TS, False),
            pa.field("status", pa.string(), False),
            pa.field("files_found", pa.int64(), False),
            pa.field("files_new", pa.int64(), False),
            pa.field("files_changed", pa.int64(), False),
            pa.field("files_unchanged", pa.int64(), False),
            pa.field("files_retried", pa.int64(), False),
            pa.field("files_loaded", pa.int64(), False),
            pa.field("files_rejected", pa.int64(), False),
            pa.field("files_superseded", pa.int64(), False),
            pa.field("rows_read", pa.int64(), False),
            pa.field("rows_loaded", pa.int64(), False),
            pa.field("rows_rejected", pa.int64(), False),
            pa.field("rows_duplicate", pa.int64(), False),
            pa.field("rows_superseded", pa.int64(), False),
            pa.field("warnings", pa.int64(), False),
            pa.field("duration_s", pa.float64(), False),
            pa.field("message", pa.string(), True),
            pa.field("files_forgotten", pa.int64(), True),  # of withdrawn participants: skipped, unread
        ]
    ),
)

DAILY_WEAR = Table(
    "daily_wear",
    "wear",
    pa.schema(
        [
            pa.field("participant_id", pa.string(), False),
            pa.field("date", pa.date32(), False),
            pa.field("wear_minutes", pa.int64(), False),  # minutes with >= 1 heart-rate sample
            pa.field("hours_with_data", pa.int64(), False),
            pa.field("heart_samples", pa.int64(), False),
            pa.field("valid_day", pa.bool_(), False),
            pa.field("run_id", pa.string(), False),
        ]
    ),
    "heart",
)

# Which lake snapshot of each data table the warehouse holds, written in the transaction that applies it.
PIPELINE_LAKE_STATE = Table(
    "pipeline_lake_state",
    "lake_state",
    pa.schema(
        [
            pa.field("table_name", pa.string(), False),
            pa.field("snapshot_id", pa.int64(), True),  # null: the table has no snapshot yet
            pa.field("run_id", pa.string(), False),  # the run whose commit this is
            pa.field("applied_at", TS, False),
        ]
    ),
)

# Consent withdrawals (``fitbit-pipeline forget``): what was removed, without the participant's id.
PIPELINE_FORGOTTEN = Table(
    "pipeline_forgotten",
    "forgotten",
    pa.schema(
        [
            pa.field("participant_hash", pa.string(), False),  # SHA-256 of the lake's salt and the id
            pa.field("forgotten_at", TS, False),
            pa.field("reason", pa.string(), True),
            pa.field("rows_removed", pa.int64(), False),  # lake and warehouse rows, all tables
            pa.field("tables", pa.string(), False),  # JSON: rows removed per table
        ]
    ),
)

# Frozen data releases (``fitbit-pipeline release create``): one row per release and table.
PIPELINE_RELEASES = Table(
    "pipeline_releases",
    "releases",
    pa.schema(
        [
            pa.field("release_name", pa.string(), False),
            pa.field("created_at", TS, False),
            pa.field("note", pa.string(), True),
            pa.field("table_name", pa.string(), False),
            pa.field("snapshot_id", pa.int64(), True),  # the Iceberg snapshot tagged; null: no snapshot, or frozen
            pa.field("row_count", pa.int64(), False),
            pa.field("checksum", pa.string(), False),  # verify.CHECKSUM_ALGORITHM
            pa.field("pipeline_version", pa.string(), False),
            pa.field("rewritten", pa.string(), True),  # what changed it since (a withdrawal: forget --include-releases)
        ]
    ),
)

INTRADAY: dict[str, Table] = {a.name: _intraday(a) for a in ACTIVITIES}
DAILY: dict[str, Table] = {a.name: _daily(a) for a in ACTIVITIES}
DATA_TABLES: tuple[Table, ...] = (*INTRADAY.values(), *DAILY.values(), HEART_RATE_ZONES)
# Tables a run stages (written by the transform, loaded into stg_* tables).
STAGED_TABLES: tuple[Table, ...] = (
    *DATA_TABLES,
    REJECTED_RECORDS,
    DATA_QUALITY_FINDINGS,
    PIPELINE_FILES,
    PIPELINE_DELIVERIES,
)
ALL_TABLES: tuple[Table, ...] = (
    *STAGED_TABLES,
    DAILY_WEAR,
    PIPELINE_RUNS,
    PIPELINE_LAKE_STATE,
    PIPELINE_FORGOTTEN,
    PIPELINE_RELEASES,
)
BY_NAME: dict[str, Table] = {t.name: t for t in ALL_TABLES}
