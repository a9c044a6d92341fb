"""Redshift: every statement from the shared code path, parsed with sqlglot's ``redshift`` dialect and
checked for structure; the backend's transaction logic run on a real PostgreSQL server where the
dialects agree; connection settings; and a live test when a Redshift cluster is configured."""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import uuid

import boto3
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from fitbit_pipeline import pipeline, schema
from fitbit_pipeline.derived_sql import derived_statements
from fitbit_pipeline.errors import ConfigError
from fitbit_pipeline.lake import Lake
from fitbit_pipeline.sample_data import generate
from fitbit_pipeline.sources import filesystem
from fitbit_pipeline.sql import Names, copy_credentials, ident, literal, placeholders, sql_type
from fitbit_pipeline.transform import iter_parts
from fitbit_pipeline.warehouse import open_warehouse
from fitbit_pipeline.warehouse.base import AccountingError, Warehouse
from fitbit_pipeline.warehouse.redshift_backend import (
    RedshiftSettings,
    RedshiftWarehouse,
    airflow_kwargs,
    connect_kwargs,
    describe,
    staging_prefix,
)

from .conftest import Env, create_unpartitioned_intraday
from .s3_support import use_s3_endpoint

ROLE = "arn:aws:iam::123456789012:role/fitbit-copy"
HOSTILE_SCHEMA = 'Zoë\'s "study"; DROP SCHEMA rural;--'
RUN = "20240308T010203Z-abc123"


def parse(sql: str) -> exp.Expression:
    """Exactly one statement, parsed by sqlglot's Redshift dialect (raises on any error)."""
    parsed = sqlglot.parse(sql, read="redshift", error_level=ErrorLevel.RAISE)
    assert len(parsed) == 1 and parsed[0] is not None
    return parsed[0]


def table_of(node: exp.Expression) -> tuple[str, str]:
    t = node if isinstance(node, exp.Table) else node.find(exp.Table)
    assert t is not None
    return t.db, t.name


def _settings(**kw) -> RedshiftSettings:
    """Settings from ``kw`` only (whatever the environment of the test run holds)."""
    base = {k: None for k, f in RedshiftSettings.model_fields.items() if f.default is None}
    return RedshiftSettings(_env_file=None, **{**base, "redshift_iam": False, **kw})


# ---- statements ------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema_name", ["rural", HOSTILE_SCHEMA])
@pytest.mark.parametrize("staging", [False, True], ids=["production", "staging"])
def test_ddl_of_every_table_parses_with_dist_and_sort_keys(schema_name, staging) -> None:
    names = Names(schema_name, "redshift")
    assert isinstance(parse(names.create_schema()), exp.Create)
    for t in schema.ALL_TABLES:
        if staging and t not in schema.STAGED_TABLES:
            continue
        create = parse(names.create_table(t, staging=staging))
        assert isinstance(create, exp.Create) and create.args.get("exists")
        assert table_of(create) == (schema_name, t.staging_name if staging else t.name)
        columns = {c.name: c for c in create.find_all(exp.ColumnDef)}
        assert list(columns) == t.columns
        for f in t.schema:
            kind = columns[f.name].args["kind"]
            if pa.types.is_string(f.type):
                assert kind.this == exp.DataType.Type.VARCHAR and kind.expressions, f"{t.name}.{f.name} width"
            assert (columns[f.name].find(exp.NotNullColumnConstraint) is None) == f.nullable
        props = {type(p): p for p in (create.args.get("properties") or exp.Properties()).expressions}
        if t.data or t.kind in ("deliveries", "wear"):
            assert props[exp.DistKeyProperty].this.name == "participant_id"
            sort = props[exp.SortKeyProperty]
            assert sort.args.get("compound")
            want = ["participant_id", "ts"] if t.kind == "intraday" else ["participant_id", "date"]
            assert [c.name for c in sort.this] == want
        else:
            assert exp.DistKeyProperty not in props and exp.SortKeyProperty not in props


