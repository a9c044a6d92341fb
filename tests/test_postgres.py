"""PostgreSQL against DuckDB on a real server: identical tables, hostile names, locking, rollback."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import duckdb
import psycopg
import pyarrow as pa
import pytest

from fitbit_pipeline import pipeline, schema
from fitbit_pipeline.errors import ConfigError
from fitbit_pipeline.sample_data import generate
from fitbit_pipeline.sql import Names, lock_key, placeholders
from fitbit_pipeline.warehouse import open_warehouse, warehouse_kind
from fitbit_pipeline.warehouse.base import AccountingError
from fitbit_pipeline.warehouse.postgres_backend import PostgresWarehouse, mask_url

from .conftest import WAREHOUSES, Env, create_unpartitioned_intraday
from .lake_support import read_lake

# Columns that name the run or its clock: the only ones allowed to differ between two loads of the same input.
RUN_COLUMNS = ("run_id", "processed_at")
# pipeline_lake_state names snapshot ids, which are random per lake.
COMPARED = [t.name for t in schema.ALL_TABLES if t not in (schema.PIPELINE_RUNS, schema.PIPELINE_LAKE_STATE)]
RUN_STATS_EXCLUDED = ("run_id", "started_at", "finished_at", "duration_s")
HOSTILE_IDS = ["O'Brien; DROP TABLE x;--", "Zoë-1", 'quo"te ? %s %% $1', "Ωμέγα 🏃 tab\there"]


def _tables(env: Env, schema_name: str = "rural") -> dict[str, list[tuple]]:
    """Every table but pipeline_runs, sorted; run ids and the lake's own path (in messages) neutralised."""
    out = {}
    for t in COMPARED:
        cols = [c for c in schema.BY_NAME[t].columns if c not in RUN_COLUMNS]
        texts = [i for i, c in enumerate(cols) if c in ("message", "reason")]
        rows = env.rows(t, exclude=RUN_COLUMNS, schema=schema_name)
        if texts:
            rows = sorted(tuple(_neutral(env, v) if i in texts else v for i, v in enumerate(r)) for r in rows)
        out[t] = rows
    return out


def _neutral(env: Env, v: str | None) -> str | None:
    return None if v is None else re.sub(r"run_id=[^/]+", "run_id=<run>", v.replace(str(env.lake), "<lake>"))


def _run_stats(env: Env, schema_name: str = "rural") -> list[tuple]:
    return env.rows("pipeline_runs", exclude=RUN_STATS_EXCLUDED, schema=schema_name)


def _lake(env: Env) -> dict[str, list[tuple]]:
    """The production lake, minus run ids, per table."""
    out = {}
    for t in schema.DATA_TABLES:
        cols = ", ".join(f'"{c}"' for c in t.columns if c != "run_id")
        out[t.name] = duckdb.sql(f"SELECT {cols} FROM {read_lake(env.lake, t.name)} ORDER BY ALL").fetchall()
    return out


def open_counts(env: Env, schema_name: str = "rural") -> dict[str, int]:
    with open_warehouse(env.target, schema_name) as wh:
        return wh.table_counts()


def _both(make_env, source) -> tuple[Env, Env]:
    duck, pg = make_env("duckdb", "duckdb"), make_env("postgres", "postgres")
    duck.source_dir = pg.source_dir = source
    return duck, pg


def _assert_same(duck: Env, pg: Env, schema_name: str = "rural") -> None:
    want, got = _tables(duck, schema_name), _tables(pg, schema_name)
    for name in COMPARED:
        assert got[name] == want[name], name
    assert _run_stats(pg, schema_name) == _run_stats(duck, schema_name)


def test_generated_input_gives_identical_tables_and_lakes(make_env, tmp_path) -> None:
    source = tmp_path / "input"
    truth = generate(source, participants=2, days=2, hr_seconds=True, seed=13)
    day = truth.days[0]
    broken = source / day.participant_id / day.date.isoformat() / "steps.json"
    broken.write_bytes(broken.read_bytes()[:300])  # a rejected file, for the ledger and rejects tables
    duck, pg = _both(make_env, source)
    for env in (duck, pg):
        s = env.run(workers=2)
        assert s.status == "succeeded" and s.totals["files_rejected"] == 1
    _assert_same(duck, pg)
    assert _lake(pg) == _lake(duck)
    assert pg.sql("SELECT COUNT(*) FROM rural.intraday_heart")[0][0] > 50_000


