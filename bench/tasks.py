"""One measured task, run in its own process by :mod:`bench.benchmark`.

``python -m bench.tasks TASK --source DIR --work DIR`` does one thing, times only that thing (imports
and set-up excluded) and prints one line ``BENCH_RESULT {json}`` with the seconds and row counts.

Tasks:

- ``run``: the project's whole run (``pipeline.run``) into a fresh lake and DuckDB warehouse (with
  ``--postgres URL``: a fresh database on that PostgreSQL server); ``--again`` first does a run, then times a
  second one (an incremental run with nothing new).
- ``transform``: listing plus the transform stage alone (JSON -> validated staging Parquet).
- ``duckdb``: the reference, DuckDB's ``read_json`` + ``UNNEST`` -> Parquet, one file per activity.
- ``pg-copy``: the PostgreSQL load floor (``--postgres URL``). Untimed, the DuckDB reference writes the
  intraday rows as Parquet; then timed, each activity's rows go through one bulk load into an unlogged table
  without indexes, in a fresh database (its peak memory includes the untimed DuckDB step): CSV through
  plain ``COPY ... FROM STDIN (FORMAT csv)``, or with ``--variant binary|adbc`` Arrow as binary ``COPY``
  (encoded by pgpq and sent by psycopg, or through ADBC);
  ``--indexed`` loads logged tables with the production key's index instead.
- ``naive``: per-file ``json.load``, a dict per row with ``datetime.strptime``, pandas, Parquet.
- ``spark``: the transform stage on the Spark engine (``spark_engine.transform``) in ``local[--workers]``; the
  session's start is reported as a phase, not timed.
- ``pyspark``: the plain PySpark reference on the same session settings: ``spark.read.json`` with the intraday
  schema, ``explode``, the participant from the file name, Parquet per activity (no validation, no rejects).
- ``weekly``: the source is a ``bench.weekly`` root. Untimed, the exports ``week-00`` .. of the history are
  loaded one run each (``--history N`` of them; 0 = an empty lake); then the next export (or ``--timed K``:
  ``week-K``, e.g. the last export into an empty lake, to compare the same export with and without the
  history) is timed, and, with ``--scattered``, the scattered re-delivery after it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import shutil
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fitbit_pipeline.transform import RunContext

ACTIVITIES = ("heart", "calories", "steps", "elevation", "distance", "floors")
# Intraday measures per activity, with their DuckDB types (as in fitbit_pipeline.activities).
MEASURES = {
    "heart": {"value": "INTEGER"},
    "calories": {"level": "INTEGER", "mets": "INTEGER", "value": "DOUBLE"},
    "steps": {"value": "INTEGER"},
    "elevation": {"value": "DOUBLE"},
    "distance": {"value": "DOUBLE"},
    "floors": {"value": "INTEGER"},
}
RUN_ID = "benchmark"


class _PhaseTimes(logging.Handler):
    """Collects the pipeline's own ``<phase> done in <s> s`` log lines."""

    pattern = re.compile(r"^(?P<phase>.+) done in (?P<s>[0-9.]+) s$")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.phases: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        m = self.pattern.match(record.getMessage())
        if m:
            phase = m["phase"].split(" ")[0] if m["phase"].startswith("transform") else m["phase"]
            self.phases[phase] = self.phases.get(phase, 0.0) + float(m["s"])


def fresh_database(server: str) -> str:
    """The URL of a new, empty database on the PostgreSQL server ``server`` (the tests' helper), after a
    ``CHECKPOINT``: the server writes out what earlier tasks left dirty before this one is timed, instead of
    during it (measured: a run after three load-floor tasks took 74 s to apply, on a fresh server 48 s)."""
    import psycopg

    from tests.pg_server import create_database

    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("CHECKPOINT")
    return create_database(server, "bench")[1]


def _timed_run(source: str, work: str, workers: int, expected: str = "succeeded", warehouse: str | None = None) -> dict:
    """One ``pipeline.run`` into ``work``'s lake and a warehouse (default a DuckDB file in ``work``), timed,
    with its phases and intraday rows."""
    from fitbit_pipeline import pipeline

    handler = _PhaseTimes()
    logger = logging.getLogger("fitbit_pipeline")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    lake = os.path.join(work, "lake")
    warehouse = warehouse or os.path.join(work, "warehouse.duckdb")
    try:
        t0 = time.perf_counter()
        summary = pipeline.run(source, lake, warehouse, "rural", workers=workers)
        seconds = time.perf_counter() - t0
    finally:
        logger.removeHandler(handler)
    assert summary.status == expected, (summary.status, summary.message)
    rows = sum(v for k, v in summary.rows_by_table.items() if k.startswith("intraday_"))
    return {"seconds": seconds, "rows": rows, "phases": handler.phases, "status": summary.status}


