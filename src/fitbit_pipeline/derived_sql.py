"""Tables derived inside the merge for every participant-day it touches, on production data.

- Cross-file data-quality findings: a participant-day with some activities and not others, and a
  day with steps but no heart-rate samples (was the tracker worn?). Earlier findings of the same
  rules for those days are replaced.
- ``daily_wear``: minutes with at least one heart-rate sample (the accepted wear proxy: zero-step
  minutes do not mean the tracker was worn), hours with data, the sample count, and ``valid_day``
  (at least ``valid_day_minutes`` worn minutes, 10 h by default). Recomputed whenever a heart
  delivery for the day is merged, so a re-delivered day replaces its row.
"""

from __future__ import annotations

import datetime as dt

from .activities import ACTIVITIES
from .sql import WINNERS, Names

CROSS_FILE_RULES = ("activities_incomplete", "heart_missing_while_active")


Days = tuple[dt.date, dt.date]


def derived_statements(
    names: Names, run_id: str, valid_day_minutes: int, days: Days | None = None
) -> list[tuple[str, list[object]]]:
    """The statements for the touched participant-days. ``days`` (the first and last of them; None: no bound)
    only prunes the scan of ``intraday_heart`` to those days (a lake's files by their date statistics)."""
    bounds = days or (dt.date(1, 1, 1), dt.date(9999, 12, 31))
    return cross_file_statements(names, run_id, bounds) + wear_statements(names, run_id, valid_day_minutes, bounds)


def _heart_days(names: Names) -> str:
    """``intraday_heart`` rows of the days between two bound dates."""
    return f"SELECT participant_id, date, ts FROM {names.q('intraday_heart')} WHERE date BETWEEN ? AND ?"


def wear_statements(names: Names, run_id: str, valid_day_minutes: int, days: Days) -> list[tuple[str, list[object]]]:
    wear = names.q("daily_wear")
    minute = "date_trunc('minute', i.ts)"
    return [
        (
            f"DELETE FROM {wear} WHERE EXISTS (SELECT 1 FROM {WINNERS} w WHERE w.activity = 'heart' "
            f"AND w.participant_id = {wear}.participant_id AND w.date = {wear}.date)",
            [],
        ),
        (  # samples per minute first (a plain aggregate over the touched days, which spills), then per day
            f"INSERT INTO {wear} "
            "(participant_id, date, wear_minutes, hours_with_data, heart_samples, valid_day, run_id) "
            "SELECT w.participant_id, w.date, COUNT(m.minute), COUNT(DISTINCT EXTRACT(HOUR FROM m.minute)), "
            "COALESCE(SUM(m.samples), 0), COUNT(m.minute) >= ?, ? "
            f"FROM {WINNERS} w LEFT JOIN ("
            f"SELECT i.participant_id, i.date, {minute} AS minute, COUNT(*) AS samples FROM ({_heart_days(names)}) i "
            f"GROUP BY i.participant_id, i.date, {minute}) m "
            "ON m.participant_id = w.participant_id AND m.date = w.date "
            "WHERE w.activity = 'heart' GROUP BY w.participant_id, w.date",
            [valid_day_minutes, run_id, *days],
        ),
    ]


def cross_file_statements(names: Names, run_id: str, days: Days) -> list[tuple[str, list[object]]]:
    findings = names.q("data_quality_findings")
    deliveries = names.q("pipeline_deliveries")
    touched = f"SELECT DISTINCT participant_id, date FROM {WINNERS}"
    cols = "run_id, source_file, participant_id, activity, date, rule_id, severity, message"
    return [
        (
            f"DELETE FROM {findings} WHERE rule_id IN (?, ?) AND EXISTS (SELECT 1 FROM ({touched}) t "
            f"WHERE t.participant_id = {findings}.participant_id AND t.date = {findings}.date)",
            list(CROSS_FILE_RULES),
        ),
        (
            f"INSERT INTO {findings} ({cols}) "
            "SELECT ?, MIN(d.source_file), d.participant_id, NULL, d.date, 'activities_incomplete', 'warning', "
            "'only ' || CAST(COUNT(DISTINCT d.activity) AS VARCHAR) || ' of ' || CAST(? AS VARCHAR) "
            "|| ' activities delivered for this participant-day' "
            f"FROM {deliveries} d JOIN ({touched}) t ON t.participant_id = d.participant_id AND t.date = d.date "
            "GROUP BY d.participant_id, d.date HAVING COUNT(DISTINCT d.activity) < ?",
            [run_id, len(ACTIVITIES), len(ACTIVITIES)],
        ),
        (
            f"INSERT INTO {findings} ({cols}) "
            "SELECT ?, h.source_file, h.participant_id, 'heart', h.date, 'heart_missing_while_active', 'warning', "
            "'no heart-rate samples on a day with steps (tracker worn?)' "
            f"FROM {deliveries} h JOIN ({touched}) t ON t.participant_id = h.participant_id AND t.date = h.date "
            f"JOIN {names.q('daily_steps')} s ON s.participant_id = h.participant_id AND s.date = h.date "
            f"WHERE h.activity = 'heart' AND s.value > 0 AND NOT EXISTS (SELECT 1 FROM {_heart_day_keys(names)} i "
            "WHERE i.participant_id = h.participant_id AND i.date = h.date)",
            [run_id, *days],
        ),
    ]


def _heart_day_keys(names: Names) -> str:
    """The ``intraday_heart`` rows (or their distinct participant-days) between two bound dates, for a probe by
    (participant, date). PostgreSQL: the rows, so that each probe is a lookup in the key's index. DuckDB and
    Redshift (no index): the distinct participant-days, an aggregate that streams and spills; an anti-join
    against the rows themselves builds a hash table of every heart row of the days (DuckDB ran out of its
    memory limit on a re-delivery scattered over 8 weeks)."""
    rows = f"{names.q('intraday_heart')} WHERE date BETWEEN ? AND ?"
    if names.dialect == "postgres":
        return f"(SELECT participant_id, date FROM {rows})"
    return f"(SELECT DISTINCT participant_id, date FROM {rows})"
