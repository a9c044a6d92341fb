"""Google Health API v4 documents read into the activity tables: a real run into a real lake and DuckDB
warehouse, checked against facts worked out by hand (tests/fixtures/google-health/expected.json)."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import shutil
import zipfile
from typing import Any

import pytest

from fitbit_pipeline.google_health.bundles import bundle
from fitbit_pipeline.layouts import LayoutError, match
from fitbit_pipeline.sources import list_documents

from .conftest import FIXTURES
from .hardening_support import Site, heart_doc, write

GH = FIXTURES / "google-health"
FACTS: dict[str, Any] = json.loads((GH / "expected.json").read_text())
RUN_DATE = dt.date.fromisoformat(FACTS["run_date"])
INTRADAY = ("heart", "steps", "distance", "elevation", "calories", "floors")


def _site(tmp_path: pathlib.Path) -> Site:
    site = Site(tmp_path)
    shutil.copytree(GH / "google-health", site.source / "google-health")
    return site


def _intraday(site: Site, activity: str) -> list[list[Any]]:
    rows = site.sql(
        f"SELECT participant_id, strftime(ts, '%Y-%m-%dT%H:%M:%S'), strftime(ts_utc, '%Y-%m-%dT%H:%M:%S'), value "
        f"FROM rural.intraday_{activity} ORDER BY participant_id, ts_utc"
    )
    return [[p, ts, utc, round(v, 9)] for p, ts, utc, v in rows]


def test_fixture_documents_load_as_worked_out_by_hand(tmp_path: pathlib.Path) -> None:
    site = _site(tmp_path)
    summary = site.run(run_date=RUN_DATE)
    assert summary.status == "succeeded"
    for activity in INTRADAY:
        assert _intraday(site, activity) == FACTS[f"intraday_{activity}"], activity
    assert site.sql("SELECT COUNT(*) FROM rural.intraday_calories WHERE level IS NOT NULL OR mets IS NOT NULL") == [
        (0,)
    ]
    assert site.sql("SELECT COUNT(*) FROM rural.intraday_heart WHERE tz_flag IS NOT NULL") == [(0,)]
    daily = site.sql("SELECT participant_id, strftime(date, '%Y-%m-%d'), resting_heart_rate FROM rural.daily_heart")
    assert [list(r) for r in daily] == FACTS["daily_heart"]
    totals = [
        [a, *site.sql(f"SELECT participant_id, strftime(date, '%Y-%m-%d'), value FROM rural.daily_{a}")[0]]
        for a, *_ in FACTS["daily_totals"]
    ]
    assert totals == FACTS["daily_totals"]
    assert site.sql("SELECT COUNT(*) FROM rural.daily_distance") == [(0,)]  # no roll-up: no daily total
    findings = site.sql(
        "SELECT activity, participant_id, strftime(date, '%Y-%m-%d'), rule_id FROM rural.data_quality_findings "
        "WHERE participant_id = 'p01' ORDER BY 1 NULLS LAST, 2, 3"
    )
    assert [list(f) for f in findings] == FACTS["findings"]
    zones = site.sql(
        "SELECT participant_id, strftime(date, '%Y-%m-%d'), zone_name, min_bpm, max_bpm FROM rural.heart_rate_zones "
        "WHERE minutes IS NULL AND calories_out IS NULL ORDER BY zone_name"
    )
    assert [list(r) for r in zones] == FACTS["heart_rate_zones"]
    for suffix, (status, read, loaded, rejected, duplicate) in FACTS["files"].items():
        row = site.file("google-health/" + suffix)
        got = (row["status"], row["rows_read"], row["rows_loaded"], row["rows_rejected"], row["rows_duplicate"])
        assert got == (status, read, loaded, rejected, duplicate), suffix
    sources = site.sql(
        "SELECT activity || ' ' || strftime(date, '%Y-%m-%d'), data_sources FROM rural.pipeline_deliveries "
        "WHERE participant_id = 'p01' AND activity IN ('heart', 'steps', 'calories') AND date IN (?, ?)",
        ["2026-11-01", "2026-11-02"],
    )
    expected_sources = {"heart 2026-11-02": "FITBIT/FITNESS_BAND/Charge 6: 2", **FACTS["data_sources"]}
    assert dict(sources) == expected_sources
    rules = dict(site.sql("SELECT rule_id, COUNT(*) FROM rural.rejected_records GROUP BY rule_id"))
    assert rules == FACTS["rules"]
    broken = site.file("google-health/p02/{daily-resting-heart-rate,heart-rate}/2026-11-02.json")
    assert broken["rule_id"] == "invalid_json" and "daily-resting-heart-rate/2026-11-02.json" in broken["reason"]
    site.identity_holds()
    assert site.run(run_date=RUN_DATE).status == "nothing-new"


def test_a_part_arriving_later_redelivers_the_whole_participant_day(tmp_path: pathlib.Path) -> None:
    site = _site(tmp_path)
    resting = site.source / "google-health/p01/daily-resting-heart-rate/2026-11-01.json"
    held_back = resting.read_bytes()
    resting.unlink()
    assert site.run(run_date=RUN_DATE).status == "succeeded"
    assert site.sql("SELECT COUNT(*) FROM rural.daily_heart") == [(0,)]
    first = site.file("google-health/p01/{daily-heart-rate-zones,heart-rate}/2026-11-01.json")
    assert first["status"] == "loaded"

    resting.write_bytes(held_back)
    summary = site.run(run_date=RUN_DATE)
    assert summary.status == "succeeded" and summary.totals["files_new"] == 1
    assert site.file("google-health/p01/{daily-heart-rate-zones,heart-rate}/2026-11-01.json")["status"] == "replaced"
    assert _intraday(site, "heart") == FACTS["intraday_heart"]  # the samples are read again with the new part
    assert site.sql("SELECT resting_heart_rate FROM rural.daily_heart") == [(58,)]
    site.identity_holds()


def test_google_health_wins_a_participant_day_over_the_web_api_archive(tmp_path: pathlib.Path) -> None:
    site = _site(tmp_path)
    web = write(site, "archive/p01/2026-11-02/heart.json", heart_doc("2026-11-02", [80, 81, 82]))
    future = dt.datetime(2030, 1, 1).timestamp()  # the archive copy touched last: time does not decide
    os.utime(web, (future, future))
    assert site.run(run_date=RUN_DATE).status == "succeeded"
    assert site.file("archive/p01/2026-11-02/heart.json")["status"] == "superseded"
    assert _intraday(site, "heart") == FACTS["intraday_heart"]
    # Web API days next to Google Health days: one series, no overlap.
    write(site, "archive/p01/2026-10-31/heart.json", heart_doc("2026-10-31", [75, 76]))
    assert site.run(run_date=RUN_DATE).status == "succeeded"
    days = site.sql("SELECT strftime(date, '%Y-%m-%d'), COUNT(*) FROM rural.intraday_heart GROUP BY 1 ORDER BY 1")
    assert days == [("2026-10-31", 2), ("2026-11-01", 4), ("2026-11-02", 2)]
    site.identity_holds()


def test_the_same_documents_inside_a_zip_archive_load_the_same_rows(tmp_path: pathlib.Path) -> None:
    loose = _site(tmp_path / "loose")
    assert loose.run(run_date=RUN_DATE).status == "succeeded"
    zipped = Site(tmp_path / "zipped")
    with zipfile.ZipFile(zipped.source / "study-export.zip", "w") as zf:
        for path in sorted((GH / "google-health").rglob("*.json")):
            zf.write(path, "google-health/" + path.relative_to(GH / "google-health").as_posix())
    assert zipped.run(run_date=RUN_DATE).status == "succeeded"
    for activity in INTRADAY:
        assert _intraday(zipped, activity) == _intraday(loose, activity)
    name = "!google-health/p01/{active-energy-burned,basal-energy-burned,total-calories-daily-roll-up}/2026-11-02.json"
    bundle_row = zipped.file(name)
    assert (bundle_row["status"], bundle_row["rows_loaded"]) == ("loaded", 3)
    zipped.identity_holds()


def test_listing_groups_the_documents_of_a_participant_day_activity(tmp_path: pathlib.Path) -> None:
    site = _site(tmp_path)
    docs = {d.logical_path: d for d in list_documents(str(site.source)).docs}
    heart = docs["google-health/p01/{daily-heart-rate-zones,daily-resting-heart-rate,heart-rate}/2026-11-01.json"]
    assert [p.logical_path.split("/")[2] for p in heart.parts] == [
        "daily-heart-rate-zones",
        "daily-resting-heart-rate",
        "heart-rate",
    ]
    assert heart.delivery_rank.startswith("9999-12-31|")
    assert docs["google-health/p01/distance/2026-11-02.json"].parts == ()
    assert len(docs) == 8
    # A changed part changes the delivery's fingerprint; bundling is stable.
    before = heart.fingerprint
    (site.source / "google-health/p01/daily-heart-rate-zones/2026-11-01.json").write_text('{"dataPoints": []}')
    again = {d.logical_path: d for d in bundle(list_documents(str(site.source)).docs)}
    assert again[heart.logical_path].fingerprint != before


@pytest.mark.parametrize(
    "path",
    [
        "google-health/p01/sleep/2026-11-01.json",
        "google-health/p01/{heart-rate,steps}/2026-11-01.json",
        "google-health/p01/steps/2026-13-01.json",
    ],
)
def test_paths_outside_the_layout_are_named_errors(path: str) -> None:
    with pytest.raises(LayoutError):
        match(path)


def test_an_iceberg_table_of_the_previous_version_takes_calories_without_level_and_mets(tmp_path: pathlib.Path) -> None:
    """A lake table made when ``level``/``mets`` were required is made optional on the first run of this version
    (a safe Iceberg schema change), and Google Health calories (no level, no METs) land in it."""
    import pyarrow as pa

    from fitbit_pipeline import schema
    from fitbit_pipeline.lake import catalog as lake_catalog

    site = _site(tmp_path)
    t = schema.INTRADAY["calories"]
    old = pa.schema([pa.field(f.name, f.type, False) if f.name in ("level", "mets") else f for f in t.schema])
    cat = lake_catalog.open_catalog(str(site.lake))
    cat.create_namespace_if_not_exists("rural")
    cat.create_table(("rural", t.name), schema=old, location=lake_catalog.table_location(str(site.lake), t.name))
    assert cat.load_table(("rural", t.name)).schema().find_field("level").required
    assert site.run(run_date=RUN_DATE).status == "succeeded"
    assert not cat.load_table(("rural", t.name)).schema().find_field("level").required
    assert _intraday(site, "calories") == FACTS["intraday_calories"]


def test_a_postgres_table_of_the_previous_version_takes_calories_without_level_and_mets(
    tmp_path: pathlib.Path, postgres_db
) -> None:
    import psycopg

    from fitbit_pipeline import pipeline

    from .hardening_support import OPEN_GATE, steps_doc

    site = Site(tmp_path)
    url = postgres_db()
    write(site, "archive/p01/2026-10-30/steps.json", steps_doc("2026-10-30", [1, 2]))

    def run() -> str:
        return pipeline.run(str(site.source), str(site.lake), url, workers=1, run_date=RUN_DATE, gate=OPEN_GATE).status

    assert run() == "succeeded"
    with psycopg.connect(url, autocommit=True) as con:  # as the previous version created it
        con.execute(
            "ALTER TABLE rural.intraday_calories ALTER COLUMN level SET NOT NULL, ALTER COLUMN mets SET NOT NULL"
        )
    shutil.copytree(GH / "google-health", site.source / "google-health")
    assert run() == "succeeded"
    with psycopg.connect(url) as con:
        rows = con.execute("SELECT COUNT(*), COUNT(level), COUNT(mets), SUM(value) FROM rural.intraday_calories")
        assert rows.fetchall() == [(2, 0, 0, pytest.approx(3.7))]


def _ctx(activity: str, day: str = "2026-11-02") -> Any:
    from fitbit_pipeline import activities
    from fitbit_pipeline.parse import FileContext

    return FileContext("f", "p01", activities.get(activity), dt.date.fromisoformat(day), RUN_DATE)


def _doc(path: str) -> bytes:
    return (GH / "google-health" / path).read_bytes()


def test_each_google_health_row_rule_names_its_point() -> None:
    from fitbit_pipeline.google_health.reader import parse_delivery

    heart = parse_delivery([("heart-rate", _doc("p01/heart-rate/2026-11-01.json"))], _ctx("heart", "2026-11-01"))
    by_rule = {r["rule_id"]: r for r in heart.rejects}
    assert sorted(by_rule) == [
        "duplicate_source",
        "point_outside_day",
        "time_invalid",
        "value_out_of_range",
        "value_wrong_type",
    ]
    assert [by_rule[r]["row_index"] for r in ("duplicate_source", "value_out_of_range", "value_wrong_type")] == [
        4,
        5,
        6,
    ]
    assert '"formFactor":"PHONE"' in by_rule["duplicate_source"]["raw_value"]
    assert heart.rows_read == 9 and heart.rows_duplicate == 1 and heart.rows_rejected == 4 and len(heart.ts) == 4
    steps = parse_delivery([("steps", _doc("p01/steps/2026-11-02.json"))], _ctx("steps"))
    assert [r["rule_id"] for r in steps.rejects].count("interval_not_minute") == 2
    assert steps.daily is None and steps.findings == []
    calories = parse_delivery(
        [
            ("active-energy-burned", _doc("p01/active-energy-burned/2026-11-02.json")),
            ("basal-energy-burned", _doc("p01/basal-energy-burned/2026-11-02.json")),
        ],
        _ctx("calories"),
    )
    assert [r["rule_id"] for r in calories.rejects] == ["energy_part_missing"]
    assert calories.measures["value"].tolist() == pytest.approx([2.6, 1.1])


def test_several_resting_heart_rates_for_a_day_keep_none() -> None:
    from fitbit_pipeline.google_health.reader import parse_delivery

    one = json.loads(_doc("p01/daily-resting-heart-rate/2026-11-01.json"))
    two = {"dataPoints": one["dataPoints"] * 2}
    p = parse_delivery([("daily-resting-heart-rate", json.dumps(two).encode())], _ctx("heart", "2026-11-01"))
    assert p.daily is None
    assert [r["rule_id"] for r in p.rejects] == ["daily_record_repeated", "daily_record_repeated"]
    assert p.rows_read == 2 and p.rows_valid == 0


@pytest.mark.parametrize(
    ("text", "rule_id"),
    [
        (b'{"dataPoints": [], "nextPageToken": "abc"}', "wrong_structure"),
        (b'{"rollupDataPoints": []}', "wrong_structure"),
        (b'{"dataPoints": [], "dataPoints": []}', "duplicate_key"),
        (b'{"dataPoints": [{"dataSource": {"platform": "FITBIT", "platform": "FIT"}}]}', "duplicate_key"),
        (b'{"kind": "x", "dataPoints": []}', "wrong_structure"),
        (b"[1, 2", "invalid_json"),
    ],
)
def test_documents_that_are_not_a_whole_list_response_are_rejected(text: bytes, rule_id: str) -> None:
    from fitbit_pipeline.google_health.reader import parse_delivery
    from fitbit_pipeline.parse import FileRejected

    with pytest.raises(FileRejected) as exc:
        parse_delivery([("steps", text)], _ctx("steps"))
    assert exc.value.rule_id == rule_id and "steps/2026-11-02.json" in exc.value.detail


def test_a_saved_plan_keeps_the_parts_of_each_delivery(tmp_path: pathlib.Path) -> None:
    """The Airflow and Glue tasks load the run's plan from ``_plan.json``: deliveries keep their parts."""
    from fitbit_pipeline.pipeline import Plan

    site = _site(tmp_path)
    docs = list_documents(str(site.source)).docs
    plan = Plan("r1", dt.datetime(2026, 12, 1, 3, 0), RUN_DATE, str(site.source), str(site.lake), groups={"x": docs})
    plan.save()
    loaded = Plan.load(str(site.lake), "r1")
    assert loaded.groups["x"] == docs
    assert sum(len(d.parts) for d in loaded.groups["x"]) == 10  # p01 heart 3, calories 3, steps 2; p02 heart 2