def test_fixture_layouts_give_identical_tables(make_env, fixtures_dir) -> None:
    duck, pg = _both(make_env, fixtures_dir / "layouts")
    for env in (duck, pg):
        assert env.run(workers=2).status == "succeeded"
    _assert_same(duck, pg)
    assert pg.sql("SELECT COUNT(*) FROM rural.intraday_heart")[0][0] > 100_000
    assert _lake(pg) == _lake(duck)


def test_hostile_participant_ids_and_file_names_load_verbatim(make_env, tmp_path) -> None:
    source = tmp_path / "input"
    truth = generate(source, participants=0, days=1, participant_ids=HOSTILE_IDS, seed=2)
    zipped = generate(tmp_path / "zip", days=1, layout="mydatahelps", participant_ids=["Zoë's; --"], seed=3)
    archive = zipped.files[0]
    start_end = archive.name.rsplit("_", 1)[1]
    hostile_zip = f"RK.5B1C2F9A.O'Brien; DROP TABLE rural.pipeline_files;-- Zoë %s ?_{start_end}"
    (source / hostile_zip).write_bytes(archive.read_bytes())
    (source / "notes'; DROP TABLE x;--.txt").write_text("not an export")
    duck, pg = _both(make_env, source)
    for env in (duck, pg):
        s = env.run(workers=2)
        assert s.status == "succeeded"
        assert s.totals["files_rejected"] == 1  # the .txt file
        ids = {r[0] for r in env.sql("SELECT DISTINCT participant_id FROM rural.pipeline_deliveries")}
        assert ids == {*HOSTILE_IDS, "Zoë's; --"}
        for pid in HOSTILE_IDS:
            got = env.sql("SELECT COUNT(*) FROM rural.intraday_steps WHERE participant_id = ?", [pid])
            want = sum(d.intraday_rows for d in truth.days if d.participant_id == pid and d.activity == "steps")
            assert got == [(want,)] and want > 0
        files = {r[0] for r in env.sql("SELECT source_file FROM rural.pipeline_files")}
        assert str(source / "notes'; DROP TABLE x;--.txt") in files
        assert sum(1 for f in files if f.startswith(str(source / hostile_zip) + "!")) == 6
        assert all(n >= 0 for n in open_counts(env).values())  # every table is still there
    _assert_same(duck, pg)


@pytest.mark.parametrize(
    "name",
    [
        'Zoë\'s"study";DROP_SCHEMA_rural;--?%s',
        'Zoë\'s "study"; DROP SCHEMA rural;-- ?%s',
    ],
    ids=["no-spaces", "with-spaces"],
)
@pytest.mark.parametrize("kind", WAREHOUSES)
def test_hostile_schema_name(make_env, kind, name) -> None:
    env = make_env("e", kind)
    generate(env.source, participants=1, days=1, seed=4)
    assert env.run(schema=name).status == "succeeded"
    counts = open_counts(env, name)
    assert counts["intraday_steps"] == 1440 and counts["pipeline_files"] == 6
    runs = env.sql(f"SELECT status FROM {Names(name).q('pipeline_runs')} WHERE activity = 'ALL'")
    assert runs == [("succeeded",)]


@pytest.mark.parametrize("kind", WAREHOUSES)
def test_failed_merge_leaves_production_untouched(make_env, kind) -> None:
    """An accounting failure inside the merge rolls back every statement of it."""
    env = make_env("e", kind)
    generate(env.source, participants=1, days=1, seed=6)
    with open_warehouse(env.target, "rural") as wh:
        plan = pipeline.plan_run(str(env.source), str(env.lake), wh)
        pipeline.transform_run(plan, workers=1)
        pipeline.load_staging(plan, wh)
        wh.execute(f"UPDATE {wh.names.q('stg_pipeline_files')} SET rows_read = rows_read + 1")
        with pytest.raises(AccountingError):
            pipeline.merge_run(plan, wh)
        # Nothing was committed, in the warehouse or the lake (the lake state still names no snapshot).
        assert wh.table_counts() == {t.name: 13 if t is schema.PIPELINE_LAKE_STATE else 0 for t in schema.ALL_TABLES}
        assert set(wh.lake_state().values()) == {(None, "adopted-legacy-lake")}
        # The staged ledger is still there for a retry (PostgreSQL stages no data rows: it copies them from the
        # lake inside the merge).
        assert wh.query(f"SELECT COUNT(*) FROM {wh.names.q('stg_pipeline_files')}") == [(6,)]


