"""The Monday-morning compliance report: who wears the device, whose data stopped, what was rejected.

:func:`build` reads the warehouse (any backend, portable SQL) into a :class:`ComplianceReport`;
:func:`render_html` turns it into one self-contained HTML file (inline CSS and SVG, no scripts,
no network), with a plain table of the same numbers for screen readers and copy-paste.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import jinja2

from . import schema
from .notify import Notification
from .warehouse import Warehouse

NO_UTC = (
    "UTC timestamps are empty: no participant time-zone mapping is configured "
    "(FITBIT_TIMEZONES_CSV / FITBIT_DEFAULT_TIMEZONE)."
)


@dataclass(frozen=True)
class SilentRules:
    no_data_days: int = 3  # no heart-rate data for this many days up to the report's end
    drop_ratio: float = 0.5  # last 7 days' mean wear below this share of the previous 14 days'


@dataclass
class ParticipantRow:
    participant_id: str
    wear_hours: list[float | None]  # one per day of the range; None: no heart delivery that day
    steps: list[int | None]
    resting_hr: list[int | None]
    valid_days: int = 0
    last_day_with_data: dt.date | None = None
    silent_reason: str | None = None


@dataclass
class ComplianceReport:
    start: dt.date
    end: dt.date
    generated_at: dt.datetime
    days: list[dt.date]
    participants: list[ParticipantRow] = field(default_factory=list)
    findings_by_rule: list[tuple[str, str, int]] = field(default_factory=list)  # rule, severity, count
    rejects_by_rule: list[tuple[str, int]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    utc_note: str = NO_UTC  # whether intraday rows have UTC times, and how many local times were flagged
    release: str | None = None  # the release whose frozen data this is (None: the warehouse as it is)

    @property
    def silent(self) -> list[ParticipantRow]:
        return [p for p in self.participants if p.silent_reason]


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def latest_data_day(wh: Warehouse) -> dt.date | None:
    row = wh.query(f"SELECT MAX(date) FROM {wh.names.q('pipeline_deliveries')}")
    return row[0][0] if row and row[0][0] else None


def build(
    wh: Warehouse,
    start: dt.date,
    end: dt.date,
    *,
    rules: SilentRules = SilentRules(),
    release: str | None = None,
) -> ComplianceReport:
    """Gather the report's numbers for ``start``..``end`` (inclusive)."""
    q = wh.names.q
    days = _days(start, end)
    index = {d: i for i, d in enumerate(days)}
    report = ComplianceReport(start, end, dt.datetime.now(dt.UTC).replace(tzinfo=None), days, release=release)
    history_start = end - dt.timedelta(days=20)
    ids = [
        r[0]
        for r in wh.query(
            f"SELECT DISTINCT participant_id FROM {q('pipeline_deliveries')} WHERE date <= ? ORDER BY 1", [end]
        )
    ]
    rows = {p: ParticipantRow(p, [None] * len(days), [None] * len(days), [None] * len(days)) for p in ids}
    wear_history: dict[str, dict[dt.date, int]] = defaultdict(dict)
    for p, d, minutes, valid in wh.query(
        f"SELECT participant_id, date, wear_minutes, valid_day FROM {q('daily_wear')} WHERE date BETWEEN ? AND ?",
        [min(start, history_start), end],
    ):
        wear_history[p][d] = int(minutes)
        if d in index and p in rows:
            rows[p].wear_hours[index[d]] = round(int(minutes) / 60, 1)
            rows[p].valid_days += bool(valid)
    for p, last in wh.query(
        f"SELECT participant_id, MAX(date) FROM {q('daily_wear')} WHERE heart_samples > 0 AND date <= ? GROUP BY 1",
        [end],
    ):
        if p in rows:
            rows[p].last_day_with_data = last
    for table, column, attr in (("daily_steps", "value", "steps"), ("daily_heart", "resting_heart_rate", "resting_hr")):
        for p, d, v in wh.query(
            f"SELECT participant_id, date, {column} FROM {q(table)} WHERE date BETWEEN ? AND ?", [start, end]
        ):
            if p in rows and v is not None:
                getattr(rows[p], attr)[index[d]] = int(v)
    for row in rows.values():
        row.silent_reason = _silent_reason(row, wear_history.get(row.participant_id, {}), end, rules)
    report.participants = list(rows.values())
    report.findings_by_rule = [
        (r, s, int(n))
        for r, s, n in wh.query(
            f"SELECT rule_id, severity, COUNT(*) FROM {q('data_quality_findings')} "
            "WHERE date BETWEEN ? AND ? GROUP BY 1, 2 ORDER BY 3 DESC, 1",
            [start, end],
        )
    ]
    report.rejects_by_rule = [
        (r, int(n))
        for r, n in wh.query(
            f"SELECT rule_id, COUNT(*) FROM {q('rejected_records')} "
            "WHERE date BETWEEN ? AND ? GROUP BY 1 ORDER BY 2 DESC, 1",
            [start, end],
        )
    ]
    report.runs = wh.recent_runs(10).to_pylist()
    report.utc_note = _utc_note(wh, start, end)
    return report


