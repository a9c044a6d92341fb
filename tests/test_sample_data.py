"""Tests of the synthetic Fitbit data generator against the reference fixtures' shapes."""

from __future__ import annotations

import datetime
import math
import pathlib
import re
import zipfile

import orjson
import pytest

from fitbit_pipeline import sample_data
from fitbit_pipeline.sample_data import ACTIVITIES, LAYOUTS, SampleTruth, generate

from .conftest import FIXTURES

START = datetime.date(2024, 3, 4)
ACT = "|".join(ACTIVITIES)
DATE = r"\d{4}-\d{2}-\d{2}"

PATTERNS = {
    "by-participant-and-date": re.compile(rf"^(?P<pid>[^/]+)/(?P<date>{DATE})/(?P<act>{ACT})\.json$"),
    "mydatahelps": re.compile(
        rf"^fitbit_intraday_activities_(?P<act>{ACT})/(?P<pid>[^/]+)/"
        rf"activities_(?P=act)_date_(?P<date>{DATE})_1d_(?P<detail>1sec|1min)\.json$"
    ),
    "careevolution": re.compile(
        rf"^raw/health/(?P<y>\d{{4}})/(?P<m>\d{{2}})/(?P<d>\d{{2}})/FITBIT/activities-(?P<act>{ACT})-intraday/"
        rf"(?P<pid>[^/]+)/activities_(?P=act)_date_(?P<date>{DATE})_1d_(?P<detail>1sec|1min)\.json$"
    ),
}
ZIP_NAME = re.compile(r"^RK\.[0-9A-F]{8}\.RURAL Study_(?P<first>\d{8})-(?P<last>\d{8})\.zip$")
ID_PATTERNS = {
    "by-participant-and-date": re.compile(r"^[0-9A-Z]{6}$"),
    "mydatahelps": re.compile(r"^MDH-\d{4}-\d{4}$"),
    "careevolution": re.compile(r"^P\d{6}$"),
}

# Plausible ranges (inclusive) per minute, as the validator applies them.
RANGES = {
    "heart": (20, 250),
    "steps": (0, 300),
    "calories": (0, 60),
    "distance": (0, 0.5),
    "floors": (0, 20),
    "elevation": (0, 60),
}


# ----------------------------------------------------------------------------- helpers


def read_docs(out: pathlib.Path, truth: SampleTruth, layout: str) -> dict[tuple, tuple[str, bytes]]:
    """(participant, date, activity) -> (relative path or member name, raw bytes), checking paths."""
    docs: dict[tuple, tuple[str, bytes]] = {}
    if layout == "mydatahelps":
        (archive,) = truth.files
        assert archive.parent == out
        named = ZIP_NAME.match(archive.name)
        assert named, archive.name
        items = []
        with zipfile.ZipFile(archive) as zf:
            assert zf.testzip() is None
            for info in zf.infolist():
                assert info.compress_type == zipfile.ZIP_DEFLATED
                items.append((info.filename, zf.read(info)))
        dates = sorted({PATTERNS[layout].match(name)["date"] for name, _ in items})
        assert named["first"] == dates[0].replace("-", "")
        assert named["last"] == dates[-1].replace("-", "")
    else:
        items = [(p.relative_to(out).as_posix(), p.read_bytes()) for p in truth.files]
        on_disk = sorted(p for p in out.rglob("*") if p.is_file())
        assert on_disk == sorted(truth.files)
    for name, raw in items:
        m = PATTERNS[layout].match(name)
        assert m, f"{name!r} does not match the {layout} layout"
        if layout == "careevolution":
            assert f"{m['y']}-{m['m']}-{m['d']}" == m["date"]
        key = (m["pid"], datetime.date.fromisoformat(m["date"]), m["act"])
        assert key not in docs
        docs[key] = (name, raw)
    return docs