def test_binary_copy_keeps_nulls_and_fits_tables_of_older_types(postgres_db) -> None:
    """Rows reach PostgreSQL as binary COPY: every value and null comes back as sent, and a table an earlier
    version made with a narrower integer takes the rows cast to its type, refusing one that does not fit."""
    t, d = schema.BY_NAME["intraday_calories"], schema.BY_NAME["daily_steps"]
    ts = [dt.datetime(2024, 3, 10, 2, 30), dt.datetime(2024, 3, 10, 3, 0, 0, 250_000)]
    rows = pa.table(
        {
            "participant_id": ["P-1", HOSTILE_IDS[3]],
            "date": [dt.date(2024, 3, 10)] * 2,
            "ts": ts,
            "ts_utc": [None, dt.datetime(2024, 3, 10, 7, 0, 0, 250_000)],
            "tz_flag": ["nonexistent", None],
            "value": [1.25, 0.0],
            "level": [None, 2.0],
            "mets": [10.0, None],
            "source_file": ['a,b\n"c"', "ø"],
            "run_id": ["r1", "r1"],
        },
        schema=t.schema,
    )
    with open_warehouse(postgres_db(), "rural") as wh:
        wh.ensure_schema()
        wh.insert_arrow(t, rows)
        got = wh.query_arrow(f"SELECT {wh.names.column_list(t)} FROM {wh.names.q(t.name)} ORDER BY ts")
        assert got.to_pylist() == rows.to_pylist()
        wh.execute(f'ALTER TABLE {wh.names.q(d.name)} ALTER COLUMN "value" TYPE INTEGER')
        day = {"participant_id": ["P-1"], "date": [dt.date(2024, 3, 10)], "source_file": ["f"], "run_id": ["r1"]}
        wh.insert_arrow(d, pa.table({**day, "value": [12_345]}, schema=d.schema))
        assert wh.query(f'SELECT "value" FROM {wh.names.q(d.name)}') == [(12_345,)]
        with pytest.raises(pa.ArrowInvalid):  # never truncated
            wh.insert_arrow(d, pa.table({**day, "value": [2**40]}, schema=d.schema))
        assert wh.query(f'SELECT "value" FROM {wh.names.q(d.name)}') == [(12_345,)]


def _index_oids(env: Env) -> dict[str, int]:
    """The valid indexes of schema ``rural`` by name, with their OID (a rebuilt index gets a new one)."""
    found = env.sql(
        "SELECT c.relname, c.oid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'rural' AND i.indisvalid"
    )
    return {str(name): int(oid) for name, oid in found}


def _move_days(src: pathlib.Path, dst: pathlib.Path, days: set[str]) -> None:
    """Move the generated day folders named in ``days`` (ISO dates) of every participant to ``dst``."""
    for p in src.iterdir():
        (dst / p.name).mkdir(parents=True, exist_ok=True)
        for day in p.iterdir():
            if day.name in days:
                day.rename(dst / p.name / day.name)


def _partitions(env: Env, table: str) -> dict[str, int]:
    """The partitions of ``rural.<table>`` with their row counts."""
    names = env.sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"WHERE i.inhparent = 'rural.{table}'::regclass"
    )
    return {str(n): env.sql(f'SELECT COUNT(*) FROM rural."{n}"')[0][0] for (n,) in names}