@pytest.mark.parametrize("schema_name", ["rural", HOSTILE_SCHEMA])
def test_copy_of_every_staged_table_names_its_prefix_and_parquet(schema_name) -> None:
    names = Names(schema_name, "redshift")
    lake = "s3://study-lake/fitbit/o'brien"
    for t in schema.STAGED_TABLES:
        prefix = f"{lake}/staging/run_id={RUN}/{t.name}/"
        copy = parse(names.copy_from_s3(t.staging_name, prefix, copy_credentials(ROLE)))
        assert isinstance(copy, exp.Copy) and copy.args.get("kind") is True  # COPY ... FROM
        assert table_of(copy.this) == (schema_name, t.staging_name)
        assert [f.this for f in copy.args["files"]] == [prefix]
        params = {p.this.name.upper(): p.args.get("expression") for p in copy.args["params"]}
        assert params["FORMAT"].name.upper() == "PARQUET"
        assert copy.args["credentials"].args["iam_role"].this == ROLE
    url = f"{lake}/staging/run_id={RUN}/_redshift/intraday_heart.manifest"
    from_manifest = parse(names.copy_from_s3("intraday_heart", url, copy_credentials(ROLE), manifest=True))
    assert table_of(from_manifest.this) == (schema_name, "intraday_heart")
    assert [f.this for f in from_manifest.args["files"]] == [url]
    assert {p.this.name.upper() for p in from_manifest.args["params"]} == {"FORMAT", "MANIFEST"}
    default_role = parse(names.copy_from_s3("stg_x", "s3://b/p/", copy_credentials("default")))
    assert "IAM_ROLE DEFAULT" in default_role.sql("redshift").upper()
    keys = names.copy_from_s3("stg_x", "s3://b/p/", copy_credentials(access_key_id="AKIA1", secret_access_key="s'k"))
    assert "SECRET_ACCESS_KEY 's''k'" in keys and isinstance(parse(keys), exp.Copy)
    with pytest.raises(ValueError):
        names.copy_from_s3("stg_x", "/local/folder/", copy_credentials(ROLE))
    with pytest.raises(ValueError):
        literal("s3://b/back\\slash/")


def test_the_backend_copies_from_the_runs_staging_folder(tmp_path) -> None:
    parts = [f"s3://lake/p/staging/run_id={RUN}/intraday_heart/part-{i}.parquet" for i in range(3)]
    assert staging_prefix("stg_intraday_heart", parts) == f"s3://lake/p/staging/run_id={RUN}/intraday_heart/"
    stripped = [p.removeprefix("s3://") for p in parts]  # fsspec lists S3 objects without the scheme
    assert staging_prefix("stg_intraday_heart", stripped) == f"s3://lake/p/staging/run_id={RUN}/intraday_heart/"
    assert staging_prefix("stg_x", [str(tmp_path / "part-0.parquet")]) is None  # local: uploaded to the temp dir
    with pytest.raises(ValueError, match="one folder"):
        staging_prefix("stg_x", ["s3://a/x/1.parquet", "s3://a/y/2.parquet"])


@pytest.mark.parametrize("schema_name", ["rural", HOSTILE_SCHEMA])
def test_merge_is_the_shared_statements_after_a_lock(schema_name) -> None:
    redshift, postgres = Names(schema_name, "redshift"), Names(schema_name, "postgres")
    lock = redshift.merge_lock()
    assert lock == [(f"LOCK {redshift.q('pipeline_deliveries')}", [])]
    assert isinstance(parse(lock[0][0]), exp.Command)  # sqlglot keeps LOCK as a command
    days = {t.activity: (dt.date(2024, 3, 4), dt.date(2024, 3, 8)) for t in schema.DATA_TABLES}
    statements = redshift.merge_statements(days) + derived_statements(redshift, RUN, 600)
    shared = [s for s in postgres.merge_statements(days) if not s[0].startswith("ANALYZE")]
    assert redshift.merge_statements(days) == shared  # the same text the PostgreSQL tests execute
    targets = []
    for sql, params in statements:
        assert placeholders(sql, "%s").count("%s") == len(params)
        node = parse(sql)
        if isinstance(node, exp.Insert | exp.Delete | exp.Update):
            targets.append((type(node).__name__, table_of(node.this)))
    for t in schema.DATA_TABLES:
        assert ("Delete", (schema_name, t.name)) in targets and ("Insert", (schema_name, t.name)) in targets
    first = parse(statements[1][0])
    assert isinstance(first, exp.Create) and first.find(exp.TemporaryProperty) is not None
    for sql in (redshift.accounting_violations(), redshift.run_file_stats(), redshift.known_files()):
        parse(sql)
    insert = parse(redshift.insert_values(schema.PIPELINE_RUNS, 3))
    assert isinstance(insert, exp.Insert) and len(insert.expression.expressions) == 3


