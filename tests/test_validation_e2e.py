"""Faults injected into generated data: exact rejects per rule, the accounting identity, the gate."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from fitbit_pipeline.gate import GateLimits
from fitbit_pipeline.limits import DEFAULT_LIMITS
from fitbit_pipeline.sample_data import generate
from fitbit_pipeline.validate import validate

ACTS = ("heart", "calories", "steps", "elevation", "distance", "floors")


def _load(path):
    return orjson.loads(path.read_bytes())


def _dump(path, doc) -> None:
    path.write_bytes(orjson.dumps(doc))


def _worn_heart_days(truth):
    return [d for d in truth.days if d.activity == "heart" and d.intraday_rows > 100]


def _steps_total(truth, pid, day) -> int:
    return int(next(d for d in truth.days if (d.activity, d.participant_id, d.date) == ("steps", pid, day)).daily_value)


def _rows(truth, pid, day, activity) -> int:
    return next(d.intraday_rows for d in truth.days if (d.activity, d.participant_id, d.date) == (activity, pid, day))


@pytest.fixture
def faulty(env):
    """72 generated files with one fault of each kind; returns (truth, facts about the faults)."""
    truth = generate(env.source, participants=4, days=3, seed=21)
    worn = _worn_heart_days(truth)
    facts: dict[str, object] = {}
    # 1. corrupt JSON (truncated)
    h0 = worn[0]
    corrupt = env.source / h0.participant_id / h0.date.isoformat() / "calories.json"
    facts["corrupt"] = (corrupt, corrupt.read_bytes())
    corrupt.write_bytes(corrupt.read_bytes()[:-40])
    # 2. three impossible heart rates
    h1 = worn[1]
    path = env.source / h1.participant_id / h1.date.isoformat() / "heart.json"
    doc = _load(path)
    for row in doc["activities-heart-intraday"]["dataset"][10:13]:
        row["value"] = 400
    _dump(path, doc)
    # 3. two duplicate timestamps in a steps file (first kept)
    path = env.source / h1.participant_id / h1.date.isoformat() / "steps.json"
    doc = _load(path)
    ds = doc["activities-steps-intraday"]["dataset"]
    ds[100:100] = [dict(ds[100], value=0), dict(ds[101], value=0)]
    _dump(path, doc)
    # 4. a file whose JSON date disagrees with its path
    h2 = worn[2]
    wrong = env.source / h2.participant_id / h2.date.isoformat() / "floors.json"
    doc = _load(wrong)
    doc["activities-floors"][0]["dateTime"] = (h2.date - dt.timedelta(days=30)).isoformat()
    _dump(wrong, doc)
    # 5. a daily total that disagrees with the intraday sum (a warning)
    path = env.source / h2.participant_id / h2.date.isoformat() / "steps.json"
    doc = _load(path)
    doc["activities-steps"][0]["value"] = str(int(doc["activities-steps"][0]["value"]) + 7)
    _dump(path, doc)
    # 6. a stray file and 7. a truncated zip export
    (env.source / "README.txt").write_text("exported 2024-03")
    zipped = generate(env.root / "zip", participants=1, days=1, layout="mydatahelps", seed=5)
    data = zipped.files[0].read_bytes()
    (env.source / zipped.files[0].name).write_bytes(data[: len(data) // 2])
    # 8. a heart file emptied on a day with steps, 9. a participant-day missing its elevation file
    h3 = worn[3]
    path = env.source / h3.participant_id / h3.date.isoformat() / "heart.json"
    doc = _load(path)
    doc["activities-heart-intraday"]["dataset"] = []
    _dump(path, doc)
    facts["emptied"] = (h3.participant_id, h3.date)
    (env.source / h0.participant_id / h0.date.isoformat() / "elevation.json").unlink()
    facts["days"] = (h0, h1, h2, h3)
    return truth, facts


def test_faults_land_with_exact_counts_and_everything_else_loads(env, faulty) -> None:
    truth, facts = faulty
    h0, h1, h2, h3 = facts["days"]
    s = env.run(workers=2)
    assert s.status == "succeeded"
    rejected = dict(env.sql("SELECT rule_id, COUNT(*) FROM rural.rejected_records GROUP BY 1"))
    assert rejected == {
        "invalid_json": 1,
        "value_out_of_range": 3,
        "duplicate_timestamp": 2,
        "date_mismatch": 1,
        "unknown_layout": 1,
        "file_unreadable": 1,
    }
    findings = dict(env.sql("SELECT rule_id, COUNT(*) FROM rural.data_quality_findings GROUP BY 1"))
    assert findings == {
        "daily_total_mismatch": 1,
        "heart_missing_while_active": 1,
        # h0 lost calories (corrupt) and elevation (deleted), h2 lost floors (wrong date)
        "activities_incomplete": 2,
    }
    assert env.sql(
        "SELECT participant_id, date FROM rural.data_quality_findings WHERE rule_id = 'heart_missing_while_active'"
    ) == [facts["emptied"]]
    statuses = dict(env.sql("SELECT status, COUNT(*) FROM rural.pipeline_files GROUP BY 1"))
    assert statuses == {"loaded": 71 - 2, "rejected": 4}  # 71 JSON files left, README and zip added
    bad = env.sql(
        "SELECT COUNT(*) FROM rural.pipeline_files "
        "WHERE rows_read <> rows_loaded + rows_rejected + rows_duplicate + rows_superseded"
    )
    assert bad == [(0,)]
    # Every clean row reached production.
    missing = {
        "calories": _rows(truth, h0.participant_id, h0.date, "calories"),
        "elevation": _rows(truth, h0.participant_id, h0.date, "elevation"),
        "floors": _rows(truth, h2.participant_id, h2.date, "floors"),
        "heart": 3 + _rows(truth, h3.participant_id, h3.date, "heart"),
    }
    for a in ACTS:
        assert env.sql(f"SELECT COUNT(*) FROM rural.intraday_{a}") == [(truth.total_rows(a) - missing.get(a, 0),)]
    # The run's statistics agree with the tables.
    assert s.totals["rows_rejected"] == 3 + 1440 and s.totals["rows_duplicate"] == 2
    assert dict(s.rules)["value_out_of_range"] == 3
    # The rejected heart rows are in rejected_records with their raw value and timestamp.
    raw = env.sql("SELECT raw_value, ts IS NOT NULL FROM rural.rejected_records WHERE rule_id = 'value_out_of_range'")
    assert all('"value":400' in r and has_ts for r, has_ts in raw)


def test_quarantined_file_loads_after_repair(env, faulty) -> None:
    _, facts = faulty
    path, original = facts["corrupt"]
    env.run()
    (reason,) = env.sql("SELECT reason FROM rural.pipeline_files WHERE source_file = ?", [str(path)])[0]
    quarantined = reason.split("raw bytes kept at ")[1].rstrip(")")
    assert Path(quarantined).read_bytes() == path.read_bytes()
    path.write_bytes(original)  # the repair
    s = env.run()
    assert s.totals["files_changed"] == 1 and s.totals["files_loaded"] == 1
    assert env.sql("SELECT status, rows_loaded FROM rural.pipeline_files WHERE source_file = ?", [str(path)]) == [
        ("loaded", 1441)
    ]
    assert env.sql("SELECT COUNT(*) FROM rural.rejected_records WHERE source_file = ?", [str(path)]) == [(0,)]
    # the participant-day is complete again except the deleted elevation file
    h0 = facts["days"][0]
    assert env.sql(
        "SELECT message FROM rural.data_quality_findings WHERE rule_id = 'activities_incomplete' "
        "AND participant_id = ? AND date = ?",
        [h0.participant_id, h0.date],
    ) == [("only 5 of 6 activities delivered for this participant-day",)]


def test_gate_stops_a_run_over_the_row_limit_and_force_merges(env) -> None:
    truth = generate(env.source, participants=2, days=2, seed=4)
    pid, day = truth.days[0].participant_id, truth.days[0].date
    path = env.source / pid / day.isoformat() / "steps.json"
    doc = _load(path)
    for row in doc["activities-steps-intraday"]["dataset"][:400]:
        row["value"] = -1  # 400 of 4 x 1441 steps rows: ~7% > 5%
    _dump(path, doc)
    s = env.run()
    assert s.status == "gated"
    assert "steps: 6.9% of rows rejected (limit 5%)" in s.message
    assert "value_out_of_range (400)" in s.message and str(path) in s.message
    # production untouched, ledger untouched, staging kept for inspection
    assert env.sql("SELECT COUNT(*) FROM rural.intraday_heart") == [(0,)]
    assert env.sql("SELECT COUNT(*) FROM rural.pipeline_files") == [(0,)]
    assert env.sql("SELECT COUNT(*) FROM rural.stg_rejected_records") == [(400,)]
    assert (env.lake / "staging" / f"run_id={s.run_id}" / "intraday_steps").is_dir()
    assert env.sql("SELECT status FROM rural.pipeline_runs WHERE activity = 'ALL'") == [("gated",)]
    # a human decided: force it through
    forced = env.run(force=True)
    assert forced.status == "succeeded" and forced.message.startswith("forced past the gate")
    assert env.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(4 * 1440 - 400,)]


def test_gate_passes_under_the_limit(env) -> None:
    truth = generate(env.source, participants=2, days=2, seed=4)
    pid, day = truth.days[0].participant_id, truth.days[0].date
    path = env.source / pid / day.isoformat() / "steps.json"
    doc = _load(path)
    for row in doc["activities-steps-intraday"]["dataset"][:200]:
        row["value"] = -1  # ~3.5% < 5%
    _dump(path, doc)
    s = env.run()
    assert s.status == "succeeded" and s.message is None
    assert env.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(4 * 1440 - 200,)]


def test_gate_counts_file_failures(env) -> None:
    truth = generate(env.source, participants=2, days=2, seed=4)
    files = sorted(f for f in truth.files if f.name in ("steps.json", "floors.json"))[:6]
    for f in files:
        f.write_bytes(b"{")
    s = env.run(gate=GateLimits(max_file_failure_rate=0.2, min_files=10))
    assert s.status == "gated" and "run: 6 of 24 files rejected (limit 20%)" in s.message
    assert env.run(gate=GateLimits(max_file_failure_rate=0.3, min_files=10)).status == "succeeded"


def test_retry_rejected_rereads_files_after_a_rule_change(env) -> None:
    generate(env.source, participants=1, days=2, seed=8)
    strict = DEFAULT_LIMITS.with_overrides({"heart.value": [20, 70]})
    first = env.run(limits=strict, gate=GateLimits(max_reject_rate=1.0))
    held_back = first.totals["rows_rejected"]
    assert held_back > 0
    assert env.run().status == "nothing-new"
    again = env.run(retry_rejected=True)
    assert again.totals["files_changed"] == 0 and again.totals["files_retried"] >= 1
    assert env.sql("SELECT COUNT(*) FROM rural.rejected_records") == [(0,)]
    assert (
        env.sql("SELECT SUM(rows_loaded) FROM rural.pipeline_files WHERE run_id = ?", [again.run_id])[0][0] > held_back
    )


def test_validate_is_a_dry_run(env, faulty) -> None:
    report = validate(str(env.source), workers=1)
    assert report.files == 72 - 1 + 2  # one file deleted, README and the zip added
    assert report.files_rejected == 4
    assert report.rules["value_out_of_range"] == 3 and report.rules["duplicate_timestamp"] == 2
    assert report.rules["daily_total_mismatch"] == 1
    assert report.worst_files[0]["status"] == "rejected"
    assert not env.warehouse.exists() and not env.lake.exists()
    out = subprocess.run(
        [sys.executable, "-m", "fitbit_pipeline.cli", "validate", str(env.source), "--json", "--workers", "1"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "FITBIT_WAREHOUSE": str(env.warehouse)},
    )
    data = json.loads(out.stdout)
    assert data["rules"] == report.rules and data["files_rejected"] == 4
    assert not env.warehouse.exists()