def test_weekly_partitions_get_their_indexes_built_once(make_env, tmp_path) -> None:
    """Intraday rows go into one partition per week. A week's new partition is indexed after its rows are
    copied; a partition already holding more than a load brings keeps its index and takes the rows through it.
    Every partition ends with a valid index and every row is there once."""
    env = make_env("e", "postgres")
    truth = generate(tmp_path / "all", participants=2, days=15, start=dt.date(2024, 1, 1), seed=8)  # Mon 1 - Mon 15
    ids = sorted({d.participant_id for d in truth.days})
    _move_days(tmp_path / "all", env.source, {f"2024-01-{d:02d}" for d in range(1, 10)})  # to Tuesday 9
    with open_warehouse(env.target, "rural") as wh:
        wh.ensure_schema()
    kinds = dict(env.sql("SELECT relname, relkind::text FROM pg_class WHERE relnamespace = 'rural'::regnamespace"))
    assert {t.name: kinds[t.name] for t in schema.INTRADAY.values()} == {t.name: "p" for t in schema.INTRADAY.values()}
    want = {n for t in schema.ALL_TABLES if t.kind != "intraday" for n in Names("rural", "postgres").create_indexes(t)}
    assert set(_index_oids(env)) == want  # a partitioned table's indexes are its partitions'
    assert env.run().status == "succeeded"
    first = _index_oids(env)
    day = len(ids) * 1440  # minute rows of one day of the participants
    assert _partitions(env, "intraday_steps") == {
        "intraday_steps_w20240101": 7 * day,
        "intraday_steps_w20240108": 2 * day,
    }
    assert set(first) == want | {
        f"{t.name}_w2024010{d}__participant_id_date_ts_idx" for t in schema.INTRADAY.values() for d in (1, 8)
    }
    _move_days(tmp_path / "all", env.source, {"2024-01-10", "2024-01-15"})  # into the 2-day week, a new week
    assert env.run().status == "succeeded"
    second = _index_oids(env)
    steps = "intraday_steps_w{}__participant_id_date_ts_idx"
    assert second[steps.format("20240101")] == first[steps.format("20240101")]  # not touched
    assert second[steps.format("20240108")] == first[steps.format("20240108")]  # 1 day into 2: through the index
    assert steps.format("20240115") in second
    assert set(second) == set(first) | {
        f"{t.name}_w20240115__participant_id_date_ts_idx" for t in schema.INTRADAY.values()
    }
    assert _partitions(env, "intraday_steps") == {
        "intraday_steps_w20240101": 7 * day,
        "intraday_steps_w20240108": 3 * day,
        "intraday_steps_w20240115": day,
    }
    assert env.sql("SELECT COUNT(*) FROM (SELECT DISTINCT participant_id, ts FROM rural.intraday_steps) k") == [
        (11 * day,)
    ]


def test_a_run_replacing_days_reads_only_the_partitions_of_those_days(make_env, tmp_path) -> None:
    """The delete of the participant-days a run replaces is bounded by their first and last day, so the weeks
    before them are not read, whichever join the planner picks: on 8 weeks of history it chose a hash join that
    read every partition whole (bench/RESULTS.md); forced to it here, the plan names one partition. The
    replaced day holds the new delivery's rows only."""
    env = make_env("e", "postgres")
    truth = generate(tmp_path / "all", participants=2, days=10, start=dt.date(2024, 1, 1), seed=8)  # Mon 1 - Wed 10
    ids = sorted({d.participant_id for d in truth.days})
    _move_days(tmp_path / "all", env.source, {f"2024-01-{d:02d}" for d in range(1, 10)})  # to Tuesday 9
    assert env.run().status == "succeeded"
    newer = generate(tmp_path / "newer", participant_ids=ids, days=1, start=dt.date(2024, 1, 9), seed=9)
    for p in ids:  # day 9 again, other values: replaces it
        shutil.rmtree(env.source / p / "2024-01-09")
    _move_days(tmp_path / "newer", env.source, {"2024-01-09"})
    _move_days(tmp_path / "all", env.source, {"2024-01-10"})
    s = env.run()
    assert s.status == "succeeded" and s.totals["files_loaded"] == len(ids) * 2 * len(schema.INTRADAY)
    kept = [d for d in truth.days if d.date != dt.date(2024, 1, 9)] + newer.days  # day 9 as newly delivered
    for a, t in schema.INTRADAY.items():
        n, distinct, total = env.sql(
            f"SELECT COUNT(*), COUNT(DISTINCT (participant_id, ts)), SUM(value) FROM rural.{t.name}"
        )[0]
        assert n == distinct == sum(d.intraday_rows for d in kept if d.activity == a), a
        assert float(total) == pytest.approx(sum(d.intraday_value_sum for d in kept if d.activity == a)), a
    names = Names("rural", "postgres")
    with psycopg.connect(env.postgres_url) as con:  # rolled back on leaving
        con.execute("CREATE TEMPORARY TABLE _fitbit_winners (participant_id text, activity text, date date)")
        winners = [(p, a, dt.date(2024, 1, d)) for p in ids for a in schema.INTRADAY for d in (9, 10)]
        con.cursor().executemany("INSERT INTO _fitbit_winners VALUES (%s, %s, %s)", winners)
        con.execute("SET LOCAL enable_nestloop = off")  # the join of a large history
        for t in schema.INTRADAY.values():
            sql, params = names.delete_replaced(t, (dt.date(2024, 1, 9), dt.date(2024, 1, 10)))
            plan = "\n".join(r[0] for r in con.execute("EXPLAIN " + placeholders(sql, "%s"), params).fetchall())
            assert re.findall(rf"\b{t.name}_w\d+", plan) and set(re.findall(rf"\b{t.name}_w\d+", plan)) == {
                f"{t.name}_w20240108"
            }, plan
        con.rollback()


