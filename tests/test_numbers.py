"""Issue 13, items 4-6: numbers. Duplicate keys, only JSON number grammar, per-second bounds, fractions where
Fitbit sends integers (kept and counted), and values that do not fit their column (rejected, the run goes on)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from fitbit_pipeline import activities, schema
from fitbit_pipeline.parse import FileContext, FileRejected, Parsed, parse_document
from fitbit_pipeline.validate import validate

from .hardening_support import Site, dumps, heart_doc, steps_doc, write

DAY = "2024-03-04"
RUN_DATE = dt.date(2024, 12, 31)


def parse(raw: bytes, activity: str = "steps") -> Parsed:
    ctx = FileContext("t.json", "P1", activities.get(activity), dt.date.fromisoformat(DAY), RUN_DATE)
    return parse_document(raw, ctx)


def rules(p: Parsed) -> list[str]:
    return [r["rule_id"] for r in p.rejects]


# ---- item 4: duplicate keys, number grammar, per-second bounds --------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        # in a compact dataset row (the numpy scanner's shape)
        b'{"activities-steps-intraday":{"dataset":[{"time":"00:00:00","value":1,"value":250}],'
        b'"datasetInterval":1,"datasetType":"minute"}}',
        # in a row of a pretty-printed document (the general path)
        b'{"activities-steps-intraday": {"dataset": [{"time": "00:00:00", "value": 1, "value": 250}],'
        b' "datasetInterval": 1, "datasetType": "minute"}}',
        # in the summary, around a compact dataset
        b'{"activities-steps":[{"dateTime":"2024-03-04","value":"1","value":"250"}],'
        b'"activities-steps-intraday":{"dataset":[{"time":"00:00:00","value":1}],"datasetInterval":1,'
        b'"datasetType":"minute"}}',
        # at the top level
        b'{"activities-steps":[{"dateTime":"2024-03-04","value":"1"}],"activities-steps":[]}',
    ],
)
def test_duplicate_keys_reject_the_file(raw: bytes) -> None:
    with pytest.raises(FileRejected) as exc:
        parse(raw)
    assert exc.value.rule_id == "duplicate_key"
    assert "250" not in str(exc.value)


def test_same_key_in_different_objects_is_fine() -> None:
    p = parse(steps_doc(DAY, [1, 2, 3]))
    assert p.rejects == [] and list(p.measures["value"]) == [1, 2, 3]


@pytest.mark.parametrize("total", ["3_0", " 30", "30 ", "+30", "nan", "NaN", "inf", "1e999", "٣٠", "0x1e", "30."])
def test_only_json_number_grammar_counts_in_strings(total: str) -> None:
    p = parse(steps_doc(DAY, [10, 20], total=total))
    assert p.daily is None and rules(p) == ["daily_value_invalid"]


@pytest.mark.parametrize(("total", "value"), [("30", 30), ("3.0e1", 30), ("-0", 0)])
def test_json_numbers_in_strings_are_accepted(total: str, value: int) -> None:
    assert parse(steps_doc(DAY, [10, 20], total=total)).daily == {"value": value}


def test_second_level_data_is_checked_against_a_per_second_bound() -> None:
    # steps: 300 per minute is 5 per second; floors: 20 per minute still allows one floor in a second
    p = parse(steps_doc(DAY, [5, 6, 300], dataset_type="second"))
    assert list(p.measures["value"]) == [5] and rules(p) == ["value_out_of_range", "value_out_of_range"]
    assert list(parse(steps_doc(DAY, [300, 250], dataset_type="minute")).measures["value"]) == [300, 250]
    floors = steps_doc(DAY, [1, 2], dataset_type="second").replace(b"activities-steps", b"activities-floors")
    p = parse(floors, "floors")
    assert list(p.measures["value"]) == [1] and rules(p) == ["value_out_of_range"]


# ---- item 5: fractions where Fitbit sends integers ------------------------------------------------------


def test_intraday_measure_columns_hold_fractions() -> None:
    for table in schema.INTRADAY.values():
        for m in activities.get(table.activity).measures:
            assert table.schema.field(m.name).type == "double"


@pytest.mark.parametrize("pretty", [False, True])
def test_non_integral_heart_rate_is_kept_and_counted(pretty: bool) -> None:
    raw = heart_doc(DAY, [72.4, 80, 65.5])
    if pretty:
        raw = orjson.dumps(orjson.loads(raw), option=orjson.OPT_INDENT_2)
    p = parse(raw, "heart")
    assert p.rejects == []
    assert list(p.measures["value"]) == [72.4, 80.0, 65.5]
    assert p.findings == [("value_not_integral", "2 values of 'value' are not whole numbers")]


def test_non_integral_values_end_to_end(tmp_path) -> None:
    site = Site(tmp_path)
    write(site, f"P1/{DAY}/heart.json", heart_doc(DAY, [72.4, 80, 65.5]))
    write(site, f"P1/{DAY}/steps.json", steps_doc(DAY, [1.5, 2], total="4"))
    s = site.run(gate=None)  # the default gate: nothing is rejected
    assert s.status == "succeeded" and s.totals["rows_rejected"] == 0
    assert site.sql("SELECT value FROM rural.intraday_heart ORDER BY ts") == [(72.4,), (80.0,), (65.5,)]
    assert site.sql("SELECT value FROM rural.intraday_steps ORDER BY ts") == [(1.5,), (2.0,)]
    assert site.sql(
        "SELECT activity, severity, message FROM rural.data_quality_findings WHERE rule_id = 'value_not_integral' "
        "ORDER BY 1"
    ) == [
        ("heart", "warning", "2 values of 'value' are not whole numbers"),
        ("steps", "warning", "1 values of 'value' are not whole numbers"),
    ]
    site.identity_holds()


# ---- item 6: values that do not fit their column ---------------------------------------------------------


def _zone(**over: Any) -> dict[str, Any]:
    return {"name": "Fat Burn", "min": 100, "max": 140, "minutes": 5, "caloriesOut": 12.5, **over}


BAD_HEART = [
    ("zone min beyond int32", heart_doc(DAY, [70], zones=[_zone(min=2147483648, max=2147483649)]), "zone_invalid"),
    ("zone max 2**63", heart_doc(DAY, [70], zones=[_zone(max=2**63)]), "zone_invalid"),
    ("zone max 2**64", heart_doc(DAY, [70], zones=[_zone(max=2**64)]), "zone_invalid"),
    ("zone min -2**31-1", heart_doc(DAY, [70], zones=[_zone(min=-(2**31) - 1)]), "zone_invalid"),
    ("zone minutes 2**63", heart_doc(DAY, [70], zones=[_zone(minutes=2**63)]), "zone_invalid"),
    ("zone calories 1e308*10", heart_doc(DAY, [70], zones=[_zone(caloriesOut="1e309")]), "zone_invalid"),
    ("resting 2**63", heart_doc(DAY, [70], resting=2**63), "resting_hr_out_of_range"),
    ("intraday 2**63", heart_doc(DAY, [70, 2**63]), "value_out_of_range"),
]


@pytest.mark.parametrize(("name", "raw", "rule_id"), BAD_HEART, ids=[b[0] for b in BAD_HEART])
def test_values_beyond_their_column_reject_the_record(name: str, raw: bytes, rule_id: str) -> None:
    p = parse(raw, "heart")
    assert rules(p) == [rule_id]
    assert p.rows_read == p.rows_valid + p.rows_rejected + p.rows_duplicate


def test_out_of_column_values_never_stop_a_run(tmp_path) -> None:
    site = Site(tmp_path)
    for i, (_, raw, _) in enumerate(BAD_HEART):
        write(site, f"P{i}/{DAY}/heart.json", raw)
    write(site, f"Q/{DAY}/steps.json", steps_doc(DAY, [1, 2], total=str(2**63)))
    write(site, f"Q/{DAY}/floors.json", steps_doc(DAY, [10**30, 1]).replace(b"activities-steps", b"activities-floors"))
    calories = dumps(
        {
            "activities-calories": [{"dateTime": DAY, "value": "1.0"}],
            "activities-calories-intraday": {
                "dataset": [{"time": "00:00:00", "value": 1.0, "level": 2**40, "mets": 2**63}],
                "datasetInterval": 1,
                "datasetType": "minute",
            },
        }
    )
    write(site, f"Q/{DAY}/calories.json", calories)
    write(site, f"Q/{DAY}/heart.json", heart_doc(DAY, [70, 71]))  # a good file in the same chunk
    report = validate(str(site.source), run_date=RUN_DATE, workers=1)
    assert report.files_rejected == 0 and report.rules["zone_invalid"] == 6
    s = site.run()
    assert s.status == "succeeded", s.message
    assert site.sql("SELECT COUNT(*) FROM rural.pipeline_files WHERE status = 'loaded'") == [(len(BAD_HEART) + 4,)]
    got = dict(site.sql("SELECT rule_id, COUNT(*) FROM rural.rejected_records GROUP BY 1"))
    assert got == {"zone_invalid": 6, "resting_hr_out_of_range": 1, "value_out_of_range": 3, "daily_value_invalid": 2}
    assert site.sql("SELECT COUNT(*) FROM rural.intraday_heart WHERE participant_id = 'Q'") == [(2,)]
    site.identity_holds()
