"""Every reference fixture parses to exactly the independently computed facts in expected.json."""

from __future__ import annotations

import datetime as dt
import zipfile

import numpy as np
import pytest

from fitbit_pipeline import activities
from fitbit_pipeline.layouts import match
from fitbit_pipeline.parse import FileContext, parse_document

from .conftest import FIXTURES

RUN_DATE = dt.date(2026, 1, 1)


def _keys() -> list[str]:
    import json

    return sorted(json.loads((FIXTURES / "expected.json").read_text()))  # missing: a collection error


def _read(key: str) -> tuple[bytes, str]:
    if "!" in key:
        archive, member = key.split("!", 1)
        with zipfile.ZipFile(FIXTURES / archive) as zf:
            return zf.read(member), member
    return (FIXTURES / key).read_bytes(), key


def _hhmmss(ts_us: int) -> str:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(ts_us))).strftime("%H:%M:%S")


@pytest.mark.parametrize("key", _keys())
def test_fixture_matches_expected(key: str, expected: dict[str, dict]) -> None:
    e = expected[key]
    raw, logical = _read(key)
    path_date = None
    participant = "P"
    if key.startswith("layouts/"):
        info = match(logical)
        assert info.activity == e["activity"]
        assert info.date.isoformat() == e["date"]
        path_date, participant = info.date, info.participant_id
    a = activities.get(e["activity"])
    p = parse_document(raw, FileContext(key, participant, a, path_date, RUN_DATE))

    assert p.date.isoformat() == e["date"]
    assert p.dataset_type == e["dataset_type"]
    assert p.dataset_interval == e["dataset_interval"]
    assert p.rejects == [] and p.rows_duplicate == 0
    assert len(p.ts) == e["intraday_rows"]
    assert p.rows_read == p.rows_valid
    values = p.measures["value"]
    assert float(values.sum()) == pytest.approx(e["intraday_value_sum"], rel=1e-12, abs=1e-9)
    for which, idx in (("first", 0), ("last", -1)):
        if e[which] is None:
            assert len(p.ts) == 0
            continue
        assert _hhmmss(p.ts[idx]) == e[which]["time"]
        for m in a.measures:
            assert p.measures[m.name][idx] == pytest.approx(e[which][m.name])
    assert (np.diff(p.ts) > 0).all(), "timestamps strictly increasing"
    if a.daily == "heart":
        assert p.daily == {"resting_heart_rate": e["resting_heart_rate"]}
        got = [
            {
                "name": z["zone_name"],
                "min": z["min_bpm"],
                "max": z["max_bpm"],
                "minutes": z["minutes"],
                "caloriesOut": z["calories_out"],
            }
            for z in p.zones
            if z["zone_type"] == "standard"
        ]
        assert got == e["zones"]
    else:
        assert p.daily is not None
        assert p.daily["value"] == pytest.approx(float(e["daily_value"]))
    if "intraday_level_counts" in e:
        counts = {str(k): int((p.measures["level"] == k).sum()) for k in range(4)}
        assert counts == e["intraday_level_counts"]
        assert int(p.measures["mets"].sum()) == e["intraday_mets_sum"]


def test_every_fixture_document_is_covered(fixtures_dir, expected) -> None:
    """expected.json names every Web API document of the fixtures (so the parametrisation is complete); the
    Google Health fixtures have their own facts (google-health/expected.json, test_google_health_reader.py), the
    account exports theirs (test_account_export_e2e.py)."""
    own_facts = {"google-health", "account_export"}
    docs = {
        str(p.relative_to(fixtures_dir))
        for p in fixtures_dir.rglob("*.json")
        if p.name != "expected.json" and not own_facts & set(p.relative_to(fixtures_dir).parts)
    }
    for z in fixtures_dir.rglob("*.zip"):
        with zipfile.ZipFile(z) as zf:
            docs |= {f"{z.relative_to(fixtures_dir)}!{n}" for n in zf.namelist() if not n.endswith("/")}
    assert docs == set(expected)
