"""Validation thresholds in one place: defaults from the activity description, overridable.

Keys are ``<activity>.<measure>`` for ranges (per minute of data; measures that scale with
the dataset interval multiply the upper bound by it, in minutes: second-level data gets a per-second
bound, rounded up to a whole unit for integer measures), plus ``heart.resting_heart_rate`` and
``heart.zone_minutes``; ``<activity>`` for the daily-total reconciliation tolerance. Override
them with ``FITBIT_RANGES='{"heart.value": [30, 220]}'`` and ``FITBIT_TOLERANCES='{"distance": 0.01}'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .activities import ACTIVITIES, RESTING_HR_RANGE, ZONE_MINUTES_RANGE


def _default_ranges() -> dict[str, tuple[float, float]]:
    ranges = {f"{a.name}.{m.name}": (m.low, m.high) for a in ACTIVITIES for m in a.measures}
    ranges["heart.resting_heart_rate"] = RESTING_HR_RANGE
    ranges["heart.zone_minutes"] = ZONE_MINUTES_RANGE
    return ranges


@dataclass(frozen=True)
class Limits:
    ranges: dict[str, tuple[float, float]] = field(default_factory=_default_ranges)
    tolerances: dict[str, float] = field(default_factory=lambda: {a.name: a.daily_tolerance for a in ACTIVITIES})

    def range(self, key: str) -> tuple[float, float]:
        return self.ranges[key]

    def tolerance(self, activity: str) -> float:
        return self.tolerances[activity]

    def with_overrides(
        self,
        ranges: Mapping[str, tuple[float, float] | list[float]] | None = None,
        tolerances: Mapping[str, float] | None = None,
    ) -> Limits:
        """A copy with some thresholds replaced; unknown keys or inverted ranges are a clear error."""
        new_ranges = dict(self.ranges)
        for key, value in (ranges or {}).items():
            if key not in new_ranges:
                raise ValueError(f"unknown range {key!r}; known: {', '.join(sorted(new_ranges))}")
            low, high = (float(v) for v in value)
            if low > high:
                raise ValueError(f"range {key!r}: low {low} is above high {high}")
            new_ranges[key] = (low, high)
        new_tol = dict(self.tolerances)
        for key, value in (tolerances or {}).items():
            if key not in new_tol:
                raise ValueError(f"unknown tolerance {key!r}; known: {', '.join(sorted(new_tol))}")
            if float(value) < 0:
                raise ValueError(f"tolerance {key!r} must not be negative")
            new_tol[key] = float(value)
        return replace(self, ranges=new_ranges, tolerances=new_tol)


DEFAULT_LIMITS = Limits()