def _utc_note(wh: Warehouse, start: dt.date, end: dt.date) -> str:
    """One sentence on the intraday rows' UTC times in the period: absent, or how many local times were flagged."""
    with_utc = nonexistent = ambiguous = 0
    for t in schema.INTRADAY.values():
        a, n, m = wh.query(
            "SELECT COUNT(ts_utc), "
            "COALESCE(SUM(CASE WHEN tz_flag = 'nonexistent' THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN tz_flag = 'ambiguous' THEN 1 ELSE 0 END), 0) "
            f"FROM {wh.names.q(t.name)} WHERE date BETWEEN ? AND ?",
            [start, end],
        )[0]
        with_utc, nonexistent, ambiguous = with_utc + int(a), nonexistent + int(n), ambiguous + int(m)
    if not with_utc and not nonexistent:
        return NO_UTC
    return (
        f"UTC timestamps from the participants' time zones; flagged intraday rows: {nonexistent} nonexistent "
        f"(spring forward, no UTC time), {ambiguous} ambiguous (fall back, first occurrence taken)."
    )


def _silent_reason(row: ParticipantRow, wear: dict[dt.date, int], end: dt.date, rules: SilentRules) -> str | None:
    last = row.last_day_with_data
    if last is None:
        return "no heart-rate data at all"
    gap = (end - last).days
    if gap >= rules.no_data_days:
        return f"no heart-rate data for {gap} days"
    recent = [wear.get(end - dt.timedelta(days=i), 0) for i in range(7)]
    before = [wear.get(end - dt.timedelta(days=i), 0) for i in range(7, 21)]
    if sum(before) and sum(recent) / 7 < rules.drop_ratio * (sum(before) / 14):
        drop = 1 - (sum(recent) / 7) / (sum(before) / 14)
        return f"wear time down {drop:.0%} against the previous two weeks"
    return None


# ---- rendering -----------------------------------------------------------------------------------


def _colour(hours: float | None) -> str:
    if hours is None:
        return "#eeeeee"
    # white -> deep teal as wear rises to 24 h
    t = max(0.0, min(1.0, hours / 24))
    r, g, b = (int(255 + (c - 255) * t) for c in (0, 105, 110))
    return f"#{r:02x}{g:02x}{b:02x}"


def _sparkline(values: list[int | None], width: int = 120, height: int = 24) -> str:
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(points) < 2:
        return ""
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span = (hi - lo) or 1
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in points)


def render_html(report: ComplianceReport) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["colour"] = _colour
    env.filters["sparkline"] = _sparkline
    template = env.from_string(resources.files("fitbit_pipeline").joinpath("report.html.j2").read_text())
    return template.render(r=report)


def write(report: ComplianceReport, out_uri: str) -> str:
    """Write the HTML (local path or any fsspec URI, e.g. ``s3://``); returns the URI written."""
    from .sources import filesystem

    fs, path = filesystem(out_uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(path, "w", encoding="utf-8") as fh:
        fh.write(render_html(report))
    return out_uri


def silent_alert(report: ComplianceReport) -> Notification | None:
    """A notification listing silent participants by id only (no values), or None."""
    if not report.silent:
        return None
    ids = [p.participant_id for p in report.silent]
    return Notification(
        f"fitbit-pipeline: {len(ids)} participant(s) to contact ({report.start} to {report.end})",
        "alert",
        ["no recent heart-rate data or a sharp drop in wear time:", ", ".join(ids)],
    )