def task_run(source: str, work: str, workers: int, again: bool, postgres: str | None = None) -> dict:
    warehouse = fresh_database(postgres) if postgres else None
    if again:
        _timed_run(source, work, workers, warehouse=warehouse)
    return _timed_run(source, work, workers, "nothing-new" if again else "succeeded", warehouse)


def _linked(source_root: str, folder: str, into: str) -> None:
    """Deliver one export: its folder appears in the run's source (hard links: no copy of the bytes)."""
    shutil.copytree(os.path.join(source_root, folder), os.path.join(into, folder), copy_function=os.link)


def task_weekly(
    source: str,
    work: str,
    workers: int,
    history: int,
    scattered: bool,
    postgres: str | None = None,
    timed: int | None = None,
) -> dict:
    inbox = os.path.join(work, "source")
    os.makedirs(inbox)
    warehouse = fresh_database(postgres) if postgres else None
    loads = []
    for week in range(history):
        _linked(source, f"week-{week:02d}", inbox)
        loads.append(round(_timed_run(inbox, work, workers, warehouse=warehouse)["seconds"], 2))
    _linked(source, f"week-{history if timed is None else timed:02d}", inbox)
    out = _timed_run(inbox, work, workers, warehouse=warehouse)
    out["history_loads_s"] = loads
    if scattered:
        _linked(source, "scattered", inbox)
        again = _timed_run(inbox, work, workers, warehouse=warehouse)
        out |= {"scattered_s": again["seconds"], "scattered_phases": again["phases"], "scattered_rows": again["rows"]}
    return out


_QUERY = (  # an analysis over the whole history: daily steps and wear hours per participant
    "SELECT s.participant_id, s.date, SUM(s.value) AS steps, ANY_VALUE(w.hours_with_data) AS wear_hours "
    "FROM rural.intraday_steps s LEFT JOIN rural.daily_wear w USING (participant_id, date) GROUP BY ALL"
)


def _query_s(warehouse: str) -> float:
    import duckdb

    con = duckdb.connect(warehouse, read_only=True)
    try:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            con.execute(_QUERY).fetchall()
            best = min(best, time.perf_counter() - t0)
        return best
    finally:
        con.close()


def task_maintain(source: str, work: str, workers: int, history: int, skip: bool = False) -> dict:
    """``history`` weekly exports and the scattered re-delivery loaded (many small files, a snapshot per run),
    then ``maintain`` timed (every snapshot but the current expired), with the lake before and after, the
    analysis query before and after, and the next weekly run after it (``skip``: the same without maintenance,
    the reference)."""
    from fitbit_pipeline.lake.maintain import Retention
    from fitbit_pipeline.maintenance import maintain

    inbox = os.path.join(work, "source")
    os.makedirs(inbox)
    lake, warehouse = os.path.join(work, "lake"), os.path.join(work, "warehouse.duckdb")
    for week in range(history):
        _linked(source, f"week-{week:02d}", inbox)
        _timed_run(inbox, work, workers)
    _linked(source, "scattered", inbox)
    _timed_run(inbox, work, workers)
    query_before = _query_s(warehouse)
    t0 = time.perf_counter()
    report = maintain(
        lake,
        warehouse,
        retention=Retention(snapshot_days=0 if not skip else 36500, compact_target_bytes=0 if skip else 64 << 20),
    )
    seconds = time.perf_counter() - t0
    query_after = _query_s(warehouse)
    _linked(source, f"week-{history:02d}", inbox)
    after = _timed_run(inbox, work, workers)

    def total(states: dict, key: str) -> int:
        return sum(getattr(v, key) for v in states.values())

    keys = ("data_files", "data_bytes", "snapshots", "stored_files")
    return {
        "seconds": seconds,
        "before": {k: total(report.before, k) for k in keys},
        "after": {k: total(report.after, k) for k in keys},
        "compacted_files": sum(report.compacted.values()),
        "query_before_s": query_before,
        "query_after_s": query_after,
        "next_week_s": after["seconds"],
        "rows": 0,
    }


