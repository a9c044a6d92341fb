"""The account export reader and listing on their own: whole files that cannot be read, empty files, records
that are not records, and where the participant comes from."""

from __future__ import annotations

import datetime as dt

import pytest

from fitbit_pipeline.account_export.bundles import bundle
from fitbit_pipeline.account_export.reader import parse_account_export
from fitbit_pipeline.layouts import match
from fitbit_pipeline.limits import DEFAULT_LIMITS
from fitbit_pipeline.parse import FileRejected
from fitbit_pipeline.sources import SourceDoc
from fitbit_pipeline.timezones import ZoneMap

RUN = dt.date(2026, 12, 1)
UTC = ZoneMap(default="UTC")
GED = "P1/Takeout/Fitbit/Global Export Data"


def _read(activity: str, *parts: tuple[str, bytes], zones: ZoneMap | None = UTC):
    return parse_account_export(activity, "P1", list(parts), RUN, DEFAULT_LIMITS, zones)


@pytest.mark.parametrize(
    ("name", "raw", "rule_id"),
    [
        ("steps-2024-01-01.json", b'[{"dateTime" : "01/01/24 00:00:00", "value" : "3"', "invalid_json"),
        ("steps-2024-01-01.json", b'{"dateTime" : "01/01/24 00:00:00", "value" : "3"}', "wrong_structure"),
        ("steps_2024-01-01.csv", b"timestamp,count\n2024-01-01T00:00:00Z,3\n", "csv_invalid"),
    ],
)
def test_a_file_unusable_as_a_whole_rejects_the_delivery_and_names_the_file(name, raw, rule_id):
    good = (f"{GED}/steps-2023-12-02.json", b'[{"dateTime" : "12/02/23 00:00:00", "value" : "1"}]')
    with pytest.raises(FileRejected) as err:
        _read("steps", good, (f"{GED}/{name}", raw))
    assert err.value.rule_id == rule_id and name in str(err.value)


@pytest.mark.parametrize("raw", [b"no data", b"No Data\n", b"", b"  \n", b"[]"])
def test_files_without_measurements_are_listed_as_empty(raw):
    read = _read("steps", (f"{GED}/steps-2024-01-01.json", raw))
    assert read.slices == [] and read.empty == [f"{GED}/steps-2024-01-01.json"] and read.unattributed == []


def test_a_record_that_is_not_a_record_is_rejected_with_its_text():
    raw = b'[{"dateTime" : "01/01/24 00:01:00", "value" : "3"}, 17, {"dateTime" : "13/45/24 00:00:00", "value" : "2"}]'
    read = _read("steps", (f"{GED}/steps-2024-01-01.json", raw))
    (day,) = read.slices
    assert day.date == dt.date(2024, 1, 1) and day.parsed is not None and list(day.parsed.measures["value"]) == [3.0]
    assert [(r["rule_id"], r["raw_value"]) for r in read.unattributed] == [
        ("time_invalid", ",17"),  # no time; the record's JSON as its value
        ("time_invalid", "13/45/24 00:00:00,2"),
    ]
    assert all("steps-2024-01-01.json" in r["message"] for r in read.unattributed)


def test_utc_times_need_a_zone_local_ones_do_not():
    heart = (
        f"{GED}/heart_rate-2024-01-01.json",
        b'[{"dateTime":"01/01/24 10:00:00","value":{"bpm":60,"confidence":3}}]',
    )
    with pytest.raises(FileRejected) as err:
        _read("heart", heart, zones=ZoneMap())
    assert err.value.rule_id == "zone_unknown" and "FITBIT_DEFAULT_TIMEZONE" in str(err.value)
    altitude = (f"{GED}/altitude-2024-01-01.json", b'[{"dateTime":"01/01/24 10:00:00","value":"10"}]')
    (day,) = _read("elevation", altitude, zones=ZoneMap()).slices
    assert day.parsed is not None and day.parsed.ts_utc is None and round(day.parsed.measures["value"][0], 6) == 3.048


def _doc(path: str, member: str | None = None) -> SourceDoc:
    uri = f"/data/{path}"
    source_file = f"{uri}!{member}" if member else uri
    logical = member or path
    return SourceDoc(source_file, uri, member, logical, 10, "f", f"0000-00-00|2024-01-01T00:00:00.000000|{source_file}")


def test_the_participant_is_the_configured_path_segment_folder_or_archive():
    docs = [
        _doc("site-a/P7/Takeout/Fitbit/Global Export Data/steps-2024-01-01.json"),
        _doc("site-a/P7/Takeout/Fitbit/Global Export Data/sleep-2024-01-01.json"),
        _doc("site-a/P8.zip", "Takeout/Fitbit/Physical Activity_GoogleData/steps_2024-01-01.csv"),
        _doc("site-a/notes.txt"),
    ]
    out = {d.source_file: d for d in bundle(docs, "/data", segment=1)}
    steps = sorted(s for s in out if s.endswith("{fitbit-account-export}"))
    assert steps == ["/data/site-a/P7/steps{fitbit-account-export}", "/data/site-a/P8.zip/steps{fitbit-account-export}"]
    assert [match(out[s].logical_path).participant_id for s in steps] == ["P7", "P8"]
    assert out["/data/site-a/P7/Takeout/Fitbit/Global Export Data/sleep-2024-01-01.json"].rule_id == (
        "account_export_not_loaded"
    )
    assert out["/data/site-a/notes.txt"].rule_id is None  # not an account export: left to the other layouts
    too_deep = bundle(docs[:1], "/data", segment=6)
    assert [d.rule_id for d in too_deep] == ["participant_unknown"]


def test_a_date_that_does_not_exist_is_not_moved_to_the_next_one():
    raw = b'[{"dateTime" : "02/30/24 10:00:00", "value" : "3"}, {"dateTime" : "02/29/24 10:00:60", "value" : "4"}]'
    read = _read("steps", (f"{GED}/steps-2024-02-01.json", raw))
    assert read.slices == []
    assert [(r["rule_id"], r["raw_value"]) for r in read.unattributed] == [
        ("time_invalid", "02/30/24 10:00:00,3"),
        ("time_invalid", "02/29/24 10:00:60,4"),
    ]


def test_csv_instants_that_are_not_real_times_are_rejected_rows_not_a_failed_run():
    raw = (
        b"timestamp,beats per minute\n2024-10-27T00:00:04.123456789Z,61\n2024-02-30T00:00:04Z,62\n"
        b"2024-10-27T24:00:00Z,63\n2024-10-27T23:59:60Z,64\n2024-10-27T00:00:05.5Z,65\n"
    )
    read = _read("heart", ("P1/Takeout/Fitbit/Physical Activity_GoogleData/heart_rate_2024-10-27.csv", raw))
    (day,) = read.slices
    assert day.parsed is not None and day.parsed.ts_utc.tolist() == [1729987204123456, 1729987205500000]
    assert [r["raw_value"].split(",")[0] for r in read.unattributed] == [
        "2024-02-30T00:00:04Z",
        "2024-10-27T24:00:00Z",
        "2024-10-27T23:59:60Z",
    ]
    assert {r["rule_id"] for r in read.unattributed} == {"time_invalid"}