def test_postgres_holds_what_duckdb_holds(tmp_path: pathlib.Path, postgres_db) -> None:
    import psycopg

    from fitbit_pipeline import pipeline

    from .hardening_support import OPEN_GATE

    site = _site(tmp_path / "duckdb")
    assert site.run(run_date=RUN_DATE).status == "succeeded"
    pg = _site(tmp_path / "postgres")
    url = postgres_db()
    run = pipeline.run(str(pg.source), str(pg.lake), url, workers=1, run_date=RUN_DATE, gate=OPEN_GATE)
    assert run.status == "succeeded"
    query = (
        "SELECT participant_id, CAST(ts AS text), CAST(ts_utc AS text), value{extras}, data_sources "
        "FROM rural.intraday_{a} i JOIN rural.pipeline_deliveries d USING (participant_id, date) "
        "WHERE d.activity = '{a}' ORDER BY participant_id, ts_utc"
    )
    with psycopg.connect(url) as con:
        for a in INTRADAY:
            sql = query.format(a=a, extras=", level, mets" if a == "calories" else "")
            assert [tuple(r) for r in con.execute(sql).fetchall()] == [tuple(r) for r in site.sql(sql)], a
        ledger = "SELECT source_file, status, rows_read, rows_loaded FROM rural.pipeline_files ORDER BY 1"
        strip = lambda rows: [(r[0].split("/source/")[1], *r[1:]) for r in rows]  # noqa: E731
        assert strip(con.execute(ledger).fetchall()) == strip(site.sql(ledger))