def _context(work: str, zone: str | None = None) -> RunContext:
    """The transform's context of a benchmark run: staging and quarantine under ``work``."""
    from fitbit_pipeline.timezones import ZoneMap
    from fitbit_pipeline.transform import RunContext

    return RunContext(
        run_id=RUN_ID,
        run_date=dt.date.today(),
        staging_uri=os.path.join(work, "staging"),
        quarantine_uri=os.path.join(work, "quarantine"),
        processed_at=dt.datetime.now(),
        zones=ZoneMap(default=zone) if zone else None,
    )


def task_transform(source: str, work: str, workers: int, zone: str | None = None) -> dict:
    from fitbit_pipeline.sources import list_documents
    from fitbit_pipeline.transform import transform

    ctx = _context(work, zone)
    staging = ctx.staging_uri
    t0 = time.perf_counter()
    docs = list_documents(source).docs
    listed = time.perf_counter() - t0
    result = transform(docs, ctx, workers=workers)
    seconds = time.perf_counter() - t0
    assert result.statuses.get("rejected", 0) == 0, result.statuses
    intraday = _parquet_rows(staging, "intraday_*")
    return {"seconds": seconds, "rows": intraday, "phases": {"list": listed, "transform": seconds - listed}}


def _spark_session(cores: int) -> tuple[object, dict[str, float]]:
    """A ``local[cores]`` session, as the engine starts one, and the seconds it took to start."""
    from fitbit_pipeline.spark_engine import local_session

    t0 = time.perf_counter()
    spark = local_session(f"local[{cores}]", "fitbit-bench")
    spark.range(1).count()  # the first job: the executor side is up before the clock starts
    return spark, {"session start": time.perf_counter() - t0}


def task_spark(source: str, work: str, workers: int) -> dict:
    """The project's transform stage with its Spark engine (the same chunks, parser and rules)."""
    from fitbit_pipeline import spark_engine
    from fitbit_pipeline.sources import list_documents

    spark, phases = _spark_session(workers)
    ctx = _context(work)
    staging = ctx.staging_uri
    t0 = time.perf_counter()
    docs = list_documents(source).docs
    listed = time.perf_counter() - t0
    result = spark_engine.transform(docs, ctx, workers, spark=spark)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    assert result.statuses.get("rejected", 0) == 0, result.statuses
    spark.stop()  # type: ignore[attr-defined]
    phases |= {"list": listed, "transform": seconds - listed}
    return {"seconds": seconds, "rows": _parquet_rows(staging, "intraday_*"), "phases": phases}


def task_pyspark(source: str, work: str, workers: int) -> dict:
    """What a team would write in plain PySpark: read the JSON with a schema, explode, write Parquet."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    spark, phases = _spark_session(workers)
    kinds = {"INTEGER": T.IntegerType(), "DOUBLE": T.DoubleType()}
    out = os.path.join(work, "pyspark")
    t0 = time.perf_counter()
    for activity in ACTIVITIES:
        row = T.StructType(
            [T.StructField("time", T.StringType())]
            + [T.StructField(m, kinds[t]) for m, t in MEASURES[activity].items()]
        )
        schema = T.StructType(
            [
                T.StructField(
                    f"activities-{activity}", T.ArrayType(T.StructType([T.StructField("dateTime", T.StringType())]))
                ),
                T.StructField(
                    f"activities-{activity}-intraday", T.StructType([T.StructField("dataset", T.ArrayType(row))])
                ),
            ]
        )
        files = f"{source}/*/*/{activity}.json"  # the by-participant-and-date layout
        day = F.col(f"`activities-{activity}`")[0]["dateTime"]
        frame = (
            spark.read.schema(schema)  # type: ignore[attr-defined]
            .json(files)
            .select(
                F.regexp_extract(F.input_file_name(), r"([^/]+)/[^/]+/[^/]+$", 1).alias("participant_id"),
                F.to_date(day).alias("date"),
                day.alias("day"),
                F.explode(F.col(f"`activities-{activity}-intraday`.dataset")).alias("r"),
                F.input_file_name().alias("source_file"),
            )
            .select(
                "participant_id",
                "date",
                F.to_timestamp_ntz(F.concat_ws(" ", "day", "r.time")).alias("ts"),
                *(F.col(f"r.{m}").alias(m) for m in MEASURES[activity]),
                "source_file",
                F.lit(RUN_ID).alias("run_id"),
            )
        )
        frame.write.mode("overwrite").parquet(os.path.join(out, f"intraday_{activity}"))
    seconds = time.perf_counter() - t0
    spark.stop()  # type: ignore[attr-defined]
    return {"seconds": seconds, "rows": _parquet_rows(out, "intraday_*"), "phases": phases}


def _parquet_rows(root: str, pattern: str) -> int:
    import duckdb

    return int(duckdb.sql(f"SELECT COUNT(*) FROM read_parquet('{root}/{pattern}/*.parquet')").fetchall()[0][0])


def duckdb_sql(source: str, out: str, activity: str) -> str:
    """DuckDB reads the files of one activity and writes the project's intraday columns to Parquet."""
    measures = MEASURES[activity]
    row = 'STRUCT("time" VARCHAR, ' + ", ".join(f'"{m}" {t}' for m, t in measures.items()) + ")"
    columns = {
        f"activities-{activity}": 'STRUCT("dateTime" VARCHAR)[]',
        f"activities-{activity}-intraday": f"STRUCT(dataset {row}[])",
    }
    spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
    files = f"{source}/*/*/{activity}.json"  # the by-participant-and-date layout
    values = ", ".join(f'r."{m}" AS "{m}"' for m in measures)
    return (
        "COPY (SELECT regexp_extract(filename, '([^/]+)/[^/]+/[^/]+$', 1) AS participant_id, d AS date, "
        f"d + CAST(r.\"time\" AS TIME) AS ts, {values}, filename AS source_file, '{RUN_ID}' AS run_id "
        f'FROM (SELECT filename, CAST("activities-{activity}"[1]."dateTime" AS DATE) AS d, '
        f'unnest("activities-{activity}-intraday".dataset) AS r '
        f"FROM read_json('{files}', columns = {spec}, format = 'newline_delimited', filename = true, "
        "maximum_object_size = 268435456))) "
        f"TO '{out}/intraday_{activity}.parquet' (FORMAT parquet, COMPRESSION zstd)"
    )


