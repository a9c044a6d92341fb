"""The Spark engine: the transform's chunks as Spark tasks (AWS Glue, EMR, Databricks or local mode).

Spark replaces the local process pool and nothing else. The driver chunks the documents exactly
as the local engine does (:func:`transform.chunked`: contiguous, bounded in bytes and documents,
zip members together); each chunk becomes one partition of an RDD, and each executor runs the
very same :func:`transform.process_chunk`: it reads its documents (zip members with range reads
through :class:`sources.Reader`, the archive never unzipped on the driver), parses and validates
them with the one rule set, writes that chunk's staging Parquet parts and quarantined bytes, and
returns a small :class:`ChunkResult` that the driver adds up. Same parts, same schema, same
rejects, same ledger rows.

What travels to the executors: the chunk id, the chunk's :class:`SourceDoc` list and the
:class:`RunContext` (frozen dataclasses, pickled by value) and a reference to a function of this
module (pickled by name: the package must be importable on the executors; local mode shares the
driver's interpreter, Glue installs the package wheel with ``--additional-python-modules``).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from pyspark import RDD, SparkContext
from pyspark.sql import SparkSession

from .sources import SourceDoc
from .transform import ChunkResult, RunContext, chunked, process_chunk

log = logging.getLogger(__name__)

# Local mode (tests, one big machine): no UI, no network beyond loopback, few shuffle partitions
# (the engine shuffles nothing), quiet logs.
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.python.worker.reuse": "true",
}
_POLL_S = 0.25


def local_session(master: str = "local[*]", app_name: str = "fitbit-pipeline") -> SparkSession:
    """A local-mode session whose Python workers run this interpreter (so they import this package)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in LOCAL_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its connection chatter, even at interpreter exit
    return spark


def session(workers: int = 0) -> SparkSession:
    """The running session (Glue's, a notebook's, a test's), else a new ``local[workers or *]`` one."""
    if SparkContext._active_spark_context is not None:
        return SparkSession.builder.getOrCreate()
    return local_session(f"local[{workers or '*'}]")


def _run_chunk(ctx: RunContext, job: tuple[str, list[SourceDoc]], progress: Any = None) -> ChunkResult:
    """On an executor: the local engine's chunk worker, unchanged (``progress``: an accumulator of files)."""
    chunk_id, docs = job
    result = process_chunk(chunk_id, docs, ctx)
    if progress is not None:
        progress.add(result.files)
    return result


def transform(
    docs: Sequence[SourceDoc],
    ctx: RunContext,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    part_prefix: str = "",
    *,
    spark: SparkSession | None = None,
) -> ChunkResult:
    """Stage ``docs`` on Spark; the same contract as :func:`transform.transform`.

    ``workers`` sizes the chunks (default: the session's default parallelism, i.e. its total
    executor cores); with no running session a ``local[workers or *]`` one is started.
    """
    spark = spark or session(workers or 0)
    sc = spark.sparkContext
    chunks = chunked(docs, workers or sc.defaultParallelism)
    total = ChunkResult()
    if not chunks:
        return total
    jobs = [(f"{part_prefix}{i:05d}", chunk) for i, chunk in enumerate(chunks)]
    log.info("spark: %d documents in %d chunks on %d cores", len(docs), len(jobs), sc.defaultParallelism)
    rdd = sc.parallelize(jobs, len(jobs))  # one chunk per partition, so one chunk per task
    if on_progress is None:
        results = rdd.map(partial(_run_chunk, ctx)).collect()
    else:
        results = _collect_with_progress(sc, rdd, ctx, on_progress)
    for result in results:
        total.add(result)
    return total


def _collect_with_progress(
    sc: SparkContext, rdd: RDD, ctx: RunContext, on_progress: Callable[[int], None]
) -> list[ChunkResult]:
    """Run the job in a thread; report files done (an accumulator, updated as tasks finish)."""
    progress = sc.accumulator(0)
    mapped = rdd.map(partial(_run_chunk, ctx, progress=progress))
    group = f"fitbit-transform-{uuid.uuid4().hex[:8]}"

    def collect() -> list[ChunkResult]:
        sc.setJobGroup(group, "fitbit-pipeline transform", interruptOnCancel=True)
        return mapped.collect()

    reported = 0
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(collect)
        try:
            while True:
                try:
                    results = future.result(timeout=_POLL_S)
                    break
                except concurrent.futures.TimeoutError:
                    pass
                done = progress.value
                if done > reported:
                    on_progress(done - reported)
                    reported = done
        except BaseException:
            sc.cancelJobGroup(group)
            raise
    files = sum(r.files for r in results)
    if files > reported:
        on_progress(files - reported)
    return results