# ---- transaction logic on PostgreSQL ---------------------------------------------------------------


def _staged(env: Env, lake: str | None = None) -> pipeline.Plan:
    """Tables, and the run's staging loaded, by the PostgreSQL backend (Redshift DDL/COPY cannot run there):
    the ``stg_*`` tables Redshift stages (not the data rows, which its merge copies from the lake)."""
    with open_warehouse(env.target, "rural") as wh:
        create_unpartitioned_intraday(wh.execute)  # as Redshift's tables: the merge inserts into them
        plan = pipeline.plan_run(str(env.source), lake or str(env.lake), wh)
        pipeline.transform_run(plan, workers=1)
        data = {t.name for t in schema.DATA_TABLES}
        parts = {t.name: list(iter_parts(plan.staging_uri, t.name)) for t in schema.STAGED_TABLES}
        with wh.transaction():
            Warehouse.load_staging(wh, {name: p for name, p in parts.items() if name not in data})
    return plan


class RedshiftOnPostgres(RedshiftWarehouse):
    """The Redshift backend on a PostgreSQL connection. PostgreSQL cannot run ``COPY ... FROM 's3://...'
    MANIFEST``, so this one method does what Redshift does with it: read the manifest object from the S3
    endpoint, require each entry's ``content_length`` to be its object's size, and load the listed Parquet
    files in order, columns by position (Redshift's rule for Parquet), in the same transaction."""

    manifests: list[dict]

    def _copy_manifest(self, table_name: str, manifest: str) -> int:
        fs, path = filesystem(manifest)
        listed = json.loads(fs.cat_file(path))["entries"]
        type(self).manifests.append({"url": manifest, "table": table_name, "entries": listed})
        copied = 0
        with self.con.cursor() as cur, cur.copy(f"COPY {self.names.q(table_name)} FROM STDIN") as copy:
            for entry in listed:
                assert entry["mandatory"] is True
                fs, path = filesystem(entry["url"])
                assert entry["meta"]["content_length"] == fs.size(path)
                with fs.open(path, "rb") as fh:
                    for row in pq.read_table(fh).to_pylist():
                        copy.write_row(tuple(row.values()))
                        copied += 1
        return copied


def _redshift_on(url: str, **settings) -> RedshiftWarehouse:
    RedshiftOnPostgres.manifests = []
    return RedshiftOnPostgres(psycopg.connect(url), "rural", settings=_settings(**settings), placeholder="%s")