def skeleton(obj):
    """Key names and order, nesting and JSON types (int and float are both `number`)."""
    if isinstance(obj, dict):
        return ("object", tuple((k, skeleton(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return ("array", skeleton(obj[0]) if obj else None)
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, int | float):
        return "number"
    return type(obj).__name__


def fixture_skeleton(name: str):
    return skeleton(orjson.loads((FIXTURES / "web-api" / name).read_bytes()))  # missing: an error


def seconds(t: str) -> int:
    h, m, s = t.split(":")
    return int(h) * 3600 + int(m) * 60 + int(s)


def dataset(doc: dict, activity: str) -> list[dict]:
    return doc[f"activities-{activity}-intraday"]["dataset"]


def summary(doc: dict, activity: str):
    (item,) = doc[f"activities-{activity}"]
    return item


_CACHE: dict[tuple, tuple] = {}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Generate (once per module) a small sample: 2 participants x 2 days."""

    def make(layout: str, hr_seconds: bool):
        key = (layout, hr_seconds)
        if key not in _CACHE:
            out = tmp_path_factory.mktemp(f"{layout}-{int(hr_seconds)}")
            truth = generate(out, participants=2, days=2, start=START, hr_seconds=hr_seconds, layout=layout)
            _CACHE[key] = (out, truth, read_docs(out, truth, layout))
        return _CACHE[key]

    return make


CASES = [(layout, False) for layout in LAYOUTS] + [
    ("by-participant-and-date", True),
    ("mydatahelps", True),
    ("careevolution", True),
]


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("layout", "hr_seconds"), CASES)
def test_paths_and_ids(generated, layout, hr_seconds):
    out, truth, docs = generated(layout, hr_seconds)
    pids = {k[0] for k in docs}
    assert len(pids) == 2
    assert all(ID_PATTERNS[layout].match(p) for p in pids), pids
    dates = {k[1] for k in docs}
    assert dates == {START, START + datetime.timedelta(days=1)}
    assert len(docs) == 2 * 2 * len(ACTIVITIES)
    assert len(truth.files) == (1 if layout == "mydatahelps" else len(docs))
    for (_pid, _date, activity), (name, _raw) in docs.items():
        if layout != "by-participant-and-date":
            detail = "1sec" if activity == "heart" and hr_seconds else "1min"
            assert name.endswith(f"_1d_{detail}.json")


@pytest.mark.parametrize(("layout", "hr_seconds"), CASES)
def test_structure_matches_fixtures(generated, layout, hr_seconds):
    _out, _truth, docs = generated(layout, hr_seconds)
    for (_pid, date, activity), (name, raw) in docs.items():
        doc = orjson.loads(raw)
        # Compact single line, keys in the fixtures' (sorted) order, shortest float forms.
        assert raw == orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), name
        assert summary(doc, activity)["dateTime"] == date.isoformat()
        intraday = doc[f"activities-{activity}-intraday"]
        assert intraday["datasetInterval"] == 1
        if activity == "heart":
            rows = dataset(doc, "heart")
            if not rows:  # (the not-worn fixture is a minute request; only the type differs)
                assert skeleton(doc) == fixture_skeleton("heart_not_worn.json"), name
            else:
                fixture = "heart_1sec.json" if hr_seconds else "heart_1min.json"
                assert skeleton(doc) == fixture_skeleton(fixture), name
            assert intraday["datasetType"] == ("second" if hr_seconds else "minute")
        else:
            assert skeleton(doc) == fixture_skeleton(f"{activity}_1min.json"), name
            assert intraday["datasetType"] == "minute"
            assert isinstance(summary(doc, activity)["value"], str)


@pytest.mark.parametrize(("layout", "hr_seconds"), CASES)
def test_values_in_range_and_totals_agree(generated, layout, hr_seconds):
    _out, _truth, docs = generated(layout, hr_seconds)
    for (_pid, _date, activity), (name, raw) in docs.items():
        doc = orjson.loads(raw)
        rows = dataset(doc, activity)
        lo, hi = RANGES[activity]
        times = [seconds(r["time"]) for r in rows]
        assert times == sorted(set(times)), name
        for r in rows:
            v = r["value"]
            assert lo <= v <= hi, (name, r)
            if activity in ("heart", "steps", "floors"):
                assert type(v) is int, (name, r)
            if activity in ("distance", "elevation") and v == 0:
                assert type(v) is int, (name, r)  # a zero minute is printed as 0
            if activity == "calories":
                assert list(r) == ["level", "mets", "time", "value"]
                assert type(r["level"]) is int and 0 <= r["level"] <= 3
                assert type(r["mets"]) is int and 0 <= r["mets"] <= 250
        if activity != "heart":
            assert len(rows) == 1440 and times == list(range(0, 86400, 60)), name
            daily = summary(doc, activity)["value"]
            total = math.fsum(r["value"] for r in rows)
            if activity in ("steps", "floors"):
                assert daily == str(sum(r["value"] for r in rows)), name
            elif activity == "distance":
                assert abs(float(daily) - total) <= 0.5e-5 + 1e-9, name
            elif activity == "elevation":
                assert abs(float(daily) - total) <= 0.5e-3 + 1e-9, name
                assert all(abs(r["value"] / 3.048 - round(r["value"] / 3.048)) < 1e-9 for r in rows)
            else:
                assert abs(int(daily) - total) <= 0.5 + 1e-9, name


@pytest.mark.parametrize(("layout", "hr_seconds"), CASES)
def test_heart_rows_only_when_worn(generated, layout, hr_seconds):
    _out, _truth, docs = generated(layout, hr_seconds)
    not_worn_days = 0
    for (pid, date, activity), (name, raw) in docs.items():
        if activity != "heart":
            continue
        doc = orjson.loads(raw)
        value = summary(doc, "heart")["value"]
        zones = value["heartRateZones"]
        assert [z["name"] for z in zones] == ["Out of Range", "Fat Burn", "Cardio", "Peak"]
        for a, b in zip(zones, zones[1:], strict=False):
            assert a["max"] <= b["min"]
        for z in zones:
            assert z["min"] < z["max"] and 0 <= z["minutes"] <= 1440 and z["caloriesOut"] >= 0
        assert value["customHeartRateZones"] == []
        rows = dataset(doc, "heart")
        worn_minutes = {seconds(r["time"]) // 60 for r in rows}
        assert sum(z["minutes"] for z in zones) == len(worn_minutes), name
        step_rows = dataset(orjson.loads(docs[(pid, date, "steps")][1]), "steps")
        stepping = {i for i, r in enumerate(step_rows) if r["value"] > 0}
        assert stepping <= worn_minutes, f"{name}: steps in minutes without heart rows"
        if hr_seconds and rows:
            times = [seconds(r["time"]) for r in rows]
            gaps = {b - a for a, b in zip(times, times[1:], strict=False) if (b // 60) - (a // 60) <= 1}
            assert min(gaps) >= 1 and max(gaps) <= 15
            assert 5_000 <= len(rows) <= 25_000, len(rows)
        elif rows:
            assert all(r["time"].endswith(":00") for r in rows)
        if rows:
            assert 25 <= value["restingHeartRate"] <= 150
        else:
            not_worn_days += 1
            assert "restingHeartRate" not in value
            assert all(z["minutes"] == 0 and z["caloriesOut"] == 0 for z in zones)
            for other in ("steps", "distance", "floors", "elevation"):
                other_rows = dataset(orjson.loads(docs[(pid, date, other)][1]), other)
                assert len(other_rows) == 1440 and all(r["value"] == 0 for r in other_rows)
    # Seed 42: participant 0 leaves the tracker off on day 2 (the data do not depend on the layout).
    assert not_worn_days >= 1


def test_wear_gaps_occur(tmp_path):
    truth = generate(tmp_path, participants=4, days=3)
    heart = [d for d in truth.days if d.activity == "heart"]
    partial = [d for d in heart if 0 < d.intraday_rows < 1440]
    assert partial, "expected some days with off-wrist hours"
    assert all(d.resting_heart_rate is not None for d in heart if d.intraday_rows)


@pytest.mark.parametrize(("layout", "hr_seconds"), CASES)
def test_truth_matches_files(generated, layout, hr_seconds):
    _out, truth, docs = generated(layout, hr_seconds)
    assert len(truth.days) == len(docs)
    assert {(d.participant_id, d.date, d.activity) for d in truth.days} == set(docs)
    for d in truth.days:
        doc = orjson.loads(docs[(d.participant_id, d.date, d.activity)][1])
        rows = dataset(doc, d.activity)
        assert d.intraday_rows == len(rows)
        assert d.intraday_value_sum == pytest.approx(math.fsum(r["value"] for r in rows), rel=1e-12, abs=1e-9)
        value = summary(doc, d.activity)["value"]
        if d.activity == "heart":
            assert d.daily_value is None
            assert d.resting_heart_rate == value.get("restingHeartRate")
            assert d.intraday_value_sum == sum(r["value"] for r in rows)
        else:
            assert d.daily_value == value
            assert d.resting_heart_rate is None
    for activity in ACTIVITIES:
        rows = [r for k, (_n, raw) in docs.items() if k[2] == activity for r in dataset(orjson.loads(raw), activity)]
        assert truth.total_rows(activity) == len(rows)
        assert truth.value_sum(activity) == pytest.approx(math.fsum(r["value"] for r in rows), rel=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_deterministic(tmp_path, layout):
    def snapshot(out: pathlib.Path, seed: int) -> dict[str, bytes]:
        truth = generate(out, participants=2, days=2, layout=layout, seed=seed, hr_seconds=True)
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in truth.files}

    a = snapshot(tmp_path / "a", 7)
    b = snapshot(tmp_path / "b", 7)
    c = snapshot(tmp_path / "c", 8)
    assert a == b
    assert a != c


def test_deterministic_across_worker_counts(tmp_path, monkeypatch):
    pooled = generate(tmp_path / "pool", participants=8, days=1, seed=3)
    monkeypatch.setattr(sample_data, "_POOL_MIN_PARTICIPANTS", 10**9)
    serial = generate(tmp_path / "serial", participants=8, days=1, seed=3)
    assert pooled.days == serial.days
    for p, q in zip(pooled.files, serial.files, strict=True):
        assert p.relative_to(tmp_path / "pool") == q.relative_to(tmp_path / "serial")
        assert p.read_bytes() == q.read_bytes()


def test_minute_data_independent_of_hr_detail(generated):
    _o1, minute_truth, _d1 = generated("by-participant-and-date", False)
    _o2, second_truth, _d2 = generated("by-participant-and-date", True)
    assert [d for d in minute_truth.days if d.activity != "heart"] == [
        d for d in second_truth.days if d.activity != "heart"
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_participant_ids_override(tmp_path, layout):
    ids = ["odd id 1", "Ünï-çødé.ß", "x_y-Z"]
    truth = generate(tmp_path, days=1, layout=layout, participant_ids=ids)
    docs = read_docs(tmp_path, truth, layout)
    assert {k[0] for k in docs} == set(ids)
    assert {d.participant_id for d in truth.days} == set(ids)
    assert len(truth.days) == len(ids) * len(ACTIVITIES)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path, layout="nope")
    with pytest.raises(ValueError):
        generate(tmp_path, participant_ids=["a", "a"])
    with pytest.raises(ValueError):
        generate(tmp_path, participant_ids=["a/b"])


def test_creates_out_dir(tmp_path):
    out = tmp_path / "deep" / "er"
    truth = generate(out, participants=1, days=1)
    assert out.is_dir() and all(p.exists() for p in truth.files)
    assert not list(out.rglob("*.tmp"))