def _series(s: Any) -> dict[str, Any]:
    """A series as comparable facts (source labels decoded; the columnar way encodes them differently)."""
    return {
        "ts": s.ts.tolist(),
        "utc": s.utc.tolist(),
        "value": s.value.tolist(),
        "rank": s.rank.tolist(),
        "source": [s.labels[c] for c in s.source],
        "index": s.index.tolist(),
        "rejected": [(r.rule_id, r.index, r.ts) for r in s.rejected],
        "read": s.read,
    }


def _variants() -> list[tuple[str, str, bytes]]:
    """Every fixture list document, and regular documents with one point broken in each way a rule names."""
    out = []
    for path in sorted((GH / "google-health").rglob("*.json")):
        folder, day = path.parent.name, path.stem
        if folder in ("heart-rate", "steps", "distance", "altitude", "active-energy-burned", "basal-energy-burned"):
            out.append((folder, day, path.read_bytes()))
    steps = json.loads(_doc("p01/steps/2026-11-02.json"))
    point = steps["dataPoints"][0]
    edits = {
        "no value object": lambda p: p.pop("steps"),
        "no interval": lambda p: p["steps"].pop("interval"),
        "no civil start": lambda p: p["steps"]["interval"].pop("civilStartTime"),
        "month 13": lambda p: p["steps"]["interval"]["civilStartTime"]["date"].update(month=13),
        "30 February": lambda p: p["steps"]["interval"]["civilStartTime"]["date"].update(month=2, day=30),
        "no start": lambda p: p["steps"]["interval"].pop("startTime"),
        "start at hour 24": lambda p: p["steps"]["interval"].update(startTime="2026-11-02T24:00:00Z"),
        "end on 30 February": lambda p: p["steps"]["interval"].update(endTime="2026-02-30T06:01:00Z"),
        "no end": lambda p: p["steps"]["interval"].pop("endTime"),
        "no offset": lambda p: p["steps"]["interval"].pop("startUtcOffset"),
        "wrong offset": lambda p: p["steps"]["interval"].update(startUtcOffset="-18000s"),
        "omitted count (proto3: 0)": lambda p: p["steps"].pop("count"),
        "count too large": lambda p: p["steps"].update(count="2000000"),
        "count above the plausible range": lambda p: p["steps"].update(count="301"),
        "no data source": lambda p: p.pop("dataSource"),
        "empty device name": lambda p: p["dataSource"]["device"].update(displayName=""),
        "phone listed first": lambda p: p["dataSource"]["device"].update(formFactor="PHONE", displayName="Pixel 8"),
        "midnight, time omitted": lambda p: (
            p["steps"]["interval"]["civilStartTime"].pop("time"),
            p["steps"]["interval"].update(startTime="2026-11-02T06:00:00Z", endTime="2026-11-02T06:01:00Z"),
        ),
    }
    for name, edit in edits.items():
        doc = json.loads(json.dumps(steps))
        broken = json.loads(json.dumps(point))
        edit(broken)
        doc["dataPoints"].insert(1, broken)
        out.append(("steps", name, json.dumps(doc).encode()))
    text = _doc("p01/steps/2026-11-02.json").decode()
    repeated = text.replace('"manufacturer": "Google"', '"manufacturer": "Google", "manufacturer": "Alphabet"', 1)
    out.append(("steps", IRREGULAR[0], repeated.encode()))
    out.append(("steps", IRREGULAR[1], text.replace("{", '{"kind": "x", ', 1).encode()))
    return out