def test_an_unpartitioned_table_of_an_earlier_version_keeps_its_indexes_rebuilt_on_bulk(make_env, tmp_path) -> None:
    """Intraday tables an earlier version created unpartitioned keep working: into an empty table the rows are
    copied without its index, which is built once after; a copy smaller than the table goes through it."""
    env = make_env("e", "postgres")
    truth = generate(tmp_path / "all", participants=2, days=3, seed=8)
    last = max(d.date for d in truth.days).isoformat()
    _move_days(tmp_path / "all", env.source, {d.date.isoformat() for d in truth.days} - {last})
    with open_warehouse(env.target, "rural") as wh:
        create_unpartitioned_intraday(wh.execute)
        wh.ensure_schema()
    want = {name for t in schema.ALL_TABLES for name in Names("rural", "postgres").create_indexes(t)}
    made = _index_oids(env)
    assert set(made) == want
    assert env.run().status == "succeeded"
    first = _index_oids(env)
    assert set(first) == want
    assert first["intraday_steps__participant_id_date_ts_idx"] != made["intraday_steps__participant_id_date_ts_idx"]
    assert first["pipeline_files__source_file_idx"] == made["pipeline_files__source_file_idx"]  # not a data table
    _move_days(tmp_path / "all", env.source, {last})
    assert env.run().status == "succeeded"
    assert _index_oids(env) == first  # one new day into two: through the indexes
    assert env.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(2 * 3 * 1440,)]
    assert not _partitions(env, "intraday_steps")


def test_production_keys_are_indexed(postgres_db) -> None:
    url = postgres_db()
    t = schema.BY_NAME["intraday_heart"]
    with open_warehouse(url, "rural") as wh:
        assert isinstance(wh, PostgresWarehouse)
        wh.ensure_schema()
        wh.ensure_schema()  # idempotent
        row = {"participant_id": "P", "date": dt.date(2024, 3, 10), "ts": dt.datetime(2024, 3, 10), "value": 60.0}
        wh.insert_arrow(t, pa.Table.from_pylist([{**row, "source_file": "f", "run_id": "r"}], schema=t.schema))
        got = dict(wh.query("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'rural'"))
    assert (
        "intraday_heart_w20240304 USING btree (participant_id, date, ts)"
        in got["intraday_heart_w20240304__participant_id_date_ts_idx"]
    )
    assert "(participant_id, date)" in got["daily_steps__participant_id_date_idx"]
    assert "(participant_id, date)" in got["heart_rate_zones__participant_id_date_idx"]
    assert "(participant_id, activity, date)" in got["pipeline_deliveries__participant_id_activity_date_idx"]
    assert "(source_file)" in got["pipeline_files__source_file_idx"]


