"""The validation gate: before production is touched, the run's reject rates are checked.

Per activity: rows rejected / rows read (in the files that were read) above
``max_reject_rate`` (default 5%), or files
rejected / files processed above ``max_file_failure_rate`` (default 20%). The file rate is
also checked over the whole run (files of unknown layout count there), and only once at least
``min_files`` files are in the denominator, so a single bad file in a tiny run does not stop it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .warehouse import Warehouse


@dataclass(frozen=True)
class GateLimits:
    max_reject_rate: float = 0.05
    max_file_failure_rate: float = 0.20
    min_files: int = 10


@dataclass
class GateResult:
    passed: bool
    breaches: list[str] = field(default_factory=list)
    worst_rules: list[tuple[str, int]] = field(default_factory=list)
    worst_files: list[tuple[str, str, int]] = field(default_factory=list)  # file, rule or status, rows rejected

    def message(self) -> str:
        parts = ["validation gate stopped the run: " + "; ".join(self.breaches)]
        if self.worst_rules:
            parts.append("worst rules: " + ", ".join(f"{r} ({n})" for r, n in self.worst_rules))
        if self.worst_files:
            parts.append("worst files: " + ", ".join(f"{f} [{r}, {n} rows]" for f, r, n in self.worst_files))
        parts.append("production was not touched; staging is kept; rerun with --force after review")
        return ". ".join(parts)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def evaluate(wh: Warehouse, limits: GateLimits) -> GateResult:
    """Check the loaded ``stg_*`` tables of the current run against ``limits``."""
    files = wh.names.q("stg_pipeline_files")
    rejects = wh.names.q("stg_rejected_records")
    rows = wh.query(
        "SELECT COALESCE(activity, 'unknown'), COUNT(*), "
        "SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), "
        # Row rates over the files that were read: whole-file rejects count in the file rate.
        "SUM(CASE WHEN status = 'rejected' THEN 0 ELSE rows_read END), "
        "SUM(CASE WHEN status = 'rejected' THEN 0 ELSE rows_rejected END) "
        f"FROM {files} GROUP BY 1 ORDER BY 1"
    )
    breaches: list[str] = []
    all_files = sum(int(r[1]) for r in rows)
    all_failed = sum(int(r[2]) for r in rows)
    for activity, n_files, failed, read, rejected in rows:
        n_files, failed, read, rejected = int(n_files), int(failed), int(read or 0), int(rejected or 0)
        if activity != "unknown" and _rate(rejected, read) > limits.max_reject_rate:
            breaches.append(
                f"{activity}: {_rate(rejected, read):.1%} of rows rejected (limit {limits.max_reject_rate:.0%})"
            )
        if (
            activity != "unknown"
            and n_files >= limits.min_files
            and _rate(failed, n_files) > limits.max_file_failure_rate
        ):
            breaches.append(
                f"{activity}: {failed} of {n_files} files rejected (limit {limits.max_file_failure_rate:.0%})"
            )
    if all_files >= limits.min_files and _rate(all_failed, all_files) > limits.max_file_failure_rate:
        breaches.append(f"run: {all_failed} of {all_files} files rejected (limit {limits.max_file_failure_rate:.0%})")
    result = GateResult(passed=not breaches, breaches=breaches)
    if breaches:
        result.worst_rules = [
            (r, int(n))
            for r, n in wh.query(f"SELECT rule_id, COUNT(*) FROM {rejects} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5")
        ]
        result.worst_files = [
            (f, r, int(n))
            for f, r, n in wh.query(
                f"SELECT source_file, COALESCE(rule_id, status), rows_rejected FROM {files} "
                "WHERE status = 'rejected' OR rows_rejected > 0 "
                "ORDER BY CASE WHEN status = 'rejected' THEN 0 ELSE 1 END, rows_rejected DESC, source_file LIMIT 5"
            )
        ]
    return result
