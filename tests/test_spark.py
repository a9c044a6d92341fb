"""The Spark engine (local mode) against the local engine, the Glue job script, ``run --engine spark``.

One Spark session for the test run (``local[2]``, no UI). Parity: both engines run the whole
pipeline on the same generated input with injected faults (loose files and a MyDataHelps zip
export) into two lakes and two DuckDB warehouses; the staging Parquet, the quarantine and every
warehouse table must be identical but for the run id (and times of the run).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import os
import pathlib
import subprocess
import sys
import types
import zipfile

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fitbit_pipeline import glue_job, pipeline, schema
from fitbit_pipeline.cli import app
from fitbit_pipeline.lake import quarantine_uri, staging_uri
from fitbit_pipeline.sample_data import generate
from fitbit_pipeline.transform import chunked, iter_parts
from fitbit_pipeline.warehouse import open_warehouse

from .lake_support import lake_files

pytest.importorskip("pyspark")
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

ACTS = ("heart", "calories", "steps", "elevation", "distance", "floors")
RUN_COLUMNS = {"run_id", "processed_at"}  # what legitimately differs between two runs of the same input
RUN_TIMING = {"started_at", "finished_at", "duration_s"}  # pipeline_runs only


@pytest.fixture(scope="session")
def spark():
    """The one Spark session of the test run: local[2], no UI, few shuffle partitions."""
    from fitbit_pipeline.spark_engine import local_session

    session = local_session("local[2]", "fitbit-pipeline-tests")
    yield session
    session.stop()


# ---- input with faults ----------------------------------------------------------------------------


def _edit(path: pathlib.Path, change) -> None:
    doc = orjson.loads(path.read_bytes())
    change(doc)
    path.write_bytes(orjson.dumps(doc))


def _faulty_source(root: pathlib.Path) -> tuple[pathlib.Path, dict[str, object]]:
    """Loose files and a zip export (second-level heart rate), each with faults of every kind."""
    src = root / "source"
    truth = generate(src, participants=3, days=3, seed=21)
    worn = [d for d in truth.days if d.activity == "heart" and d.intraday_rows > 100]
    h0, h1, h2 = worn[:3]

    def day(d, activity: str) -> pathlib.Path:
        return src / d.participant_id / d.date.isoformat() / f"{activity}.json"

    corrupt = day(h0, "calories")
    corrupt.write_bytes(corrupt.read_bytes()[:-40])  # invalid JSON

    def impossible(doc):
        for row in doc["activities-heart-intraday"]["dataset"][10:13]:
            row["value"] = 400

    _edit(day(h1, "heart"), impossible)

    def duplicates(doc):
        ds = doc["activities-steps-intraday"]["dataset"]
        ds[100:100] = [dict(ds[100], value=0), dict(ds[101], value=0)]

    _edit(day(h1, "steps"), duplicates)

    def wrong_date(doc):
        doc["activities-floors"][0]["dateTime"] = (h2.date - dt.timedelta(days=30)).isoformat()

    _edit(day(h2, "floors"), wrong_date)

    def total_off(doc):
        doc["activities-steps"][0]["value"] = str(int(doc["activities-steps"][0]["value"]) + 7)

    _edit(day(h2, "steps"), total_off)  # a warning, rows kept
    (src / "README.txt").write_text("exported 2024-03")  # unknown layout

    # A MyDataHelps export read in place: a corrupt member and impossible values inside the zip,
    # and a truncated copy of an older export (unreadable archive).
    zipped = generate(root / "zip", participants=2, days=2, layout="mydatahelps", hr_seconds=True, seed=5)
    archive = zipped.files[0]
    members = {}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            members[info] = zf.read(info)
    out = io.BytesIO()
    broken = impossible_member = None
    with zipfile.ZipFile(out, "w") as zf:
        for info, data in members.items():
            if broken is None and "activities_steps_" in info.filename:
                broken, data = info.filename, data[:-25]
            elif impossible_member is None and "activities_heart_" in info.filename:
                doc = orjson.loads(data)
                doc["activities-heart-intraday"]["dataset"][5]["value"] = -3
                impossible_member, data = info.filename, orjson.dumps(doc)
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    (src / archive.name).write_bytes(out.getvalue())
    older = archive.name.replace("_2024", "_2023", 1)
    (src / older).write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    return src, {"archive": str(src / archive.name), "broken_member": broken}


# ---- snapshots ------------------------------------------------------------------------------------


def _canon(table: pa.Table, drop: set[str], subs: dict[str, str]) -> pa.Table:
    """The table without ``drop`` columns, ``subs`` replaced in its strings, sorted by every column."""
    table = table.select([c for c in table.column_names if c not in drop])
    for i, f in enumerate(table.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            col = table.column(i)
            for old, new in subs.items():
                col = pc.replace_substring(col, old, new)
            table = table.set_column(i, f, col)
    return table.sort_by([(c, "ascending") for c in table.column_names]).combine_chunks()


def _same(a: dict[str, pa.Table], b: dict[str, pa.Table]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].num_rows == b[name].num_rows, name
        assert a[name].equals(b[name]), name


def _staging(lake: pathlib.Path, run_id: str) -> tuple[dict[str, list[str]], dict[str, pa.Table]]:
    """Per staged table: its part names, and its rows (run columns dropped, lake and run id normalised)."""
    subs = {str(lake): "<lake>", run_id: "<run>"}
    names, rows = {}, {}
    for t in schema.STAGED_TABLES:
        parts = list(iter_parts(staging_uri(str(lake), run_id), t.name))
        tables = [pq.read_table(p) for p in parts]
        for tab in tables:
            assert tab.schema.remove_metadata().equals(t.schema), t.name
        names[t.name] = [os.path.basename(p) for p in parts]
        rows[t.name] = _canon(pa.concat_tables(tables) if tables else t.schema.empty_table(), RUN_COLUMNS, subs)
    return names, rows


def _quarantine(lake: pathlib.Path, run_id: str) -> dict[str, bytes]:
    folder = pathlib.Path(quarantine_uri(str(lake), run_id))
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))}


def _warehouse(path: pathlib.Path, lake: pathlib.Path, run_id: str) -> dict[str, pa.Table]:
    subs = {str(lake): "<lake>", run_id: "<run>"}
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for t in schema.ALL_TABLES:
            if t is schema.PIPELINE_LAKE_STATE:  # snapshot ids are random per lake
                continue
            drop = RUN_COLUMNS | (RUN_TIMING if t.name == "pipeline_runs" else set())
            out[t.name] = _canon(con.sql(f'SELECT * FROM rural."{t.name}"').to_arrow_table(), drop, subs)
        return out
    finally:
        con.close()


def _production_lake(lake: pathlib.Path) -> dict[str, pa.Table]:
    out = {}
    for t in schema.DATA_TABLES:
        files = lake_files(lake, t.name)
        tables = [pq.read_table(f).select(t.columns).cast(t.schema) for f in files]  # one schema for all days
        out[t.name] = _canon(pa.concat_tables(tables), RUN_COLUMNS, {})
    return out


# ---- tests ----------------------------------------------------------------------------------------


def test_spark_engine_matches_the_local_engine_end_to_end(spark, tmp_path) -> None:
    src, facts = _faulty_source(tmp_path)
    runs = {}
    for engine in ("local", "spark"):
        lake, wh = tmp_path / f"lake-{engine}", tmp_path / f"{engine}.duckdb"
        summary = pipeline.run(str(src), str(lake), str(wh), "rural", workers=2, engine=engine)
        assert summary.status == "succeeded", summary.message
        runs[engine] = (summary, lake, wh)
    (local, lake_l, wh_l), (sparked, lake_s, wh_s) = runs["local"], runs["spark"]

    # The input exercises what it should: every fault kind, and a zip export split over several
    # chunks (its members read in place by different tasks).
    rules = dict(local.rules)
    for rule in ("invalid_json", "value_out_of_range", "duplicate_timestamp", "date_mismatch", "unknown_layout"):
        assert rules.get(rule, 0) >= 1, rule
    assert rules["file_unreadable"] == 1 and rules["invalid_json"] == 2 and rules["value_out_of_range"] == 4
    with open_warehouse(str(tmp_path / "probe.duckdb"), "rural") as wh:  # the plan both runs made
        plan = pipeline.plan_run(str(src), str(tmp_path / "lake-probe"), wh)
    chunks = chunked([d for g in sorted(plan.groups) for d in plan.groups[g]], 2)
    assert sum(any(d.object_path == facts["archive"] for d in c) for c in chunks) >= 2
    assert local.totals["rows_rejected"] > 0 and local.totals["rows_duplicate"] == 2

    # Identical staging: the same part files, schemas and rows (rejects with their rule ids,
    # ledger rows, deliveries, findings) and the same quarantined bytes.
    (parts_l, staged_l), (parts_s, staged_s) = _staging(lake_l, local.run_id), _staging(lake_s, sparked.run_id)
    assert parts_s == parts_l
    _same(staged_s, staged_l)
    assert staged_l["intraday_heart"].num_rows > 50_000 and staged_l["rejected_records"].num_rows >= 10
    assert _quarantine(lake_s, sparked.run_id) == _quarantine(lake_l, local.run_id) != {}

    # Identical production: every warehouse table, the production lake, the run statistics.
    _same(_warehouse(wh_s, lake_s, sparked.run_id), _warehouse(wh_l, lake_l, local.run_id))
    _same(_production_lake(lake_s), _production_lake(lake_l))
    assert sparked.as_dict()["totals"] == local.as_dict()["totals"]
    assert sparked.as_dict()["rules"] == local.as_dict()["rules"]
    assert sparked.rows_by_table == local.rows_by_table
    broken = f"{facts['archive']}!{facts['broken_member']}"
    con = duckdb.connect(str(wh_s), read_only=True)
    try:
        ledger = con.execute("SELECT status, rule_id FROM rural.pipeline_files WHERE source_file = ?", [broken])
        assert ledger.fetchall() == [("rejected", "invalid_json")]
        bad = con.sql(
            "SELECT COUNT(*) FROM rural.pipeline_files "
            "WHERE rows_read <> rows_loaded + rows_rejected + rows_duplicate + rows_superseded"
        ).fetchall()
        assert bad == [(0,)]
    finally:
        con.close()


def test_google_health_deliveries_take_the_same_way_through_spark(spark, tmp_path) -> None:
    """Deliveries of several documents (Google Health) travel to the executors whole: Spark and the local
    engine stage, quarantine and load the same."""
    import shutil

    from .conftest import FIXTURES
    from .hardening_support import OPEN_GATE

    src = tmp_path / "source"
    shutil.copytree(FIXTURES / "google-health" / "google-health", src / "google-health")
    runs = {}
    for engine in ("local", "spark"):
        lake, wh = tmp_path / f"lake-{engine}", tmp_path / f"{engine}.duckdb"
        summary = pipeline.run(str(src), str(lake), str(wh), "rural", workers=2, engine=engine, gate=OPEN_GATE)
        assert summary.status == "succeeded", summary.message
        runs[engine] = (summary, lake, wh)
    (local, lake_l, wh_l), (sparked, lake_s, wh_s) = runs["local"], runs["spark"]
    rules = dict(local.rules)
    assert rules["duplicate_source"] == 2 and rules["invalid_json"] == 2
    _same(_staging(lake_s, sparked.run_id)[1], _staging(lake_l, local.run_id)[1])
    assert _quarantine(lake_s, sparked.run_id) == _quarantine(lake_l, local.run_id) != {}
    _same(_warehouse(wh_s, lake_s, sparked.run_id), _warehouse(wh_l, lake_l, local.run_id))
    assert sparked.as_dict()["totals"] == local.as_dict()["totals"]


def test_one_chunk_per_task_and_progress_is_reported(spark, tmp_path) -> None:
    from fitbit_pipeline import spark_engine

    src = tmp_path / "source"
    generate(src, participants=2, days=2, seed=3)
    with open_warehouse(str(tmp_path / "w.duckdb"), "rural") as wh:
        plan = pipeline.plan_run(str(src), str(tmp_path / "lake"), wh)
    docs = [d for g in plan.groups.values() for d in g]
    done: list[int] = []
    result = spark_engine.transform(docs, plan.context(), workers=4, on_progress=done.append, spark=spark)
    assert result.files == sum(done) == len(docs) == 24
    assert result.statuses == {"staged": 24}
    chunks = chunked(docs, 4)
    assert len(chunks) > 1
    parts = [os.path.basename(p) for p in iter_parts(plan.staging_uri, "pipeline_files")]
    assert parts == [f"part-{i:05d}.parquet" for i in range(len(chunks))]
    # What travels to executors: the function by reference (the package is installed there), the context by value.
    from pyspark import cloudpickle

    shipped = cloudpickle.dumps(functools.partial(spark_engine._run_chunk, plan.context()))
    assert b"fitbit_pipeline.spark_engine" in shipped and b"process_chunk" not in shipped and len(shipped) < 4000
    # parallelize(chunks, len(chunks)) puts exactly one chunk in each partition
    sizes = spark.sparkContext.parallelize(chunks, len(chunks)).glom().map(len).collect()
    assert sizes == [1] * len(chunks)


def _plan(tmp_path: pathlib.Path):
    """A planned run of loose files and a zip export: (intraday rows per activity, lake, plan)."""
    src = tmp_path / "source"
    loose = generate(src, participants=2, days=2, seed=9)
    zipped = generate(src, participants=1, days=2, layout="mydatahelps", seed=6)
    lake = tmp_path / "lake"
    with open_warehouse(str(tmp_path / "w.duckdb"), "rural") as wh:
        plan = pipeline.plan_run(str(src), str(lake), wh)
    return {a: loose.total_rows(a) + zipped.total_rows(a) for a in ACTS}, lake, plan


def _staged_rows(plan, activity: str) -> dict[str, pa.Table]:
    out = {}
    for t in schema.STAGED_TABLES:
        parts = [p for p in iter_parts(plan.staging_uri, t.name) if os.path.basename(p).startswith(f"part-{activity}-")]
        table = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else t.schema.empty_table()
        out[t.name] = _canon(table, {"processed_at"}, {})
    return out


def test_glue_script_runs_locally_and_stages_its_activity(spark, tmp_path) -> None:
    rows, lake, plan = _plan(tmp_path)
    args = ["--activity_type", "steps", "--source_bucket", "", "--source_prefix", "", "--dest_bucket", ""]
    args += ["--dest_prefix", "", "--run_id", plan.run_id, "--lake", str(lake)]
    summary = glue_job.main(args)
    n_steps = len(plan.groups["steps"])
    assert summary["files"] == n_steps and summary["statuses"] == {"staged": n_steps}
    staged = _staged_rows(plan, "steps")
    assert staged["intraday_steps"].num_rows == rows["steps"]  # loose files and the zip export's members
    assert staged["pipeline_files"].num_rows == n_steps and staged["daily_steps"].num_rows == n_steps
    assert not list(iter_parts(plan.staging_uri, "intraday_heart"))  # only its own activity
    # The local engine stages the same group to the same rows (and replaces the parts, as a retry does).
    pipeline.transform_run(plan, ["steps"], engine="local", workers=1)
    _same(_staged_rows(plan, "steps"), staged)
    assert glue_job.main(args)["files"] == n_steps  # a Glue retry: the same parts again
    _same(_staged_rows(plan, "steps"), staged)


def test_glue_script_uses_awsglue_when_importable(spark, tmp_path, monkeypatch) -> None:
    _, lake, plan = _plan(tmp_path)
    calls: list[tuple] = []

    def get_resolved_options(argv, names):
        values = dict(zip(argv[1::2], argv[2::2], strict=False))
        missing = [n for n in names if f"--{n}" not in values]
        if missing:  # as Glue's resolver does
            raise SystemExit(f"missing {missing}")
        return {n: values[f"--{n}"] for n in names}

    class GlueContext:
        def __init__(self, sc) -> None:
            self.spark_session = spark

    class Job:
        def __init__(self, context) -> None:
            calls.append(("job", type(context).__name__))

        def init(self, name, args) -> None:
            calls.append(("init", name, args["run_id"]))

        def commit(self) -> None:
            calls.append(("commit",))

    modules = {
        "awsglue": types.ModuleType("awsglue"),
        "awsglue.utils": types.SimpleNamespace(getResolvedOptions=get_resolved_options),
        "awsglue.context": types.SimpleNamespace(GlueContext=GlueContext),
        "awsglue.job": types.SimpleNamespace(Job=Job),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    argv = ["/tmp/glue_job.py", "--JOB_NAME", "rural_heart_processor", "--activity_type", "heart"]
    argv += ["--run_id", plan.run_id, "--lake", str(lake), "--job-bookmark-option", "job-bookmark-disable"]
    monkeypatch.setattr(sys, "argv", argv)
    summary = glue_job.main()
    assert summary["files"] == len(plan.groups["heart"])
    assert calls == [("job", "GlueContext"), ("init", "rural_heart_processor", plan.run_id), ("commit",)]


def test_glue_script_is_runnable_as_a_file() -> None:
    script = pathlib.Path(glue_job.__file__)
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--activity_type" in out.stdout and "--lake" in out.stdout


def test_cli_run_engine_spark(spark, tmp_path) -> None:
    src = tmp_path / "source"
    truth = generate(src, participants=2, days=2, seed=12)
    wh = tmp_path / "w.duckdb"
    args = ["run", "--source", str(src), "--lake", str(tmp_path / "lake"), "--warehouse", str(wh), "--json"]
    result = CliRunner().invoke(app, [*args, "--engine", "spark"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert data["status"] == "succeeded" and data["totals"]["files_loaded"] == 24
    con = duckdb.connect(str(wh), read_only=True)
    try:
        for a in ACTS:
            assert con.sql(f"SELECT COUNT(*) FROM rural.intraday_{a}").fetchall() == [(truth.total_rows(a),)]
    finally:
        con.close()
    bad = CliRunner().invoke(app, [*args, "--engine", "flink"])
    assert bad.exit_code == 2 and "unknown engine" in bad.output
