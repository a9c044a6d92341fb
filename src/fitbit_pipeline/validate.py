"""A dry run: read and validate a source without touching the lake, the ledger or a warehouse."""

from __future__ import annotations

import datetime as dt
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from .limits import DEFAULT_LIMITS, Limits
from .sources import list_documents
from .transform import RunContext, iter_parts, transform


@dataclass
class ValidationReport:
    source: str
    files: int = 0
    files_rejected: int = 0
    rows_read: int = 0
    rows_valid: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rules: dict[str, int] = field(default_factory=dict)  # errors (rows and files) and warnings by rule id
    worst_files: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _scan(parts: list[str], sql: str) -> list[tuple[Any, ...]]:
    if not parts:
        return []
    con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    try:
        return con.execute(sql.replace("$parts", "read_parquet(?)"), [parts]).fetchall()
    finally:
        con.close()


def validate(
    source: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    workers: int = 0,
    run_date: dt.date | None = None,
    worst: int = 10,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ValidationReport:
    """Validate every document below ``source``; staging goes to a temporary folder, then away."""
    listing = list_documents(source)
    report = ValidationReport(source, files=len(listing.docs))
    if on_start:
        on_start(len(listing.docs))
    with tempfile.TemporaryDirectory(prefix="fitbit-validate-") as tmp:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        ctx = RunContext(
            "validate",
            run_date or now.date(),
            posixpath.join(tmp, "staging"),
            posixpath.join(tmp, "quarantine"),
            now,
            limits,
        )
        result = transform(listing.docs, ctx, workers=workers, on_progress=on_progress)
        report.files_rejected = result.statuses.get("rejected", 0)
        for key in ("read", "valid", "rejected", "duplicate"):
            setattr(report, f"rows_{key}", result.rows.get(key, 0))
        report.rules = dict(sorted(result.rules.items(), key=lambda kv: (-kv[1], kv[0])))
        files = list(iter_parts(ctx.staging_uri, "pipeline_files"))
        rows = _scan(
            files,
            "SELECT source_file, CASE WHEN status = 'staged' THEN 'accepted' ELSE status END, rule_id, reason, "
            "rows_read, rows_rejected + rows_duplicate AS bad "
            "FROM $parts WHERE status = 'rejected' OR rows_rejected + rows_duplicate > 0 "
            "ORDER BY CASE WHEN status = 'rejected' THEN 0 ELSE 1 END, bad DESC, source_file LIMIT " + str(int(worst)),
        )
        report.worst_files = [
            dict(zip(("source_file", "status", "rule_id", "reason", "rows_read", "rows_rejected"), r, strict=True))
            for r in rows
        ]
    return report