def _bucket(port: int) -> tuple[object, str]:
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    bucket = f"rs-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.mark.parametrize("lake_kind", ["local", "s3"])
def test_redshift_merge_transaction_on_postgres_matches_the_postgres_backend(
    make_env, tmp_path, moto_port, monkeypatch, lake_kind
) -> None:
    """The merge deletes the replaced participant-days and COPYs the lake files of the run from a manifest:
    a local lake's files through REDSHIFT_TEMP_DIR (removed afterwards), an S3 lake's in place with the
    manifest in the run's staging. A table whose columns are in another order loads through its stg_ twin."""
    use_s3_endpoint(monkeypatch, moto_port, tmp_path)
    client, bucket = _bucket(moto_port)
    source = tmp_path / "input"
    generate(source, participants=2, days=2, seed=21)
    via_redshift, via_postgres = make_env("rs", "postgres"), make_env("pg", "postgres")
    via_redshift.source_dir = via_postgres.source_dir = source
    lake = f"s3://{bucket}/lake" if lake_kind == "s3" else None
    plan = _staged(via_redshift, lake)
    reordered = schema.BY_NAME["daily_steps"]  # as an older warehouse that got a column added at the end
    columns = ", ".join(f"{ident(f.name)} {sql_type(f.type, 'postgres', f.name)}" for f in reversed(reordered.schema))
    via_redshift.execute(f"DROP TABLE rural.daily_steps; CREATE TABLE rural.daily_steps ({columns})")
    with _redshift_on(via_redshift.target, redshift_temp_dir=f"s3://{bucket}/tmp") as wh:
        inserted = pipeline.merge_run(plan, wh)
        assert wh.query(f"SELECT COUNT(*) FROM {wh.names.q('pipeline_deliveries')}") == [(2 * 2 * 6,)]
        assert inserted["intraday_steps"] == 2 * 2 * 1440
        started = dt.datetime(2024, 3, 8, 1, 2, 3)
        row = {f.name: 0 for f in schema.PIPELINE_RUNS.schema}
        row.update(run_id=plan.run_id, activity="ALL", started_at=started, finished_at=started, status="succeeded")
        row.update(duration_s=1.5, message="it's ? %s")
        wh.record_run(plan.run_id, [row, {**row, "activity": "steps", "message": None}])
        assert wh.recent_runs(5).to_pylist()[0]["message"] == "it's ? %s"
        assert wh.file_stats(plan.run_id)
    with monkeypatch.context() as m:
        m.delenv("FITBIT_ICEBERG_CATALOG_URI")  # its local lake has its own catalog
        assert via_postgres.run().status == "succeeded"
    for t in schema.ALL_TABLES:
        if t not in (schema.PIPELINE_RUNS, schema.PIPELINE_LAKE_STATE):  # lake snapshot ids are random
            exclude = ("run_id", "processed_at")
            assert via_redshift.rows(t.name, exclude=exclude) == via_postgres.rows(t.name, exclude=exclude), t.name
    the_lake = Lake(lake or str(via_redshift.lake), "rural")
    manifests = {m["table"]: m for m in RedshiftOnPostgres.manifests}
    assert set(manifests) == {t.name for t in schema.DATA_TABLES if t is not reordered} | {reordered.staging_name}
    for t in schema.DATA_TABLES:
        m = manifests[t.staging_name if t is reordered else t.name]
        added = the_lake.added(plan.run_id)[t.name]
        if lake:  # the lake's own files, the manifest kept with the run's staging
            assert [e["url"] for e in m["entries"]] == added
            assert m["url"] == f"{plan.staging_uri}/_redshift/{t.name}.manifest"
        else:
            assert [posixpath.basename(e["url"]) for e in m["entries"]] == [posixpath.basename(f) for f in added]
            assert m["url"].startswith(f"s3://{bucket}/tmp/fitbit-pipeline/")
    assert client.list_objects_v2(Bucket=bucket, Prefix="tmp/").get("KeyCount", 0) == 0  # uploads removed


def test_redshift_transaction_rolls_back_on_postgres(make_env) -> None:
    env = make_env("e", "postgres")
    generate(env.source, participants=1, days=1, seed=22)
    plan = _staged(env)
    env.execute("UPDATE rural.stg_pipeline_files SET rows_read = rows_read + 1")
    with _redshift_on(env.target) as wh:
        with pytest.raises(AccountingError):
            pipeline.merge_run(plan, wh)
        assert wh._depth == 0
        staged = wh.query("SELECT COUNT(*) FROM rural.stg_pipeline_files")
        assert staged[0][0] > 0
        with pytest.raises(ZeroDivisionError), wh.transaction(), wh.transaction():  # nested joins the outer one
            wh.execute("DELETE FROM rural.stg_pipeline_files")
            _ = 1 / 0
        assert wh.query("SELECT COUNT(*) FROM rural.stg_pipeline_files") == staged
    assert env.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(0,)]
    assert env.sql("SELECT COUNT(*) FROM rural.pipeline_files") == [(0,)]


# ---- connection settings -----------------------------------------------------------------------------


