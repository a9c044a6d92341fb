"""The Fitabase reader: rules and accounting on hand-made exports of the published layout."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from fitbit_pipeline.fitabase.reader import parse_export
from fitbit_pipeline.limits import DEFAULT_LIMITS
from fitbit_pipeline.parse import FileRejected

RUN = dt.date(2026, 1, 1)
CALORIES = (
    b"Id,ActivityMinute,Calories\r\n"
    b"1503960366,4/12/2016 12:00:00 AM,0.786\r\n"
    b"1503960366,4/12/2016 12:01:00 AM,0.786\r\n"
    b"1503960366,4/12/2016 12:01:00 AM,0.9\r\n"
    b"1503960366,4/12/2016 12:00:00 PM,x\r\n"
    b"1503960366,4/12/2016 12:02:30 PM,1\r\n"
    b",4/12/2016 1:00:00 PM,1\r\n"
    b"1624580081,4/13/2016 11:59:00 PM,1.5\r\n"
    b"broken\r\n"
)
INTENSITIES = b"Id,ActivityMinute,Intensity\n1503960366,4/12/2016 12:00:00 AM,0\n1503960366,4/12/2016 12:05:00 AM,1\n"
METS = b"Id,ActivityMinute,METs\n1503960366,4/12/2016 12:01:00 AM,12\n"
DAILY = (
    b"Id,ActivityDate,TotalSteps,TotalDistance,Calories\n"
    b"1503960366,4/12/2016,100,0.5,1.572\n1624580081,4/13/2016,1,1,2\n1624580081,4/13/2016,1,1,2\n"
)


def _calories(part: tuple[int, int] = (1, 1)):
    parts = [
        ("minuteCaloriesNarrow_merged.csv", CALORIES),
        ("minuteIntensitiesNarrow_merged.csv", INTENSITIES),
        ("minuteMETsNarrow_merged.csv", METS),
        ("dailyActivity_merged.csv", DAILY),
    ]
    return parse_export("calories", parts, RUN, DEFAULT_LIMITS, part)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_the_parts_of_an_export_hold_each_participant_once_and_the_unattributed_rows_in_the_first(n):
    whole = _calories()
    pieces = [_calories((k, n)) for k in range(1, n + 1)]
    got = sorted((s.participant, s.date, s.parsed.ts.tolist(), len(s.parsed.rejects)) for p in pieces for s in p.slices)
    assert got == sorted((s.participant, s.date, s.parsed.ts.tolist(), len(s.parsed.rejects)) for s in whole.slices)
    assert pieces[0].unattributed == whole.unattributed and all(not p.unattributed for p in pieces[1:])
    assert len(whole.unattributed) == 2  # the row without an Id and the line that does not split


@pytest.mark.parametrize("n", [2, 3])
def test_the_parts_of_an_export_hold_as_many_participants_each(n):
    """Six participants in the minute file (a seventh only in the METs file, read later): each part holds
    every n-th of them in order of first appearance, so parts are even whatever the ids (a hash of six ids
    can put four in one part); every participant's rows, from every file, are in one part."""
    ids = ["1503960366", "1624580081", "1644430081", "1844505072", "1927972279", "2022484408"]
    rows = "".join(f"{i},4/12/2016 {m}:00:00 AM,1\n" for i in ids for m in (1, 2))
    calories = f"Id,ActivityMinute,Calories\n{rows}".encode()
    mets = f"Id,ActivityMinute,METs\n{ids[-1]},4/12/2016 1:00:00 AM,10\n4020332650,4/12/2016 1:00:00 AM,10\n"
    parts = [("minuteCaloriesNarrow_merged.csv", calories), ("minuteMETsNarrow_merged.csv", mets.encode())]
    pieces = [parse_export("calories", parts, RUN, DEFAULT_LIMITS, (k, n)) for k in range(1, n + 1)]
    held = [sorted({s.participant for s in p.slices}) for p in pieces]
    assert held == [sorted(ids[k::n]) + (["4020332650"] if k == 6 % n else []) for k in range(n)]
    last = next(s for p in pieces for s in p.slices if s.participant == ids[-1])
    assert last.parsed.measures["mets"][0] == 10  # its METs row read by the part holding its minutes


def test_calories_minutes_join_level_and_mets_and_every_row_is_accounted_for():
    read = _calories()
    first, second = read.slices
    p = first.parsed
    assert (first.participant, first.date) == ("1503960366", dt.date(2016, 4, 12))
    # 12:00 AM is midnight: the first minute of the day
    assert p.ts.tolist() == [1460419200000000, 1460419260000000]
    assert p.measures["value"].tolist() == [0.786, 0.786]
    assert p.measures["level"][0] == 0 and np.isnan(p.measures["level"][1])
    assert np.isnan(p.measures["mets"][0]) and p.measures["mets"][1] == 12
    assert p.daily == {"value": 1.572}
    assert sorted(r["rule_id"] for r in p.rejects) == [
        "duplicate_timestamp",
        "measure_without_value",
        "time_off_grid",
        "value_wrong_type",
    ]
    assert p.findings == []
    for s in read.slices:
        q = s.parsed
        assert q.rows_read == q.rows_valid + q.rows_rejected + q.rows_duplicate
    assert second.parsed.daily is None  # two daily rows of one day: none kept
    assert [r["rule_id"] for r in second.parsed.rejects] == ["daily_record_repeated"] * 2
    assert sorted(r["rule_id"] for r in read.unattributed) == ["csv_row_malformed", "missing_field"]


def test_the_narrow_row_of_a_minute_wins_over_the_wide_one():
    wide = (
        b"Id,ActivityHour,"
        + ",".join(f"Steps{m:02d}" for m in range(60)).encode()
        + b"\n1,4/12/2016 1:00:00 PM,"
        + ",".join(str(m) for m in range(60)).encode()
        + b"\n"
    )
    narrow = b"Id,ActivityMinute,Steps\n1,4/12/2016 1:00:00 PM,0\n1,4/12/2016 1:01:00 PM,7\n"
    parts = [("minuteStepsWide_merged.csv", wide), ("minuteStepsNarrow_merged.csv", narrow)]
    (only,) = parse_export("steps", parts, RUN, DEFAULT_LIMITS).slices
    p = only.parsed
    assert len(p.ts) == 60 and p.measures["value"][:3].tolist() == [0, 7, 2]
    assert (p.rows_read, p.rows_duplicate) == (62, 2)
    assert p.rejects[0]["raw_value"] == "1,4/12/2016 1:00:00 PM,Steps00,0"


@pytest.mark.parametrize(
    "text",
    [b"", b"Id,ActivityMinute\n1,4/12/2016 1:00:00 PM\n", b"Id,Time,Steps\n1,4/12/2016 1:00:00 PM,3\n"],
)
def test_a_file_without_its_columns_rejects_the_delivery_and_names_no_value(text):
    with pytest.raises(FileRejected) as err:
        parse_export("steps", [("minuteStepsNarrow_merged.csv", text)], RUN, DEFAULT_LIMITS)
    assert err.value.rule_id == "csv_invalid" and "minuteStepsNarrow_merged.csv" in str(err.value)
    assert "4/12/2016" not in str(err.value)
