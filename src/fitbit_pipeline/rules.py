"""The declared validation rules: an id, a severity, what it checks and where it applies.

Ranges per activity live in :mod:`fitbit_pipeline.activities`; this module names every
rule once so that rejects, findings, docs and tests share the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
Scope = Literal["file", "row", "summary", "finding"]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    scope: Scope
    message: str


_RULES = (
    # Whole file rejected (the ledger records the reason; raw bytes are kept).
    Rule("file_unreadable", "error", "file", "the object could not be read"),
    Rule("read_failed", "error", "file", "storage or network fault after the retries: the next run reads it again"),
    Rule("invalid_json", "error", "file", "the file is not valid JSON"),
    Rule("duplicate_key", "error", "file", "a JSON object repeats a key (which one counts is ambiguous)"),
    Rule("zip_duplicate_member", "error", "file", "the archive holds several members of this name"),
    Rule("file_too_large", "error", "file", "the file is larger than FITBIT_MAX_FILE_BYTES (never read)"),
    Rule("outside_source", "error", "file", "a link that leads outside the source root (never read)"),
    Rule("unknown_layout", "error", "file", "the path matches no known export layout"),
    Rule("wrong_structure", "error", "file", "the JSON does not have the Fitbit response structure"),
    Rule("date_invalid", "error", "file", "the summary dateTime is not a valid date"),
    Rule("date_mismatch", "error", "file", "the date in the path and the dateTime in the JSON disagree"),
    Rule("date_in_future", "error", "file", "the day lies in the future relative to the run"),
    # One intraday row rejected (it lands in rejected_records).
    Rule("missing_field", "error", "row", "a required key of the row is missing"),
    Rule("time_invalid", "error", "row", "time is not a valid HH:MM:SS"),
    Rule("value_wrong_type", "error", "row", "a value is not a number of the declared type"),
    Rule("value_out_of_range", "error", "row", "a value lies outside the plausible range"),
    Rule("time_off_grid", "error", "row", "the time is not on the dataset interval's grid"),
    Rule("duplicate_timestamp", "error", "row", "a timestamp repeats within the file (first kept)"),
    # Google Health API v4 points (see google_health/reader.py).
    Rule("point_outside_day", "error", "row", "the point belongs to another civil day than its document"),
    Rule("interval_not_minute", "error", "row", "the interval is not one minute starting on a minute"),
    Rule("duplicate_source", "error", "row", "a second data source reports the timestamp (the wearable's kept)"),
    Rule("energy_part_missing", "error", "row", "active energy without the basal energy of the minute"),
    # Fitabase CSV exports (see fitabase/reader.py).
    Rule("csv_invalid", "error", "file", "the CSV file cannot be read or lacks a required column"),
    Rule("csv_row_malformed", "error", "row", "a CSV line the reader cannot split into the header's fields"),
    Rule("rows_unattributed", "error", "file", "rows of the export that name no participant or no valid time"),
    Rule("measure_without_value", "error", "row", "a level or METs row without a kept calories row of its minute"),
    Rule("zone_unknown", "error", "file", "UTC times without a time zone for the participant: no local day"),
    Rule("participant_unknown", "error", "file", "the path has no segment naming the account export's participant"),
    # Daily summary rows.
    Rule("daily_value_invalid", "error", "summary", "the daily total is not a non-negative number"),
    Rule("resting_hr_out_of_range", "error", "summary", "resting heart rate outside the plausible range"),
    Rule("zone_invalid", "error", "summary", "a heart-rate zone is malformed, inverted or overlapping"),
    Rule("daily_record_repeated", "error", "summary", "several daily records of one kind for the day (none kept)"),
    # Warnings: rows stay, the finding is recorded in data_quality_findings.
    Rule("daily_total_mismatch", "warning", "finding", "the daily total disagrees with the intraday sum"),
    Rule("daily_summary_missing", "warning", "finding", "intraday data without a daily summary"),
    Rule("intraday_missing", "warning", "finding", "a daily summary without intraday data"),
    Rule("activities_incomplete", "warning", "finding", "a participant-day has some activities and not others"),
    Rule("heart_missing_while_active", "warning", "finding", "no heart-rate samples on a day with steps"),
    Rule("value_not_integral", "warning", "finding", "integer values delivered with a fraction (kept as delivered)"),
    # Skipped source entries (warnings: counted in the ledger as status 'skipped', never read, not gated).
    Rule("link_to_directory", "warning", "file", "a link to a directory in the source: skipped, not followed"),
    Rule("special_file", "warning", "file", "a FIFO, socket, device or broken link in the source: skipped"),
    Rule("fitabase_not_loaded", "warning", "file", "a Fitabase file of a kind no table holds (sleep, weight, ...)"),
    Rule("account_export_not_loaded", "warning", "file", "an account export file of a kind no table holds"),
    Rule("no_data_file", "warning", "file", "an account export file without measurements ('no data', empty)"),
)

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]
