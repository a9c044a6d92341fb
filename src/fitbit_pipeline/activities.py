"""The one declarative description of the six Fitbit activities.

Everything activity-specific lives here: JSON keys, column names, types, units and
plausible ranges. Parsing (:mod:`fitbit_pipeline.parse`), table schemas
(:mod:`fitbit_pipeline.schema`) and the warehouse SQL are all derived from it.
To add a seventh activity, add one :class:`Activity` to :data:`ACTIVITIES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["int", "float"]
DailyKind = Literal["total", "heart"]


@dataclass(frozen=True)
class Measure:
    """One numeric field of an intraday row (``value``, ``level``, ``mets``)."""

    name: str  # column name, also the JSON key of the dataset row
    kind: Kind
    unit: str
    low: float  # plausible range (inclusive), per dataset interval of one minute
    high: float
    scale_with_interval: bool = False  # high bound multiplies by the dataset interval (minutes)
    description: str = ""


@dataclass(frozen=True)
class Activity:
    """How one activity arrives from the Fitbit Web API and how it is stored."""

    name: str  # "heart", "steps", ...
    value: Measure
    extras: tuple[Measure, ...] = ()
    daily: DailyKind = "total"
    daily_kind: Kind = "float"
    # Reconciliation of the daily total against the intraday sum: 0 means exact.
    daily_tolerance: float = 0.0
    aliases: tuple[str, ...] = field(default=())  # other spellings seen in paths

    @property
    def summary_key(self) -> str:
        return f"activities-{self.name}"

    @property
    def intraday_key(self) -> str:
        return f"activities-{self.name}-intraday"

    @property
    def intraday_table(self) -> str:
        return f"intraday_{self.name}"

    @property
    def daily_table(self) -> str:
        return f"daily_{self.name}"

    @property
    def measures(self) -> tuple[Measure, ...]:
        return (self.value, *self.extras)


ACTIVITIES: tuple[Activity, ...] = (
    Activity(
        name="heart",
        value=Measure("value", "int", "bpm", 20, 250, description="heart rate"),
        daily="heart",
        daily_kind="int",
    ),
    Activity(
        name="calories",
        value=Measure("value", "float", "kcal", 0, 60, True, "energy expenditure"),
        extras=(
            Measure("level", "int", "level", 0, 3, description="0 sedentary .. 3 very active"),
            Measure("mets", "int", "MET x10", 0, 250, description="METs as delivered by the API"),
        ),
        daily_tolerance=1.0,
    ),
    Activity(
        name="steps",
        value=Measure("value", "int", "steps", 0, 300, True, "step count"),
        daily_kind="int",
    ),
    Activity(
        name="elevation",
        value=Measure("value", "float", "m", 0, 60, True, "elevation gained"),
        daily_tolerance=0.01,
    ),
    Activity(
        name="distance",
        value=Measure("value", "float", "km", 0, 0.5, True, "distance"),
        daily_tolerance=0.001,
    ),
    Activity(
        name="floors",
        value=Measure("value", "int", "floors", 0, 20, True, "floors climbed"),
        daily_kind="int",
    ),
)

BY_NAME: dict[str, Activity] = {a.name: a for a in ACTIVITIES}

# Heart summary extras, declared once: resting heart rate and the zones.
RESTING_HR_RANGE = (25, 150)
ZONE_MINUTES_RANGE = (0, 1440)


def get(name: str) -> Activity:
    """The activity called ``name``; a clear error for an unknown one."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown activity {name!r}; known: {', '.join(BY_NAME)}") from None