IRREGULAR = ("a repeated key the pipeline does not read", "a top-level member besides dataPoints")


@pytest.mark.parametrize(("folder", "case", "raw"), _variants(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_columnar_way_gives_what_the_general_way_gives(folder: str, case: str, raw: bytes) -> None:
    from fitbit_pipeline.google_health.columnar import read_columns
    from fitbit_pipeline.google_health.datatypes import BY_ID
    from fitbit_pipeline.google_health.points import read_points
    from fitbit_pipeline.limits import DEFAULT_LIMITS

    dtype = BY_ID[folder]
    day = dt.date(2026, 11, 2) if not case.startswith("2026-") else dt.date.fromisoformat(case)
    activity = {"heart-rate": "heart", "altitude": "elevation"}.get(folder, folder.split("-")[0])
    activity = "calories" if folder.endswith("energy-burned") else activity
    bounds = DEFAULT_LIMITS.range(f"{activity}.value") if dtype.role == "value" else None
    general = read_points(json.loads(raw)["dataPoints"], dtype, day, bounds)
    columnar = read_columns(raw, dtype, day, bounds)
    if b'"72.5"' in raw or case in IRREGULAR:  # only the general way reads these
        assert columnar is None
        return
    assert columnar is not None, "a regular document must take the columnar way"
    assert _series(columnar) == _series(general)


def test_the_wearable_wins_a_minute_whichever_point_is_listed_first() -> None:
    from fitbit_pipeline.google_health.reader import parse_delivery

    doc = json.loads(_doc("p01/steps/2026-11-02.json"))
    doc["dataPoints"][0], doc["dataPoints"][1] = doc["dataPoints"][1], doc["dataPoints"][0]  # the phone first
    for raw in (json.dumps(doc).encode(), json.dumps(doc, indent=2).replace('"87"', "87").encode()):  # both ways
        p = parse_delivery([("steps", raw)], _ctx("steps"))
        assert p.measures["value"].tolist()[0] == 87
        [dup] = [r for r in p.rejects if r["rule_id"] == "duplicate_source"]
        assert dup["row_index"] == 0 and '"PHONE"' in dup["raw_value"]
        assert p.sources == "FITBIT/FITNESS_BAND/Charge 6: 2"
