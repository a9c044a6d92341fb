"""AWS Glue job script: stage one activity of a planned run with the Spark engine.

One generic script for the six jobs ``{GLUE_JOB_PREFIX}_{activity}_processor`` that
``fitbit-pipeline glue deploy`` creates (it uploads this file as ``fitbit_pipeline/glue_job.py``
and the package wheel, installed with ``--additional-python-modules``). The Airflow DAG passes
``--activity_type --source_bucket --source_prefix --dest_bucket --dest_prefix --run_id``; the
run's :class:`~fitbit_pipeline.pipeline.Plan` (saved by ``detect_new_files``) is loaded from the
lake ``s3://<dest_bucket>/<dest_prefix>`` and that activity's documents are staged exactly as
``orchestration.process_activity`` stages them locally (a retry replaces the parts it wrote).

With ``awsglue`` importable (on Glue) it uses ``getResolvedOptions``, ``GlueContext`` and ``Job``;
without it (a laptop, CI, EMR) plain PySpark and argparse, so the same script runs locally::

    python -m fitbit_pipeline.glue_job --activity_type heart --run_id <run> --lake data/lake

Optional: ``--lake`` (a lake folder or URI instead of the buckets), ``--fitbit_ranges`` and
``--fitbit_tolerances`` (JSON threshold overrides, as the settings of the same names).

The job only stages: it writes Parquet, never the Iceberg tables. The commit (``pipeline.merge_run``) runs
in the DAG's ``merge_production`` task, on the driver side, through pyiceberg, so no Iceberg jars are needed
on Glue. The tables it commits live in the catalog the settings name (``FITBIT_ICEBERG_CATALOG=glue``: the
Glue Data Catalog, database = the schema, e.g. ``rural``), where Glue 5 Spark jobs (``glue_catalog``),
Athena (``SELECT * FROM rural.intraday_heart``) and Redshift (``CREATE EXTERNAL SCHEMA ... FROM DATA
CATALOG DATABASE 'rural'``) read them as Iceberg tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from fitbit_pipeline import pipeline
from fitbit_pipeline.activities import BY_NAME
from fitbit_pipeline.pipeline import Plan
from fitbit_pipeline.settings import Settings

log = logging.getLogger("fitbit_pipeline.glue_job")

REQUIRED = ("activity_type", "run_id")
BUCKETS = ("source_bucket", "source_prefix", "dest_bucket", "dest_prefix")
OPTIONAL = ("lake", "fitbit_ranges", "fitbit_tolerances")


def parse_args(argv: list[str]) -> dict[str, str]:
    """Job arguments (``argv`` as ``sys.argv``, program name first): Glue's resolver when present."""
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        parser = argparse.ArgumentParser(prog="glue_job", description=__doc__.split("\n\n")[0])
        for name in REQUIRED:
            parser.add_argument(f"--{name}", required=True)
        for name in (*BUCKETS, *OPTIONAL, "JOB_NAME"):
            parser.add_argument(f"--{name}", default="")
        args, _ = parser.parse_known_args(argv[1:])  # Glue adds its own arguments (--job-bookmark-option, ...)
        return vars(args)
    # getResolvedOptions requires every name it is given: ask only for the optional ones present.
    present = [n for n in (*BUCKETS, *OPTIONAL) if f"--{n}" in argv]
    return {n: "" for n in (*BUCKETS, *OPTIONAL)} | getResolvedOptions(argv, ["JOB_NAME", *REQUIRED, *present])


def settings_for(args: dict[str, str]) -> Settings:
    """The job's settings: the environment, overridden by the job arguments."""
    overrides: dict[str, Any] = {f"fitbit_{k}": args[k] for k in BUCKETS if args.get(k)}
    for key in ("fitbit_ranges", "fitbit_tolerances"):
        if args.get(key):
            overrides[key] = json.loads(args[key])
    return Settings(**overrides)


def lake_uri(args: dict[str, str], s: Settings) -> str:
    if args.get("lake"):
        return args["lake"]
    if not s.fitbit_dest_bucket:
        raise SystemExit("glue_job: give --dest_bucket (and --dest_prefix), or --lake for a local run")
    return s.lake_uri()


def _start(args: dict[str, str]) -> Any:
    """Start (or join) the Spark session the engine then uses; the Glue job to commit, None without awsglue."""
    try:
        from awsglue.context import GlueContext
        from awsglue.job import Job
    except ImportError:
        from fitbit_pipeline.spark_engine import session

        session()
        return None
    from pyspark import SparkContext

    job = Job(GlueContext(SparkContext.getOrCreate()))
    job.init(args.get("JOB_NAME") or "fitbit_pipeline", args)
    return job


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Stage the activity; returns (and prints as JSON) the counts, never measured values."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv if argv is None else ["glue_job", *argv])
    s = settings_for(args)
    lake = lake_uri(args, s)
    activity, run_id = args["activity_type"], args["run_id"]
    if activity not in BY_NAME:
        raise SystemExit(f"glue_job: unknown --activity_type {activity!r}; known: {', '.join(BY_NAME)}")
    plan = Plan.load(lake, run_id)
    if args.get("source_bucket") and plan.source != s.source_uri():
        log.warning("run %s was planned on %s, not %s: staging its plan", run_id, plan.source, s.source_uri())
    job = _start(args)
    docs = len(plan.groups.get(activity, []))
    log.info("run %s: staging %d %s documents from the plan in %s", run_id, docs, activity, lake)
    result = pipeline.transform_run(plan, [activity], limits=s.limits(), engine="spark", zones=s.zone_map())
    summary = {
        "run_id": run_id,
        "activity": activity,
        "files": result.files,
        "statuses": dict(result.statuses),
        "rows": dict(result.rows),
        "rules": dict(result.rules),
    }
    print(json.dumps(summary))
    if job is not None:
        job.commit()
    return summary


if __name__ == "__main__":
    main()
