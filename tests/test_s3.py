"""S3 in and out against a real HTTP S3 endpoint (moto server), with faults injected by a proxy."""

from __future__ import annotations

import io
import pickle
import uuid
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from fitbit_pipeline import pipeline
from fitbit_pipeline.lake import Lake
from fitbit_pipeline.sample_data import generate

from .s3_support import FaultProxy, use_s3_endpoint

boto3 = pytest.importorskip("boto3")
s3fs = pytest.importorskip("s3fs")

MDH = ("RK.5B1C2F9A.RURAL Study_20240304-20240306.zip", "RK.5B1C2F9A.RURAL Study_20240306-20240308.zip")


@pytest.fixture
def s3(moto_port, monkeypatch, tmp_path):
    """Fresh buckets on the endpoint; the pipeline reaches it through the standard AWS settings."""
    use_s3_endpoint(monkeypatch, moto_port, tmp_path)
    suffix = uuid.uuid4().hex[:8]
    raw, lake = f"raw-{suffix}", f"lake-{suffix}"
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", region_name="us-east-1")
    client.create_bucket(Bucket=raw)
    client.create_bucket(Bucket=lake)

    class S3:
        source = f"s3://{raw}/exports"
        lake_uri = f"s3://{lake}/fitbit"
        warehouse = str(tmp_path / "wh.duckdb")

        def put(self, key: str, data: bytes) -> None:
            client.put_object(Bucket=raw, Key=f"exports/{key}", Body=data)

        def put_tree(self, root: Path) -> int:
            n = 0
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    self.put(str(f.relative_to(root)), f.read_bytes())
                    n += 1
            return n

        def lake_keys(self, prefix: str) -> list[str]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=lake, Prefix=f"fitbit/{prefix}")
            return [o["Key"] for p in pages for o in p.get("Contents", [])]

        def run(self, **kw) -> pipeline.RunSummary:
            kw.setdefault("workers", 1)
            return pipeline.run(self.source, self.lake_uri, self.warehouse, "rural", **kw)

        def sql(self, q: str, params: list | None = None) -> list[tuple]:
            import duckdb

            con = duckdb.connect(self.warehouse, read_only=True)
            try:
                return con.execute(q, params or []).fetchall()
            finally:
                con.close()

    return S3()


def test_s3_to_s3_lake_to_duckdb_end_to_end(s3, tmp_path, fixtures_dir, expected) -> None:
    truth = generate(tmp_path / "gen", participants=2, days=2, seed=31)
    s3.put_tree(tmp_path / "gen")
    for name in MDH:
        s3.put(f"mydatahelps/{name}", (fixtures_dir / "layouts" / "mydatahelps" / name).read_bytes())
    first = s3.run(workers=2)
    assert first.status == "succeeded", first.message
    assert first.totals["files_found"] == 24 + 72 and first.totals["files_rejected"] == 0
    assert first.objects == 24 + 2 and first.bytes_read > 0
    winners = [
        v
        for k, v in expected.items()
        if "mydatahelps" in k and v["activity"] == "steps" and not (MDH[0] in k and v["date"] == "2024-03-06")
    ]
    want = truth.total_rows("steps") + sum(v["intraday_rows"] for v in winners)
    assert s3.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(want,)]
    # the overlapping day comes from the newer export, complete, once
    assert s3.sql(
        "SELECT COUNT(*), COUNT(DISTINCT ts) FROM rural.intraday_steps "
        "WHERE participant_id = 'MDH-4950-2492' AND date = DATE '2024-03-06'"
    ) == [(1440, 1440)]
    # the lake is in the destination bucket: staging of the run and production partitions
    assert s3.lake_keys(f"staging/run_id={first.run_id}/intraday_heart/")
    prod = Lake(s3.lake_uri, "rural").files()["intraday_steps"]  # the Iceberg table's current data files
    assert prod and all(k.startswith(f"{s3.lake_uri}/production/intraday_steps/data/date=") for k in prod)
    assert s3.lake_keys("production/intraday_steps/metadata/")
    fs = s3fs.S3FileSystem()
    lake_rows = sum(pq.ParquetFile(fs.open(k)).metadata.num_rows for k in prod)
    assert lake_rows == s3.sql("SELECT COUNT(*) FROM rural.intraday_steps")[0][0]
    assert not s3.lake_keys("production/_tmp")  # nothing half-written left behind
    assert s3.run().status == "nothing-new"


