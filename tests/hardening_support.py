"""Helpers of the input-hardening tests: a real run into a real DuckDB warehouse and a real lake, with
input written by the test itself (no shared fixtures)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from typing import Any

import duckdb

from fitbit_pipeline import pipeline
from fitbit_pipeline.gate import GateLimits

RUN_DATE = dt.date(2024, 12, 31)
OPEN_GATE = GateLimits(max_reject_rate=1.0, max_file_failure_rate=1.0)  # tiny inputs: every reject is a big rate


class Site:
    """A source folder, a lake and a DuckDB warehouse below ``root``."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.source = root / "source"
        self.lake = root / "lake"
        self.db = root / "warehouse.duckdb"
        self.source.mkdir(parents=True, exist_ok=True)

    def run(self, **kwargs: Any) -> pipeline.RunSummary:
        kwargs.setdefault("workers", 1)
        kwargs.setdefault("run_date", RUN_DATE)
        kwargs.setdefault("gate", OPEN_GATE)
        return pipeline.run(str(self.source), str(self.lake), str(self.db), **kwargs)

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(query, params or []).fetchall()

    def file(self, source_file_suffix: str) -> dict[str, Any]:
        """The ledger row of the one file whose ``source_file`` ends with the suffix."""
        with duckdb.connect(str(self.db), read_only=True) as con:
            cur = con.execute(
                "SELECT * FROM rural.pipeline_files WHERE source_file LIKE '%' || ?", [source_file_suffix]
            )
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        assert len(rows) == 1, rows
        return dict(zip(names, rows[0], strict=True))

    def identity_holds(self) -> None:
        bad = self.sql(
            "SELECT source_file FROM rural.pipeline_files WHERE rows_read <> "
            "rows_loaded + rows_rejected + rows_duplicate + rows_superseded"
        )
        assert bad == []


def dumps(doc: Any) -> bytes:
    """Compact JSON as the API writes it (integers of any size, unlike orjson)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def steps_doc(day: str, values: list[Any], total: Any | None = None, dataset_type: str = "minute") -> bytes:
    """A steps response: one row per value, a minute (or second) apart from midnight."""
    step = 60 if dataset_type == "minute" else 1
    rows = [
        {"time": f"{i * step // 3600:02d}:{i * step // 60 % 60:02d}:{i * step % 60:02d}", "value": v}
        for i, v in enumerate(values)
    ]
    if total is None:
        total = str(sum(v for v in values if isinstance(v, int | float)))
    return dumps(
        {
            "activities-steps": [{"dateTime": day, "value": total}],
            "activities-steps-intraday": {"dataset": rows, "datasetInterval": 1, "datasetType": dataset_type},
        }
    )


def heart_doc(day: str, values: list[Any], zones: list[dict[str, Any]] | None = None, resting: Any = 60) -> bytes:
    rows = [{"time": f"{i // 60:02d}:{i % 60:02d}:00", "value": v} for i, v in enumerate(values)]
    zones = zones if zones is not None else [{"name": "Out of Range", "min": 30, "max": 100, "minutes": 10}]
    return dumps(
        {
            "activities-heart": [{"dateTime": day, "value": {"restingHeartRate": resting, "heartRateZones": zones}}],
            "activities-heart-intraday": {"dataset": rows, "datasetInterval": 1, "datasetType": "minute"},
        }
    )


def write(site: Site, rel: str, data: bytes) -> pathlib.Path:
    path = site.source / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
