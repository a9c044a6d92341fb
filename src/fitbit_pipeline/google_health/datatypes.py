"""The Google Health API v4 data types the pipeline reads, declared once.

Checked against the API's discovery document (``googleapiclient/discovery_cache/documents/health.v4.json``,
revision 20261030): the data-type id (hyphenated, as in request paths), the ``DataPoint`` field that holds
it (camelCase), the value field, its JSON type (int64 values arrive as strings), the discovery document's
hard range, and the factor that converts it to the unit of our tables.

A participant-day of one *activity* may be made of several data types (heart: samples, resting heart rate
and zones; calories: active and basal energy). Their documents are read together, as one delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Shape = Literal["sample", "interval", "daily"]


@dataclass(frozen=True)
class DataType:
    id: str  # hyphenated id, as in ``v4/users/{user}/dataTypes/{id}/dataPoints``
    field: str  # the DataPoint property holding the value object
    shape: Shape  # sample (sampleTime), interval (interval) or daily (date)
    activity: str  # the activity (tables) it feeds
    role: str  # what it gives that activity: "value", "basal", "resting", "zones"
    value_key: str | None  # the value inside the object (None: a structured daily record)
    scale: float = 1.0  # multiply to get the table's unit
    hard_range: tuple[float, float] | None = None  # discovery document's "Must be in the range"


DATA_TYPES: tuple[DataType, ...] = (
    DataType("heart-rate", "heartRate", "sample", "heart", "value", "beatsPerMinute", 1.0, (1, 300)),
    DataType("daily-resting-heart-rate", "dailyRestingHeartRate", "daily", "heart", "resting", "beatsPerMinute"),
    DataType("daily-heart-rate-zones", "dailyHeartRateZones", "daily", "heart", "zones", None),
    DataType("steps", "steps", "interval", "steps", "value", "count", 1.0, (0, 1_000_000)),
    DataType("distance", "distance", "interval", "distance", "value", "millimeters", 1e-6, (0, 1_000_000_000)),
    DataType("floors", "floors", "interval", "floors", "value", "count", 1.0, (0, 1_000_000)),
    DataType(
        "altitude",
        "altitude",
        "interval",
        "elevation",
        "value",
        "gainMillimeters",
        1e-3,
        (-1_000_000_000, 1_000_000_000),
    ),
    DataType(
        "active-energy-burned", "activeEnergyBurned", "interval", "calories", "value", "kcal", 1.0, (0, 1_000_000)
    ),
    DataType("basal-energy-burned", "basalEnergyBurned", "interval", "calories", "basal", "kcal", 1.0, None),
)

BY_ID: dict[str, DataType] = {d.id: d for d in DATA_TYPES}
# Data-point lists are filtered by civil time (the participant's local day) on this member of the field.
CIVIL_FILTER_MEMBER: dict[Shape, str] = {
    "sample": "sample_time.civil_time",
    "interval": "interval.civil_start_time",
    "daily": "date",
}


def of_activity(activity: str) -> tuple[DataType, ...]:
    """The data types whose documents make up one participant-day of ``activity``."""
    return tuple(d for d in DATA_TYPES if d.activity == activity)