def test_changed_etag_is_reprocessed_and_unchanged_is_not(s3, tmp_path) -> None:
    truth = generate(tmp_path / "gen", participants=1, days=2, seed=5)
    s3.put_tree(tmp_path / "gen")
    s3.run()
    pid = truth.days[0].participant_id
    day = min(d.date for d in truth.days).isoformat()
    path = tmp_path / "gen" / pid / day / "steps.json"
    s3.put(f"{pid}/{day}/steps.json", path.read_bytes().replace(b'"value":0', b'"value":1', 3))
    again = s3.run()
    assert again.totals["files_changed"] == 1 and again.totals["files_unchanged"] == 11
    assert s3.sql("SELECT COUNT(*) FROM rural.pipeline_files WHERE run_id = ?", [again.run_id]) == [(1,)]
    assert (
        s3.sql("SELECT SUM(value) FROM rural.intraday_steps WHERE date = ?", [min(d.date for d in truth.days)])[0][0]
        == int(next(d.daily_value for d in truth.days if d.activity == "steps" and d.date.isoformat() == day)) + 3
    )


def test_maintenance_compacts_an_s3_lake_and_keeps_recent_unreferenced_objects(s3, tmp_path) -> None:
    """Two runs leave the changed day of steps in two files; maintenance on the object store merges them (the
    warehouse's rows and ``verify`` unchanged) and deletes no object younger than a day: no lock keeps a run
    out of an S3 lake, and a running one's new objects are not referenced yet."""
    from fitbit_pipeline import verify
    from fitbit_pipeline.lake.maintain import Retention
    from fitbit_pipeline.maintenance import maintain
    from fitbit_pipeline.warehouse import open_warehouse

    truth = generate(tmp_path / "gen", participants=2, days=2, seed=7)
    s3.put_tree(tmp_path / "gen")
    s3.run()
    pid, day = truth.days[0].participant_id, min(d.date for d in truth.days)
    changed = (tmp_path / "gen" / pid / day.isoformat() / "steps.json").read_bytes()
    s3.put(f"{pid}/{day.isoformat()}/steps.json", changed.replace(b'"value":0', b'"value":1', 3))
    assert s3.run().status == "succeeded"
    before = s3.sql("SELECT * FROM rural.intraday_steps ORDER BY ALL")
    steps = f"production/intraday_steps/data/date={day.isoformat()}/"
    assert len([f for f in Lake(s3.lake_uri, "rural").files()["intraday_steps"] if steps in f]) == 2
    stored = set(s3.lake_keys("production/"))

    report = maintain(s3.lake_uri, s3.warehouse, retention=Retention(snapshot_days=0))
    assert report.compacted["intraday_steps"] >= 2 and report.orphans_removed == 0
    assert len([f for f in Lake(s3.lake_uri, "rural").files()["intraday_steps"] if steps in f]) == 1
    assert stored <= set(s3.lake_keys("production/"))  # nothing deleted yet: every object is younger than a day
    assert s3.sql("SELECT * FROM rural.intraday_steps ORDER BY ALL") == before
    with open_warehouse(s3.warehouse, "rural") as wh:
        assert verify.compare(Lake(s3.lake_uri, "rural"), wh) == []
    assert s3.run().status == "nothing-new"


def test_a_release_of_an_s3_lake_reads_and_exports_as_it_was_after_later_runs(s3, tmp_path) -> None:
    """A release of an object-store lake (tags in the catalog, frozen tables as objects) is read by the report's
    view and exported to another S3 prefix with the rows of its day, after a corrected re-delivery moved main."""
    from fitbit_pipeline import releases, schema
    from fitbit_pipeline.release_export import export
    from fitbit_pipeline.verify import content_checksum

    truth = generate(tmp_path / "gen", participants=2, days=2, seed=9)
    s3.put_tree(tmp_path / "gen")
    s3.run()
    frozen = s3.sql("SELECT * FROM rural.intraday_steps ORDER BY ALL")
    made = releases.create(s3.lake_uri, s3.warehouse, "on-s3", note="object store")
    pid, day = truth.days[0].participant_id, min(d.date for d in truth.days)
    changed = (tmp_path / "gen" / pid / day.isoformat() / "steps.json").read_bytes()
    s3.put(f"{pid}/{day.isoformat()}/steps.json", changed.replace(b'"value":0', b'"value":1', 3))
    assert s3.run().status == "succeeded"
    assert s3.sql("SELECT * FROM rural.intraday_steps ORDER BY ALL") != frozen

    with releases.release_warehouse(s3.lake_uri, s3.warehouse, "on-s3") as view:
        assert view.query("SELECT * FROM rural.intraday_steps ORDER BY ALL") == frozen
    target = s3.lake_uri.replace("/fitbit", "/exports/on-s3")
    manifest = export(s3.lake_uri, s3.warehouse, "on-s3", target)
    fs = s3fs.S3FileSystem()
    with fs.open(f"{target}/intraday_steps.parquet", "rb") as fh:
        exported = pq.read_table(fh)
    assert exported.num_rows == len(frozen) == manifest["tables"]["intraday_steps"]["rows"]
    steps = schema.INTRADAY["steps"]
    entry = made.tables["intraday_steps"]
    assert content_checksum([f"{target}/intraday_steps.parquet"], steps) == (entry.row_count, entry.checksum)