def test_connection_from_url_settings_and_airflow(monkeypatch) -> None:
    kw = connect_kwargs("redshift://etl:p%40ss@cluster.example.com:5439/analytics?sslmode=verify-full", _settings())
    assert kw == {
        "host": "cluster.example.com",
        "port": 5439,
        "user": "etl",
        "password": "p@ss",
        "database": "analytics",
        "sslmode": "verify-full",
    }
    assert "p@ss" not in describe(kw) and "cluster.example.com" in describe(kw)
    iam = _settings(
        redshift_cluster_identifier="c1",
        redshift_iam=True,
        redshift_user="etl",
        redshift_database="dev",
        aws_region="x",
    )
    assert connect_kwargs("redshift", iam) == {
        "port": 5439,
        "database": "dev",
        "user": "etl",
        "region": "x",
        "iam": True,
        "db_user": "etl",
        "cluster_identifier": "c1",
    }
    serverless = connect_kwargs("redshift://", _settings(redshift_workgroup="wg", redshift_database="dev"))
    assert serverless["is_serverless"] is True and serverless["serverless_work_group"] == "wg" and serverless["iam"]
    monkeypatch.setenv(
        "AIRFLOW_CONN_REDSHIFT_DEFAULT",
        '{"conn_type": "redshift", "host": "h", "login": "u", "password": "pw", "port": 5439, "schema": "dev", '
        '"extra": {"iam": "true", "cluster_identifier": "c9", "unknown": 1}}',
    )
    assert airflow_kwargs("redshift_default") == {
        "host": "h",
        "port": 5439,
        "user": "u",
        "password": "pw",
        "database": "dev",
        "iam": True,
        "cluster_identifier": "c9",
    }
    assert connect_kwargs("redshift", _settings())["cluster_identifier"] == "c9"
    monkeypatch.setenv("AIRFLOW_CONN_REDSHIFT_DEFAULT", "redshift://a:b@h2:5439/db2?iam=false")
    assert connect_kwargs("redshift", _settings())["host"] == "h2"
    monkeypatch.delenv("AIRFLOW_CONN_REDSHIFT_DEFAULT")
    with pytest.raises(ValueError, match="REDSHIFT_PASSWORD"):
        connect_kwargs("redshift://u@h/db", _settings())


def test_connection_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        RedshiftWarehouse.connect("redshift://etl:Sup3rS3cret@127.0.0.1:1/dev?timeout=2", "rural", _settings())
    assert "Sup3rS3cret" not in str(info.value) and "redshift://etl@127.0.0.1/dev" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---- live Redshift ---------------------------------------------------------------------------------------


def _live_reason() -> str | None:
    s = RedshiftSettings()
    if not s.configured:
        return "no Redshift configured (set REDSHIFT_HOST or REDSHIFT_CLUSTER_IDENTIFIER/REDSHIFT_WORKGROUP)"
    if not (s.redshift_password or s.redshift_iam or s.redshift_workgroup):
        return "no Redshift credentials (REDSHIFT_PASSWORD, or REDSHIFT_IAM=true with AWS credentials)"
    if not s.redshift_database:
        return "REDSHIFT_DATABASE is not set"
    if not (s.redshift_temp_dir or "").startswith("s3://"):
        return "REDSHIFT_TEMP_DIR (an s3:// folder the cluster can read) is not set"
    return None


def _none_first(row: tuple) -> tuple:
    return tuple((v is not None, v if v is not None else 0) for v in row)


def test_live_redshift_matches_duckdb(make_env, tmp_path) -> None:
    reason = _live_reason()
    if reason:
        pytest.skip(f"live Redshift test: {reason}")
    source = tmp_path / "input"
    generate(source, participants=2, days=1, seed=31)
    duck = make_env("duck", "duckdb")
    duck.source_dir = source
    assert duck.run().status == "succeeded"
    schema_name = f"fitbit_test_{uuid.uuid4().hex[:8]}"
    lake = tmp_path / "rs-lake"
    try:
        s = pipeline.run(str(source), str(lake), "redshift", schema_name, workers=1)
        assert s.status == "succeeded"
        with open_warehouse("redshift", schema_name) as wh:
            for t in schema.DATA_TABLES:
                cols = ", ".join(f'"{c}"' for c in t.columns if c != "run_id")
                got = sorted(wh.query(f"SELECT {cols} FROM {wh.names.q(t.name)}"), key=_none_first)
                want = sorted(duck.sql(f'SELECT {cols} FROM rural."{t.name}"'), key=_none_first)
                assert got == want, t.name
    finally:
        with open_warehouse("redshift", schema_name) as wh:
            wh.execute(f"DROP SCHEMA IF EXISTS {ident(schema_name)} CASCADE")


def test_live_settings_are_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("REDSHIFT_TEMP_DIR", "s3://tmp/x")
    monkeypatch.setenv("FITBIT_REDSHIFT_IAM_ROLE", ROLE)
    s = RedshiftSettings(_env_file=None)
    assert s.redshift_temp_dir == "s3://tmp/x" and s.fitbit_redshift_iam_role == ROLE