def task_duckdb(source: str, work: str, workers: int) -> dict:
    """All cores: ``threads`` = the core count, and the six activities shared by two cursors."""
    import duckdb

    out = os.path.join(work, "duckdb")
    os.makedirs(out, exist_ok=True)
    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": "false",
            "autoload_known_extensions": "false",
            "threads": os.cpu_count() or 1,
            "preserve_insertion_order": "false",
        }
    )
    todo = list(ACTIVITIES)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        cur = con.cursor()
        while True:
            with lock:
                if not todo:
                    return
                activity = todo.pop(0)
            try:
                cur.execute(duckdb_sql(source, out, activity))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)
                return

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    rows = int(con.sql(f"SELECT COUNT(*) FROM read_parquet('{out}/*.parquet')").fetchall()[0][0])
    return {"seconds": seconds, "rows": rows}


def task_pg_copy(
    source: str, work: str, workers: int, postgres: str, variant: str = "csv", indexed: bool = False
) -> dict:
    """The load floor: the same intraday rows through one bulk load per activity into a fresh database.

    ``variant`` ``csv``: pyarrow writes CSV, psycopg sends it through ``COPY ... FROM STDIN (FORMAT csv)``
    (the issue's floor); ``binary``: ``pgpq`` encodes the Arrow batches as binary ``COPY`` sent by psycopg
    (what the warehouse does); ``adbc``: ADBC's PostgreSQL driver sends them as binary ``COPY``
    (``adbc_ingest``). Unlogged tables without indexes, or with ``indexed`` logged tables with the production
    key's index (participant, date, time), as the production tables are.
    """
    import io

    import pgpq
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    task_duckdb(source, work, workers)  # untimed: the rows, as Parquet
    url = fresh_database(postgres)
    types = {"INTEGER": "integer", "DOUBLE": "double precision"}
    parquet = {a: os.path.join(work, "duckdb", f"intraday_{a}.parquet") for a in MEASURES}
    with psycopg.connect(url, autocommit=True) as con:
        for activity, measures in MEASURES.items():
            table = f"intraday_{activity}"
            values = ", ".join(f'"{m}" {types[t]}' for m, t in measures.items())
            con.execute(
                f'CREATE {"" if indexed else "UNLOGGED "}TABLE "{table}" (participant_id text, date date, '
                f"ts timestamp, {values}, source_file text, run_id text)"
            )
            if indexed:
                con.execute(f'CREATE INDEX ON "{table}" (participant_id, date, ts)')
    rows = 0
    t0 = time.perf_counter()
    if variant == "adbc":
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(url) as con, con.cursor() as cur:
            for activity, path in parquet.items():
                pf = pq.ParquetFile(path)
                rows += pf.metadata.num_rows
                # A reader streams (a plain iterator of batches would be collected into one table first).
                batches = pa.RecordBatchReader.from_batches(pf.schema_arrow, pf.iter_batches(batch_size=1 << 16))
                cur.adbc_ingest(f"intraday_{activity}", batches, mode="append")
            con.commit()
    else:
        with psycopg.connect(url, autocommit=True) as con:
            for activity, path in parquet.items():
                pf = pq.ParquetFile(path)
                encoder = pgpq.ArrowToPostgresBinaryEncoder(pf.schema_arrow)
                copy_sql = f'COPY "intraday_{activity}" FROM STDIN (FORMAT {variant})'
                with con.cursor() as cur, cur.copy(copy_sql) as copy:
                    if variant == "binary":
                        copy.write(encoder.write_header())
                    for batch in pf.iter_batches(batch_size=1 << 16):
                        if variant == "binary":
                            copy.write(encoder.write_batch(batch))
                        else:  # strings quoted, nulls unquoted-empty (COPY's CSV NULL)
                            buf = io.BytesIO()
                            pcsv.write_csv(batch, buf, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
                            copy.write(buf.getvalue())
                        rows += batch.num_rows
                    if variant == "binary":
                        copy.write(encoder.finish())
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": rows}


def task_naive(source: str, work: str, workers: int) -> dict:
    """What a typical hand-written Glue/pandas script does: everything per row, in Python objects."""
    import glob
    from datetime import datetime

    import pandas as pd

    out = os.path.join(work, "naive")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    rows: dict[str, list[dict]] = {a: [] for a in ACTIVITIES}
    for path in sorted(glob.glob(os.path.join(source, "*", "*", "*.json"))):
        activity = os.path.basename(path)[: -len(".json")]
        participant = path.split(os.sep)[-3]
        with open(path) as fh:
            doc = json.load(fh)
        day = doc[f"activities-{activity}"][0]["dateTime"]
        for r in doc[f"activities-{activity}-intraday"]["dataset"]:
            row = {
                "participant_id": participant,
                "date": datetime.strptime(day, "%Y-%m-%d").date(),
                "ts": datetime.strptime(f"{day} {r['time']}", "%Y-%m-%d %H:%M:%S"),
            }
            for m in MEASURES[activity]:
                row[m] = r[m]
            row["source_file"] = path
            row["run_id"] = RUN_ID
            rows[activity].append(row)
    total = 0
    for activity, items in rows.items():
        df = pd.DataFrame(items)
        total += len(df)
        df.to_parquet(os.path.join(out, f"intraday_{activity}.parquet"), compression="zstd", index=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": total}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "task", choices=["run", "transform", "duckdb", "pg-copy", "naive", "weekly", "maintain", "spark", "pyspark"]
    )
    p.add_argument("--source", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--again", action="store_true", help="run: time a second run with nothing new")
    p.add_argument("--history", type=int, default=0, help="weekly, maintain: exports loaded before the timed one")
    p.add_argument("--scattered", action="store_true", help="weekly: also time the scattered re-delivery")
    p.add_argument("--timed", type=int, help="weekly: the export timed (default: the one after the history)")
    p.add_argument("--variant", choices=["csv", "binary", "adbc"], default="csv", help="pg-copy: how the rows are sent")
    p.add_argument("--indexed", action="store_true", help="pg-copy: into logged tables with the key's index")
    p.add_argument(
        "--postgres", help="run, pg-copy, weekly: a PostgreSQL server URL (each task makes its own database)"
    )
    p.add_argument("--zone", help="transform: the participants' time zone (account exports)")
    p.add_argument("--no-maintain", action="store_true", help="maintain: nothing compacted or expired (reference)")
    a = p.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    source = os.path.abspath(a.source)
    if a.task == "run":
        result = task_run(source, a.work, a.workers, a.again, a.postgres)
    elif a.task == "pg-copy":
        server = a.postgres or p.error("pg-copy needs --postgres")
        result = task_pg_copy(source, a.work, a.workers, server, a.variant, a.indexed)
    elif a.task == "weekly":
        result = task_weekly(source, a.work, a.workers, a.history, a.scattered, a.postgres, a.timed)
    elif a.task == "maintain":
        result = task_maintain(source, a.work, a.workers, a.history or 8, a.no_maintain)
    elif a.task == "transform":
        result = task_transform(source, a.work, a.workers, a.zone)
    else:
        tasks = {"duckdb": task_duckdb, "naive": task_naive, "spark": task_spark, "pyspark": task_pyspark}
        result = tasks[a.task](source, a.work, a.workers)
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