def test_faults_on_the_wire_still_load_every_object_exactly_once(s3, tmp_path, moto_port, monkeypatch) -> None:
    truth = generate(tmp_path / "gen", participants=2, days=2, seed=8)
    s3.put_tree(tmp_path / "gen")
    with FaultProxy(moto_port, slowdown_every=5, reset_every=7) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        s = s3.run(workers=2)
    assert proxy.faults["slowdown"] > 0 and proxy.faults["reset"] > 0
    assert s.status == "succeeded" and s.totals["files_loaded"] == 24 and s.totals["files_rejected"] == 0
    for a in ("heart", "steps", "calories"):
        n, distinct = s3.sql(f"SELECT COUNT(*), COUNT(DISTINCT (participant_id, ts)) FROM rural.intraday_{a}")[0]
        assert n == distinct == truth.total_rows(a)
    assert s3.sql("SELECT COUNT(*) FROM rural.pipeline_files WHERE status = 'loaded'") == [(24,)]


def test_an_object_unavailable_through_every_retry_is_reported_and_read_by_the_next_run(
    s3, tmp_path, moto_port, monkeypatch
) -> None:
    truth = generate(tmp_path / "gen", participants=1, days=2, seed=12)
    s3.put_tree(tmp_path / "gen")
    pid = truth.days[0].participant_id
    day = min(d.date for d in truth.days).isoformat()
    key = f"{pid}/{day}/steps.json"
    monkeypatch.setenv("FITBIT_S3_MAX_ATTEMPTS", "2")
    with FaultProxy(moto_port, slowdown_every=10**6, reset_every=10**6, outage=(key,)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        first = s3.run()
    assert proxy.faults["outage"] > 0
    assert proxy.max_in_flight > 1  # one worker, yet the small objects were fetched concurrently
    assert first.status == "succeeded" and first.totals["files_rejected"] == 1
    [(source, rule, reason)] = s3.sql(
        "SELECT source_file, rule_id, reason FROM rural.pipeline_files WHERE status = 'rejected'"
    )
    assert source.endswith(key) and rule == "read_failed" and "reduce your request rate" in reason
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{moto_port}")
    again = s3.run()  # no --retry-rejected needed: a transport fault is not a verdict on the file
    assert again.totals["files_retried"] == 1 and again.totals["files_unchanged"] == 11
    assert again.totals["files_loaded"] == 1
    assert s3.sql("SELECT COUNT(*) FROM rural.pipeline_files WHERE status = 'rejected'") == [(0,)]
    assert s3.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(truth.total_rows("steps"),)]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_slip_bomb_and_truncated_archives_are_rejected_while_the_rest_loads(s3, tmp_path) -> None:
    # three good exports (18 documents): the three bad archives stay under the gate's file failure limit
    truth = generate(tmp_path / "good", participants=3, days=1, layout="mydatahelps", seed=3)
    for export in truth.files:
        s3.put(export.name, export.read_bytes())
    good = truth.files[0]
    member = "fitbit_intraday_activities_steps/MDH-1-1/activities_steps_date_2024-03-04_1d_1min.json"
    doc = zipfile.ZipFile(good).read(next(n for n in zipfile.ZipFile(good).namelist() if "steps" in n))
    s3.put("RK.AAAA0001.Evil_20240301-20240302.zip", _zip({"../../etc/" + member: doc, member: doc}))
    s3.put(
        "RK.AAAA0002.Bomb_20240301-20240302.zip",
        _zip({member: doc, member.replace("steps", "floors"): b"0" * (50 << 20)}),
    )
    whole = _zip({member: doc})
    s3.put("RK.AAAA0003.Cut_20240301-20240302.zip", whole[: len(whole) // 2])
    s = s3.run()
    assert s.status == "succeeded"
    rejected = dict(s3.sql("SELECT source_file, reason FROM rural.pipeline_files WHERE status = 'rejected'"))
    reasons = " | ".join(rejected.values())
    assert "escapes the archive" in reasons and "zip bomb" in reasons and "unreadable zip archive" in reasons
    assert len(rejected) == 3
    assert not any("etc" in k for k in s3.lake_keys(""))  # nothing written from the member name
    loaded = s3.sql("SELECT COUNT(*) FROM rural.pipeline_files WHERE status = 'loaded'")[0][0]
    superseded = s3.sql("SELECT COUNT(*) FROM rural.pipeline_files WHERE status = 'superseded'")[0][0]
    # the good exports, and the good member next to each bad one (the same participant-day: one wins)
    assert loaded == 18 + 1 and superseded == 1


def test_an_s3_outage_during_the_commit_fails_clearly_and_the_next_run_completes_it(s3, moto_port, tmp_path) -> None:
    """A real `fitbit-pipeline run` on an S3 lake stops at its point of no return; the endpoint goes down; the
    lake commit fails after its retries with a clear error; once the endpoint is back the next run completes it."""
    import os
    import signal
    import subprocess
    import sys

    from .test_crash_recovery import _wait_stopped

    truth = generate(tmp_path / "gen", participants=2, days=2, seed=23)
    s3.put_tree(tmp_path / "gen")
    with FaultProxy(moto_port, slowdown_every=10**6, reset_every=10**6) as proxy:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FITBIT_")}
        environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
            FITBIT_ICEBERG_CATALOG_URI=os.environ["FITBIT_ICEBERG_CATALOG_URI"],
            FITBIT_S3_MAX_ATTEMPTS="2",
            FITBIT_SOURCE=s3.source,
            FITBIT_LAKE=s3.lake_uri,
            FITBIT_WAREHOUSE=s3.warehouse,
            FITBIT_WORKERS="1",
        )
        cmd = [sys.executable, "-c", "from fitbit_pipeline.cli import app; app()", "run"]
        proc = subprocess.Popen(
            cmd, env={**environ, "FITBIT_FAULT_POINT": "committing", "FITBIT_FAULT_SIGNAL": "STOP"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_stopped(proc)
        proxy.down = True
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1 and "run failed" in err and "Traceback" not in err, err[-2000:]
        assert proxy.faults["outage"] > 0
        proxy.down = False
        again = subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        check = subprocess.run([*cmd[:-1], "verify"], env=environ, capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
    for a in ("heart", "steps"):
        assert s3.sql(f"SELECT COUNT(*) FROM rural.intraday_{a}") == [(truth.total_rows(a),)]
    runs = dict(s3.sql("SELECT status, COUNT(*) FROM rural.pipeline_runs WHERE activity = 'ALL' GROUP BY 1"))
    # the failed attempt was completed by the next run's recovery (recorded as succeeded), which then found nothing new
    assert runs == {"succeeded": 1, "nothing-new": 1}
    assert s3.sql("SELECT COUNT(*) FROM rural.pipeline_files WHERE status <> 'loaded'") == [(0,)]


def test_the_fetch_concurrency_a_run_sets_reaches_its_workers(s3, tmp_path, moto_port, monkeypatch) -> None:
    """``FITBIT_S3_CONCURRENCY`` is read when a worker fetches, not when the fork server imported the module:
    a value changed between two runs of one process bounds the second run's requests (2 workers x 1)."""
    generate(tmp_path / "gen", participants=2, days=2, seed=8)
    s3.put_tree(tmp_path / "gen")
    in_flight = {}
    for concurrency in ("16", "1"):
        monkeypatch.setenv("FITBIT_S3_CONCURRENCY", concurrency)
        with FaultProxy(moto_port, slowdown_every=10**6, reset_every=10**6) as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
            lake, warehouse = tmp_path / f"lake-{concurrency}", tmp_path / f"wh-{concurrency}.duckdb"
            s = pipeline.run(s3.source, str(lake), str(warehouse), "rural", workers=2)  # only the source is on S3
        assert s.status == "succeeded" and s.totals["files_loaded"] == 24
        in_flight[concurrency] = proxy.max_in_flight
    assert in_flight["16"] > 2 and in_flight["1"] <= 2


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_bad_s3_setting_is_a_configuration_error_naming_it(s3, value, monkeypatch) -> None:
    from fitbit_pipeline import preflight, sources
    from fitbit_pipeline.errors import ConfigError, exit_code

    checks = {  # where each is read first: the run's preflight of its source, the S3 filesystem's options
        "FITBIT_S3_CONCURRENCY": lambda: preflight.check_source(s3.source, "FITBIT_SOURCE"),
        "FITBIT_S3_MAX_ATTEMPTS": lambda: sources.storage_options(s3.source),
    }
    for name, check in checks.items():
        monkeypatch.setenv(name, value)
        with pytest.raises(ConfigError, match=name) as caught:
            check()
        assert exit_code(caught.value) == 2
        again = pickle.loads(pickle.dumps(caught.value))  # as it crosses the transform's process pool
        assert type(again) is ConfigError and again.setting == name and str(again) == str(caught.value)
        monkeypatch.delenv(name)