def _waiting_on_schema_lock(url: str, schema_name: str) -> int:
    key = lock_key(schema_name) & 0xFFFFFFFFFFFFFFFF
    with psycopg.connect(url) as con:
        return con.execute(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            [key >> 32, key & 0xFFFFFFFF],
        ).fetchone()[0]


def test_a_merge_waits_while_another_run_holds_the_schema(make_env) -> None:
    """Run A has loaded its staging; a merge from another connection waits until A is done."""
    env = make_env("e", "postgres")
    generate(env.source, participants=1, days=1, seed=8)
    first = open_warehouse(env.target, "rural")
    plan = pipeline.plan_run(str(env.source), str(env.lake), first)
    pipeline.transform_run(plan, workers=1)
    pipeline.load_staging(plan, first)  # A now holds the schema
    with open_warehouse(env.target + "?options=-c%20lock_timeout%3D5s", "rural") as reader:
        reader.ensure_schema()  # what `status` and the report do: never waits for a run
        assert reader.recent_runs(5).num_rows == 0
    second = open_warehouse(env.target, "rural")
    merged: list[object] = []
    worker = threading.Thread(target=lambda: merged.append(pipeline.merge_run(plan, second)))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while not _waiting_on_schema_lock(env.target, "rural") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _waiting_on_schema_lock(env.target, "rural") == 1
        assert worker.is_alive() and not merged
        assert env.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(0,)]
    finally:
        first.close()  # releases the schema: the waiting merge goes ahead
        worker.join(60)
        second.close()
    assert merged and env.sql("SELECT COUNT(*) FROM rural.intraday_steps") == [(1440,)]


_RUN = (
    "import os, sys\n"
    "from fitbit_pipeline import pipeline\n"
    "if __name__ == '__main__':\n"
    "    s = pipeline.run(sys.argv[1], sys.argv[2], os.environ['FITBIT_TEST_TARGET'], 'rural', workers=1)\n"
    "    print(s.status)\n"
)


def test_two_concurrent_runs_leave_production_identical_to_one_run(make_env, tmp_path) -> None:
    source = tmp_path / "input"
    generate(source, participants=3, days=2, seed=17)
    script = tmp_path / "run_once.py"
    script.write_text(_RUN)
    raced, single = make_env("raced", "postgres"), make_env("single", "postgres")
    raced.source_dir = single.source_dir = source
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(source), str(raced.lake)],
            env={**os.environ, "FITBIT_TEST_TARGET": raced.target},  # the URL stays off the command line
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outcomes]
    statuses = sorted(out.strip() for out, _ in outcomes)
    assert statuses in (["succeeded", "succeeded"], ["nothing-new", "succeeded"])
    assert single.run().status == "succeeded"
    assert _tables(raced) == _tables(single)
    assert raced.sql("SELECT COUNT(*), COUNT(DISTINCT source_file) FROM rural.pipeline_files") == [(36, 36)]


def test_warehouse_selection_and_masked_errors(postgres_server) -> None:
    assert warehouse_kind("data/warehouse.duckdb") == "duckdb"
    assert warehouse_kind("postgres://u@h/db") == warehouse_kind("postgresql://u@h/db") == "postgres"
    assert warehouse_kind("redshift") == warehouse_kind("redshift://u@h:5439/dev") == "redshift"
    with pytest.raises(ValueError, match="unsupported warehouse URL scheme"):
        open_warehouse("mysql://u:pw@h/db", "rural")
    server = urlsplit(postgres_server)
    bad = f"postgres://nobody:Sup3r%3Bs3cret@{server.hostname}:{server.port}/no_such_database"
    with pytest.raises(ConfigError) as info:
        open_warehouse(bad, "rural")
    message = str(info.value)
    assert "Sup3r" not in message and "s3cret" not in message and info.value.__cause__ is None
    assert f"postgres://nobody:***@{server.hostname}:{server.port}/no_such_database" in message
    assert mask_url("postgresql://u:p%40ss@h:5/db?sslmode=require&password=x") == (
        "postgresql://u:***@h:5/db?sslmode=require&password=***"
    )
