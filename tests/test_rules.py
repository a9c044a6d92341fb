"""Every declared rule: a violating record and a passing one, and where the rule id lands."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from fitbit_pipeline import activities
from fitbit_pipeline.limits import DEFAULT_LIMITS
from fitbit_pipeline.parse import FileContext, FileRejected, Parsed, parse_document
from fitbit_pipeline.rules import RULES

DAY = "2024-03-09"
RUN_DATE = dt.date(2024, 4, 1)
ZONES = [
    {"caloriesOut": 1.0, "max": 90, "min": 30, "minutes": 900, "name": "Out of Range"},
    {"caloriesOut": 1.0, "max": 126, "min": 90, "minutes": 60, "name": "Fat Burn"},
    {"caloriesOut": 0.0, "max": 153, "min": 126, "minutes": 0, "name": "Cardio"},
    {"caloriesOut": 0.0, "max": 220, "min": 153, "minutes": 0, "name": "Peak"},
]


def document(
    activity: str = "steps",
    rows: list[Any] | None = None,
    *,
    daily: Any = None,
    date: str = DAY,
    interval: int = 1,
    dataset_type: str = "minute",
    summary: bool = True,
    intraday: bool = True,
    resting: Any = 60,
    zones: list[Any] | None = None,
) -> dict[str, Any]:
    if rows is None:
        base = 60 if activity == "heart" else 1
        rows = [{"time": "00:00:00", "value": base}, {"time": "00:01:00", "value": base + 1}]
    doc: dict[str, Any] = {}
    if summary:
        if activity == "heart":
            value: Any = {"customHeartRateZones": [], "heartRateZones": ZONES if zones is None else zones}
            if resting is not None:
                value["restingHeartRate"] = resting
        else:
            total = sum(r["value"] for r in rows if isinstance(r, dict) and isinstance(r.get("value"), int | float))
            value = str(total) if daily is None else daily
        doc[f"activities-{activity}"] = [{"dateTime": date, "value": value}]
    if intraday:
        doc[f"activities-{activity}-intraday"] = {
            "dataset": rows,
            "datasetInterval": interval,
            "datasetType": dataset_type,
        }
    return doc


def parse(doc: Any, activity: str = "steps", *, path_date: str | None = DAY, run_date: dt.date = RUN_DATE) -> Parsed:
    raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    pd = dt.date.fromisoformat(path_date) if path_date else None
    ctx = FileContext("test.json", "P1", activities.get(activity), pd, run_date, DEFAULT_LIMITS)
    return parse_document(raw, ctx)


def rules_of(p: Parsed, record_type: str | None = None) -> list[str]:
    return [r["rule_id"] for r in p.rejects if record_type is None or r["record_type"] == record_type]


def assert_accounted(p: Parsed) -> None:
    assert p.rows_read == p.rows_valid + p.rows_rejected + p.rows_duplicate


# ---- whole-file rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_id", "bad", "kwargs"),
    [
        ("invalid_json", b'{"activities-steps": [', {}),
        ("wrong_structure", [1, 2], {}),
        ("wrong_structure", {"unrelated": 1}, {}),
        ("wrong_structure", {"activities-steps-intraday": {"dataset": "nope"}}, {}),
        ("wrong_structure", document(dataset_type="hour"), {}),
        ("date_invalid", document(date="2024-13-01"), {}),
        ("date_mismatch", document(date="2024-03-10"), {}),
        ("date_in_future", document(), {"run_date": dt.date(2024, 3, 8)}),
    ],
)
def test_file_rules_reject_the_file(rule_id: str, bad: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(FileRejected) as exc:
        parse(bad, **kwargs)
    assert exc.value.rule_id == rule_id
    assert RULES[rule_id].scope == "file"
    # the passing counterpart
    p = parse(document(), run_date=dt.date(2024, 3, 9))
    assert p.rejects == [] and len(p.ts) == 2


def test_file_reject_counts_the_rows_it_held() -> None:
    with pytest.raises(FileRejected) as exc:
        parse(document(date="2024-03-10"))
    assert exc.value.rows_read == 2


# ---- row rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activity", "rule_id", "bad_row"),
    [
        ("steps", "missing_field", {"time": "00:02:00"}),
        ("steps", "missing_field", {"value": 3}),
        ("steps", "missing_field", "not an object"),
        ("calories", "missing_field", {"time": "00:02:00", "value": 1.0, "level": 0}),
        ("steps", "time_invalid", {"time": "24:00:00", "value": 3}),
        ("steps", "time_invalid", {"time": "7:00", "value": 3}),
        ("steps", "time_invalid", {"time": 120, "value": 3}),
        ("steps", "time_invalid", {"time": "00:61:00", "value": 3}),
        ("steps", "value_wrong_type", {"time": "00:02:00", "value": "3"}),
        ("steps", "value_wrong_type", {"time": "00:02:00", "value": True}),
        ("steps", "value_wrong_type", {"time": "00:02:00", "value": None}),
        ("heart", "value_out_of_range", {"time": "00:02:00", "value": 251}),
        ("heart", "value_out_of_range", {"time": "00:02:00", "value": 19}),
        ("steps", "value_out_of_range", {"time": "00:02:00", "value": 301}),
        ("steps", "value_out_of_range", {"time": "00:02:00", "value": -1}),
        ("calories", "value_out_of_range", {"time": "00:02:00", "value": 61.0, "level": 0, "mets": 10}),
        ("calories", "value_out_of_range", {"time": "00:02:00", "value": 1.0, "level": 4, "mets": 10}),
        ("calories", "value_out_of_range", {"time": "00:02:00", "value": 1.0, "level": 0, "mets": 251}),
        ("distance", "value_out_of_range", {"time": "00:02:00", "value": 0.51}),
        ("floors", "value_out_of_range", {"time": "00:02:00", "value": 21}),
        ("elevation", "value_out_of_range", {"time": "00:02:00", "value": 60.5}),
        ("steps", "time_off_grid", {"time": "00:02:30", "value": 3}),
        ("steps", "duplicate_timestamp", {"time": "00:01:00", "value": 5}),
    ],
)
def test_row_rules_reject_the_row_and_keep_the_rest(activity: str, rule_id: str, bad_row: Any) -> None:
    good = [{"time": "00:00:00", "value": 70}, {"time": "00:01:00", "value": 72}]
    if activity == "calories":
        good = [dict(r, value=1.0, level=0, mets=10) for r in good]
    elif activity in ("distance", "elevation"):
        good = [dict(r, value=0.1) for r in good]
    elif activity in ("steps", "floors"):
        good = [dict(r, value=3) for r in good]
    p = parse(document(activity, [*good, bad_row], daily="0" if activity != "heart" else None), activity)
    assert rules_of(p, "intraday") == [rule_id]
    reject = p.rejects[0]
    assert reject["row_index"] == 2 and reject["raw_value"] == orjson.dumps(bad_row).decode()
    assert len(p.ts) == 2 and rule_id in RULES
    assert_accounted(p)
    if rule_id == "duplicate_timestamp":
        assert p.rows_duplicate == 1 and p.rows_rejected == 0
        assert list(p.measures["value"]) == [good[0]["value"], good[1]["value"]]  # the first one is kept
    # the passing counterpart: the good rows alone break nothing
    clean = parse(document(activity, good, daily="0" if activity != "heart" else None), activity)
    assert rules_of(clean) == []


def test_interval_scales_the_step_range_and_the_grid() -> None:
    rows = [{"time": "00:00:00", "value": 4000}, {"time": "00:15:00", "value": 10}]
    assert rules_of(parse(document(rows=rows, interval=15))) == []
    p = parse(
        document(rows=[*rows, {"time": "00:20:00", "value": 1}, {"time": "00:30:00", "value": 4501}], interval=15)
    )
    assert rules_of(p) == ["time_off_grid", "value_out_of_range"]


def test_second_level_heart_rate_has_no_minute_grid() -> None:
    rows = [{"time": "00:00:07", "value": 60}, {"time": "00:00:09", "value": 61}]
    p = parse(document("heart", rows, dataset_type="second"), "heart")
    assert rules_of(p) == [] and len(p.ts) == 2


def test_overridden_range_changes_the_verdict() -> None:
    rows = [{"time": "00:00:00", "value": 230}]
    raw = orjson.dumps(document("heart", rows))
    ctx = FileContext(
        "t",
        "P",
        activities.get("heart"),
        dt.date(2024, 3, 9),
        RUN_DATE,
        DEFAULT_LIMITS.with_overrides({"heart.value": [30, 220]}),
    )
    assert rules_of(parse_document(raw, ctx)) == ["value_out_of_range"]
    assert rules_of(parse(document("heart", rows), "heart")) == []
    with pytest.raises(ValueError, match="unknown range"):
        DEFAULT_LIMITS.with_overrides({"heart.bogus": [1, 2]})


# ---- summary rules -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["abc", "-5", "12.5", None, [1]])
def test_daily_value_invalid(bad: Any) -> None:
    doc = document(daily="x")
    doc["activities-steps"][0]["value"] = bad
    p = parse(doc)
    assert rules_of(p, "daily") == ["daily_value_invalid"] and p.daily is None
    assert len(p.ts) == 2
    assert_accounted(p)
    assert parse(document(daily="3")).daily == {"value": 3}


@pytest.mark.parametrize("bad", [10, 151, "60", 60.5])
def test_resting_heart_rate_out_of_range(bad: Any) -> None:
    p = parse(document("heart", resting=bad), "heart")
    assert rules_of(p, "daily") == ["resting_hr_out_of_range"]
    assert_accounted(p)
    assert parse(document("heart", resting=25), "heart").daily == {"resting_heart_rate": 25}
    assert parse(document("heart", resting=None), "heart").daily == {"resting_heart_rate": None}


@pytest.mark.parametrize(
    "bad_zone",
    [
        {"caloriesOut": 0.0, "max": 100, "min": 100, "minutes": 0, "name": "Inverted"},
        {"caloriesOut": 0.0, "max": 140, "min": 120, "minutes": 0, "name": "Overlapping"},
        {"caloriesOut": 0.0, "max": 260, "min": 221, "minutes": 1441, "name": "Too long"},
        {"caloriesOut": 0.0, "max": 260, "min": 221, "minutes": -1, "name": "Negative"},
        {"max": 260, "min": 221, "minutes": 0},
    ],
)
def test_zone_invalid(bad_zone: dict[str, Any]) -> None:
    p = parse(document("heart", zones=[*ZONES, bad_zone]), "heart")
    assert rules_of(p, "zone") == ["zone_invalid"]
    assert len(p.zones) == 4
    assert_accounted(p)
    assert rules_of(parse(document("heart"), "heart")) == []


# ---- warnings ----------------------------------------------------------------------------


def test_daily_total_mismatch_is_a_warning_and_rows_stay() -> None:
    p = parse(document(daily="4"))  # intraday sums to 3
    assert [f[0] for f in p.findings] == ["daily_total_mismatch"] and len(p.ts) == 2
    assert parse(document(daily="3")).findings == []
    # distance within its rounding tolerance is fine, beyond it is not
    rows = [{"time": "00:00:00", "value": 0.123456}]
    assert parse(document("distance", rows, daily="0.12346"), "distance").findings == []
    assert [f[0] for f in parse(document("distance", rows, daily="0.2"), "distance").findings] == [
        "daily_total_mismatch"
    ]


def test_summary_or_intraday_missing_are_warnings() -> None:
    p = parse(document(summary=False))
    assert [f[0] for f in p.findings] == ["daily_summary_missing"] and len(p.ts) == 2 and p.daily is None
    p = parse(document(intraday=False))
    assert [f[0] for f in p.findings] == ["intraday_missing"] and p.daily == {"value": 3}


def test_every_declared_rule_is_exercised_somewhere() -> None:
    """Guard: a rule added to rules.py without a test here (or in test_validation_e2e) fails."""
    import pathlib

    text = "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    missing = [r for r in RULES if f'"{r}"' not in text]
    assert missing == []
