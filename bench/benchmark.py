"""The throughput benchmark: ``python -m bench.benchmark`` (or ``bash bench/run.sh``).

Generates (once, cached in ``bench/.cache/``) 100 participants x 7 days of all six activities with
heart rate at second detail, using the project's own sample-data generator, then measures on the same
files, each measurement in a fresh process:

- ``run``         the project's whole run into a fresh lake and DuckDB warehouse (``pipeline.run``);
- ``transform``   listing + the transform stage alone (JSON -> validated staging Parquet);
- ``duckdb``      the reference: DuckDB ``read_json`` + ``UNNEST`` -> Parquet, all cores;
- ``naive``       the naive reference: ``json.load``, a dict per row, ``strptime``, pandas, Parquet;
- ``incremental`` a second run over the same files (nothing new);
- the transform and the DuckDB reference again at 4x the data (400 participants);
- ``postgres`` (opt-in, ``--only duckdb,pg-copy,postgres``): the project's whole run into PostgreSQL (a
  throw-away server started here from ``/usr/lib/postgresql/*/bin`` as the tests start theirs: fsync off),
  next to its two floors: the transform floor (``duckdb``) and the load floor ``pg-copy`` (the same intraday
  rows as CSV through one plain ``COPY`` into unlogged tables without indexes). The server's own memory and
  CPU are not counted (it is not a descendant of the benchmark);
- ``pg-weekly`` (opt-in): the weekly measurement into PostgreSQL: the export into an empty lake and warehouse,
  then into both holding the history (issue 18: the cost must follow the new data).
- ``pg-variants`` (opt-in, with ``pg-copy``): the load floor's rows sent otherwise: as binary ``COPY`` encoded
  by pgpq (as the warehouse sends them) or through ADBC's PostgreSQL driver, and into logged tables with the
  production key's index;
- ``spark`` (opt-in, ``--only transform,spark``): the transform stage on the Spark engine and the plain PySpark
  reference (``read.json`` with a schema, ``explode``, Parquet), both in ``local[--workers]`` (the session's
  start is a phase, not timed), next to the local engine;
- ``google-health`` (opt-in, ``--only transform,google-health``): the transform of Google Health API v4
  documents (``--gh-participants`` x 7 days, second-level heart rate, from the project's seeded generator),
  its rows/s against the Web API documents' in the same run;
- ``fitabase`` and ``account-export`` (opt-in, ``--only transform,fitabase,account-export``): the transform of
  a Fitabase CSV export (``--fb-participants`` x 30 days in one export) and of Fitbit account exports
  (``--gh-participants`` x 30 days), both from the same seeded simulation, their rows/s against the Web API
  documents' in the same run (issue 15: at least the Web API path's per row).

For each: the median seconds over the repetitions, intraday rows/s, input MB/s, the peak RSS of the whole
process tree (the sum over the process and all its descendants, forkserver workers included, sampled every
10 ms with psutil; shared pages count once per process, so this overstates rather than understates) and the
CPU seconds of the tree. Numbers are printed as a Markdown table and saved as JSON in ``bench/.cache/``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import os
import pathlib
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import psutil

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
DAYS = 7
MB = 1e6

# Targets on this machine (2 cores), from the issue.
TARGET_TRANSFORM_VS_DUCKDB = 1.0
TARGET_RUN_VS_DUCKDB = 1.0
TARGET_WEEKLY_VS_EMPTY = 1.3
TARGET_COMMIT_APPLY_S = 1.0
TARGET_NAIVE_SPEEDUP = 25.0
TARGET_PEAK_1X_MB = 600
TARGET_PEAK_4X_MB = 700
TARGET_INCREMENTAL_S = 2.0
TARGET_EXPORT_VS_WEB_API = 1.0  # issue 15: Fitabase rows/s >= the Web API path's
AX_ZONE = "America/Chicago"
TARGET_POSTGRES_VS_FLOORS = 1.5  # issue 18: run into PostgreSQL <= 1.5 x (transform floor + load floor)


Build = Callable[[pathlib.Path], tuple[list[pathlib.Path], int]]  # a source folder -> its files, intraday rows


def _cached(name: str, what: str, build: Build) -> tuple[pathlib.Path, dict]:
    """The source folder ``CACHE/data/<name>/source``, generated once by ``build`` (its files and intraday
    rows); its description is kept next to it."""
    root = CACHE / "data" / name
    source, marker = root / "source", root / "dataset.json"
    if marker.exists():
        return source, json.loads(marker.read_text())
    print(f"generating {what} in {source} ...")
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    files, rows = build(source)
    info = {
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "rows": rows,
        "generated_in_s": round(time.perf_counter() - t0, 1),
    }
    marker.write_text(json.dumps(info))
    return source, info


def dataset(participants: int) -> tuple[pathlib.Path, dict]:
    """The cached source folder for ``participants`` x 7 days (generated on first use)."""

    def build(source: pathlib.Path) -> tuple[list[pathlib.Path], int]:
        from fitbit_pipeline.sample_data import generate

        truth = generate(source, participants=participants, days=DAYS, hr_seconds=True)
        return truth.files, sum(d.intraday_rows for d in truth.days)

    what = f"{participants} participants x {DAYS} days (second-level heart rate)"
    source, info = _cached(f"p{participants}-d{DAYS}-hrsec", what, build)
    return source, {"participants": participants, "days": DAYS, **info}


def gh_dataset(participants: int) -> tuple[pathlib.Path, dict]:
    """The cached Google Health source: ``participants`` x 7 days, every data type, heart rate every second."""

    def build(source: pathlib.Path) -> tuple[list[pathlib.Path], int]:
        import orjson

        from fitbit_pipeline.google_health.sample import generate

        ids = [f"GH{i:04d}" for i in range(participants)]
        files = generate(source, ids, dt.date(2026, 11, 2), DAYS, seed=42, hr_step=1)
        # Intraday points (the daily types and roll-ups are not intraday rows).
        rows = sum(len(orjson.loads(f.read_bytes())["dataPoints"]) for f in files if "daily" not in f.parent.name)
        return files, rows

    what = f"Google Health documents: {participants} participants x {DAYS} days"
    source, info = _cached(f"gh-p{participants}-d{DAYS}-hrsec", what, build)
    return source, {"participants": participants, "days": DAYS, **info}


def fb_dataset(participants: int, days: int = 30) -> tuple[pathlib.Path, dict]:
    """The cached Fitabase export: ``participants`` x ``days`` in one ``Fitabase Data …`` folder."""

    def build(source: pathlib.Path) -> tuple[list[pathlib.Path], int]:
        from fitbit_pipeline.sample_data import generate_fitabase

        folder, truth = generate_fitabase(source, participants=participants, days=days)
        rows = sum(t.intraday_rows for t in truth)
        return sorted(folder.glob("*.csv")), rows

    source, info = _cached(f"fb-p{participants}-d{days}", f"a Fitabase export: {participants} x {days} days", build)
    return source, {"participants": participants, "days": days, **info}


def ax_dataset(participants: int, days: int = 30) -> tuple[pathlib.Path, dict]:
    """The cached Fitbit account exports: ``participants`` x ``days``, times in UTC (zone ``AX_ZONE``)."""

    def build(source: pathlib.Path) -> tuple[list[pathlib.Path], int]:
        from fitbit_pipeline.sample_data import generate_account_export

        _, truth = generate_account_export(source, participants=participants, days=days, zone=AX_ZONE)
        return sorted(p for p in source.rglob("*.json")), sum(t.intraday_rows for t in truth)

    what = f"Fitbit account exports: {participants} x {days} days"
    source, info = _cached(f"ax-p{participants}-d{days}", what, build)
    return source, {"participants": participants, "days": days, **info}


def _become_subreaper() -> None:
    """Orphaned grandchildren (a pool's forkserver) are re-parented to us, so we reap and count them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _reap(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def _tree_rss(me: psutil.Process) -> tuple[int, int]:
    """(sum, largest) RSS over all our descendants."""
    total = largest = 0
    for p in me.children(recursive=True):
        try:
            rss = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total += rss
        largest = max(largest, rss)
    return total, largest


def measure(task: str, source: pathlib.Path, work: pathlib.Path, args: list[str], pythonpath: str | None) -> dict:
    """Run one task in a fresh process; its own timing plus the tree's peak RSS and CPU time."""
    env = dict(os.environ)
    paths = [str(ROOT)] + ([pythonpath] if pythonpath else [])
    env["PYTHONPATH"] = os.pathsep.join(paths[::-1] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, "-m", "bench.tasks", task, "--source", str(source), "--work", str(work), *args]
    work.parent.mkdir(parents=True, exist_ok=True)
    log_path = work.parent / f"{work.name}.log"
    me = psutil.Process()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_sum = peak_one = 0
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        while proc.poll() is None:
            total, largest = _tree_rss(me)
            peak_sum, peak_one = max(peak_sum, total), max(peak_one, largest)
            time.sleep(0.01)
    _reap()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = log_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{output[-3000:]}")
    line = next(x for x in output.splitlines()[::-1] if x.startswith("BENCH_RESULT "))
    result = json.loads(line[len("BENCH_RESULT ") :])
    result["peak_rss_mb"] = peak_sum / MB
    result["peak_rss_largest_process_mb"] = peak_one / MB
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def repeat(name: str, reps: int, task: str, source, work_root, args, pythonpath, fresh: bool = True) -> dict:
    results = []
    for i in range(reps):
        work = work_root / (f"{name}-{i}" if fresh else name)
        r = measure(task, source, work, args, pythonpath)
        print(
            f"  {name} #{i + 1}: {r['seconds']:.2f} s, peak {r['peak_rss_mb']:.0f} MB, cpu {r['cpu_s']:.1f} s"
            + (f", phases {_fmt_phases(r['phases'])}" if r.get("phases") else ""),
            flush=True,
        )
        results.append(r)
    return summarise(name, results)


def _fmt_phases(phases: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in phases.items())


def summarise(name: str, results: list[dict]) -> dict:
    phases: dict[str, float] = {}
    for key in results[0].get("phases", {}):
        phases[key] = statistics.median(r["phases"].get(key, 0.0) for r in results)
    return {
        "name": name,
        "reps": len(results),
        "seconds": statistics.median(r["seconds"] for r in results),
        "seconds_all": [round(r["seconds"], 3) for r in results],
        "rows": results[0]["rows"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "peak_rss_largest_process_mb": max(r["peak_rss_largest_process_mb"] for r in results),
        "cpu_s": statistics.median(r["cpu_s"] for r in results),
        "phases": phases,
        **{k: v for k, v in results[0].items() if k.startswith(("scattered", "history"))},
    }


def machine() -> dict:
    import duckdb
    import numpy
    import orjson
    import pyarrow

    try:
        import pandas

        pandas_version = pandas.__version__
    except ImportError:
        pandas_version = None
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), platform.processor())
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "orjson": orjson.__version__,
        "pandas": pandas_version,
        "load_average_at_start": os.getloadavg(),
    }


def table(rows: list[tuple[str, dict, dict]]) -> str:
    out = [
        "| measurement | data | reps | median s | rows/s | input MB/s | peak RSS tree MB | CPU s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r, data in rows:
        out.append(
            f"| {label} | {data['participants']} p, {data['bytes'] / MB:.0f} MB, {data['rows'] / 1e6:.1f} M rows "
            f"| {r['reps']} | {r['seconds']:.2f} | {r['rows'] / r['seconds'] / 1e6:.2f} M "
            f"| {data['bytes'] / MB / r['seconds']:.0f} | {r['peak_rss_mb']:.0f} | {r['cpu_s']:.1f} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--participants", type=int, default=100)
    p.add_argument("--scale", type=int, default=4, help="the larger run is this many times the data (0: skip)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--naive-reps", type=int, default=1, help="the naive reference is slow (~2 min a run)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--only", default="run,incremental,transform,duckdb,naive,scale,weekly")
    p.add_argument("--weeks", type=int, default=8, help="weekly: weeks already in the lake")
    p.add_argument("--gh-participants", type=int, default=5, help="google-health: participants of its dataset")
    p.add_argument("--fb-participants", type=int, default=30, help="fitabase: participants of its export")
    p.add_argument("--pythonpath", help="measure another copy of the package (e.g. a checkout of an older commit)")
    p.add_argument("--label", default="", help="a name for this result set (saved in the JSON file)")
    a = p.parse_args()
    only = set(a.only.split(","))
    with contextlib.ExitStack() as stack:
        # Started before we become a subreaper: the server is not our descendant, so not counted.
        postgres = (
            stack.enter_context(_postgres_server())
            if only & {"postgres", "pg-copy", "pg-variants", "pg-weekly"}
            else None
        )
        _become_subreaper()
        _measure_all(a, only, postgres)


@contextlib.contextmanager
def _postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL server (the tests' helper), stopped and removed afterwards."""
    from tests.pg_server import PostgresServer, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        raise SystemExit("postgres: no PostgreSQL server binaries (initdb, pg_ctl); install postgresql")
    server = PostgresServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


def _measure_all(a: argparse.Namespace, only: set[str], postgres: str | None) -> None:
    info = machine()
    print("machine:", json.dumps(info))
    source, data = dataset(a.participants)
    print(f"data: {json.dumps(data)}")
    work = CACHE / "work"
    results: dict[str, dict] = {}
    args = ["--workers", str(a.workers)]
    pp = a.pythonpath
    if "run" in only:
        results["run"] = repeat("run", a.reps, "run", source, work, args, pp)
        if "incremental" in only:
            results["incremental"] = repeat("run-0", a.reps, "run", source, work, [*args, "--again"], pp, False)
            results["incremental"]["name"] = "incremental"
    if "transform" in only:
        results["transform"] = repeat("transform", a.reps, "transform", source, work, args, pp)
    if "duckdb" in only:
        results["duckdb"] = repeat("duckdb", a.reps, "duckdb", source, work, args, pp)
    if "naive" in only:
        results["naive"] = repeat("naive", a.naive_reps, "naive", source, work, args, pp)
    if "spark" in only:  # the Spark engine and the plain PySpark reference, both on local[--workers]
        results["spark"] = repeat("spark", a.reps, "spark", source, work, args, pp)
        results["pyspark"] = repeat("pyspark", a.reps, "pyspark", source, work, args, pp)
    pg = [*args, "--postgres", postgres] if postgres else []
    if postgres and "pg-copy" in only:
        results["pg_copy"] = repeat("pg-copy", a.reps, "pg-copy", source, work, pg, pp)
    if postgres and "pg-variants" in only:  # what the load would cost sent otherwise, or into indexed tables
        for key, extra in (
            ("pg_copy_binary", ["--variant", "binary"]),
            ("pg_copy_adbc", ["--variant", "adbc"]),
            ("pg_copy_indexed", ["--indexed"]),
            ("pg_copy_binary_indexed", ["--variant", "binary", "--indexed"]),
            ("pg_copy_adbc_indexed", ["--variant", "adbc", "--indexed"]),
        ):
            results[key] = repeat(key.replace("_", "-"), a.reps, "pg-copy", source, work, [*pg, *extra], pp)
    if postgres and "postgres" in only:
        results["run_postgres"] = repeat("run-pg", a.reps, "run", source, work, pg, pp)
    big_data = None
    if "scale" in only and a.scale > 1:
        big_source, big_data = dataset(a.participants * a.scale)
        print(f"data x{a.scale}: {json.dumps(big_data)}")
        results["transform_scaled"] = repeat("transform-x", a.reps, "transform", big_source, work, args, pp)
        if "duckdb" in only:
            results["duckdb_scaled"] = repeat("duckdb-x", a.reps, "duckdb", big_source, work, args, pp)

    gh_data = None
    if "google-health" in only:
        gh_source, gh_data = gh_dataset(a.gh_participants)
        print(f"google health data: {json.dumps(gh_data)}")
        results["gh_transform"] = repeat("gh-transform", a.reps, "transform", gh_source, work, args, pp)

    exports: dict[str, dict] = {}
    if "fitabase" in only:
        fb_source, exports["fb_transform"] = fb_dataset(a.fb_participants)
        print(f"fitabase data: {json.dumps(exports['fb_transform'])}")
        results["fb_transform"] = repeat("fb-transform", a.reps, "transform", fb_source, work, args, pp)
    if "account-export" in only:
        ax_source, exports["ax_transform"] = ax_dataset(a.gh_participants)
        print(f"account export data: {json.dumps(exports['ax_transform'])}")
        ax_args = [*args, "--zone", AX_ZONE]
        results["ax_transform"] = repeat("ax-transform", a.reps, "transform", ax_source, work, ax_args, pp)

    weekly_data = None
    if only & {"weekly", "pg-weekly"}:
        from bench.weekly import weekly_dataset

        weekly_root, weekly_data = weekly_dataset(CACHE, a.participants, a.weeks)
        print(f"weekly data: {json.dumps(weekly_data)}")
        w = [*args, "--history", str(a.weeks)]
        same = ["--timed", str(a.weeks)]  # into an empty lake: the same export as the one timed after the history
    if "weekly" in only:
        results["weekly_empty"] = repeat(
            "weekly-empty", a.reps, "weekly", weekly_root, work, [*args, "--history", "0", *same], pp
        )
        results["weekly"] = repeat("weekly", 1, "weekly", weekly_root, work, [*w, "--scattered"], pp)
    if postgres and "pg-weekly" in only:  # the same weekly export into PostgreSQL, empty and with the history
        pgw = ["--postgres", postgres]
        results["weekly_empty_pg"] = repeat(
            "weekly-empty-pg", a.reps, "weekly", weekly_root, work, [*args, "--history", "0", *same, *pgw], pp
        )
        results["weekly_pg"] = repeat("weekly-pg", 1, "weekly", weekly_root, work, [*w, *pgw], pp)

    labels = {
        "run": "project `run` end to end (DuckDB warehouse)",
        "incremental": "project `run` again, nothing new",
        "transform": "project transform stage (list + transform)",
        "duckdb": "reference: DuckDB read_json + UNNEST -> Parquet",
        "naive": "naive reference: json + dict rows + pandas",
        "spark": f"project transform stage on the Spark engine, local[{a.workers}]",
        "pyspark": f"reference: plain PySpark read.json + explode -> Parquet, local[{a.workers}]",
        "transform_scaled": f"project transform stage, x{a.scale}",
        "duckdb_scaled": f"reference: DuckDB, x{a.scale}",
        "weekly_empty": "weekly export (9 days: 2 re-delivered) into an empty lake",
        "weekly": f"the same export into a lake holding {a.weeks} weeks",
        "weekly_empty_pg": "weekly export into an empty lake and PostgreSQL warehouse",
        "weekly_pg": f"the same export into a lake and PostgreSQL warehouse holding {a.weeks} weeks",
        "gh_transform": "project transform stage, Google Health API v4 documents",
        "fb_transform": "project transform stage, a Fitabase CSV export",
        "ax_transform": "project transform stage, Fitbit account exports",
        "pg_copy": "load floor: plain COPY (CSV) into unlogged PostgreSQL tables",
        "run_postgres": "project `run` end to end (PostgreSQL warehouse)",
        "pg_copy_binary": "the same rows as binary COPY (pgpq + psycopg, as the warehouse) into unlogged tables",
        "pg_copy_adbc": "the same rows through ADBC (Arrow, binary COPY) into unlogged tables",
        "pg_copy_indexed": "the same rows, plain COPY (CSV) into logged tables with the key's index",
        "pg_copy_binary_indexed": "the same rows as binary COPY (pgpq) into logged tables with the key's index",
        "pg_copy_adbc_indexed": "the same rows through ADBC into logged tables with the key's index",
    }
    rows = [
        (labels[k], r, big_data if k.endswith("_scaled") else weekly_data if k.startswith("weekly") else data)
        if not k.startswith(("gh_", "fb_", "ax_"))
        else (labels[k], r, gh_data if k.startswith("gh_") else exports[k])
        for k, r in results.items()
    ]
    print()
    print(table(rows))
    for k, r in results.items():
        if r.get("phases"):
            print(f"phases of {k} (median s): {_fmt_phases(r['phases'])}")
    ratios = {}
    if "duckdb" in results:
        ref = results["duckdb"]["seconds"]
        for k in ("transform", "run"):
            if k in results:
                ratios[f"{k} / duckdb"] = results[k]["seconds"] / ref
    if "run_postgres" in results and "duckdb" in results and "pg_copy" in results:
        floors = results["duckdb"]["seconds"] + results["pg_copy"]["seconds"]
        ratios["postgres run / (transform floor + load floor)"] = results["run_postgres"]["seconds"] / floors
    if "transform_scaled" in results and "duckdb_scaled" in results:
        ratios["transform x / duckdb x"] = results["transform_scaled"]["seconds"] / results["duckdb_scaled"]["seconds"]
    if "gh_transform" in results and "transform" in results:
        per_row = {k: results[k]["rows"] / results[k]["seconds"] for k in ("gh_transform", "transform")}
        ratios["google-health rows/s / web-api rows/s"] = per_row["gh_transform"] / per_row["transform"]
    for key, name in (("fb_transform", "fitabase"), ("ax_transform", "account-export")):
        if key in results and "transform" in results:
            mine, web = (results[k]["rows"] / results[k]["seconds"] for k in (key, "transform"))
            ratios[f"{name} rows/s / web-api rows/s"] = mine / web
    if "weekly" in results and "weekly_empty" in results:
        ratios["weekly into history / into empty"] = results["weekly"]["seconds"] / results["weekly_empty"]["seconds"]
        print(f"scattered re-delivery: {json.dumps({k: v for k, v in results['weekly'].items() if 'scattered' in k})}")
    if "weekly_pg" in results and "weekly_empty_pg" in results:
        pg_weekly = results["weekly_pg"]["seconds"] / results["weekly_empty_pg"]["seconds"]
        ratios["PostgreSQL weekly into history / into empty"] = pg_weekly
    for k in ("spark", "pyspark"):
        if k in results and "transform" in results:
            ratios[f"{k} / transform (local engine)"] = results[k]["seconds"] / results["transform"]["seconds"]
    if "spark" in results and "pyspark" in results:
        ratios["spark engine / plain pyspark"] = results["spark"]["seconds"] / results["pyspark"]["seconds"]
    if "naive" in results:
        for k in ("transform", "run"):
            if k in results:
                ratios[f"naive / {k}"] = results["naive"]["seconds"] / results[k]["seconds"]
    if "transform_scaled" in results and "transform" in results:
        ratios["transform time x / 1x"] = results["transform_scaled"]["seconds"] / results["transform"]["seconds"]
        ratios["transform peak x / 1x"] = (
            results["transform_scaled"]["peak_rss_mb"] / results["transform"]["peak_rss_mb"]
        )
    print()
    for k, v in ratios.items():
        print(f"ratio {k}: {v:.2f}")
    print()
    for name, ok in targets(results, ratios):
        print(f"{'MET ' if ok else 'MISS'}  {name}")
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"results-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    payload = {"label": a.label, "machine": info, "data": data, "data_scaled": big_data, "results": results}
    payload["ratios"] = ratios
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nsaved {out}")


def targets(results: dict, ratios: dict) -> list[tuple[str, bool]]:
    out = []
    if "transform / duckdb" in ratios:
        out.append((f"transform <= {TARGET_TRANSFORM_VS_DUCKDB} x DuckDB", ratios["transform / duckdb"] <= 1.0))
    if "run / duckdb" in ratios:
        out.append((f"run <= {TARGET_RUN_VS_DUCKDB} x DuckDB", ratios["run / duckdb"] <= TARGET_RUN_VS_DUCKDB))
    if "naive / transform" in ratios:
        speedup = ratios["naive / transform"]
        out.append((f"transform >= {TARGET_NAIVE_SPEEDUP:g} x faster than naive", speedup >= TARGET_NAIVE_SPEEDUP))
    peak_1x = max((results[k]["peak_rss_mb"] for k in ("run", "transform") if k in results), default=None)
    if peak_1x is not None:
        out.append((f"peak RSS at 1x <= {TARGET_PEAK_1X_MB} MB (run and transform)", peak_1x <= TARGET_PEAK_1X_MB))
    if "transform_scaled" in results:
        peak = results["transform_scaled"]["peak_rss_mb"]
        out.append((f"peak RSS at 4x <= {TARGET_PEAK_4X_MB} MB (transform)", peak <= TARGET_PEAK_4X_MB))
    if "weekly into history / into empty" in ratios:
        r = ratios["weekly into history / into empty"]
        label = f"weekly export into the history <= {TARGET_WEEKLY_VS_EMPTY:g} x into an empty lake"
        out.append((label, r <= TARGET_WEEKLY_VS_EMPTY))
    if "PostgreSQL weekly into history / into empty" in ratios:
        r = ratios["PostgreSQL weekly into history / into empty"]
        label = f"PostgreSQL: weekly export into the history <= {TARGET_WEEKLY_VS_EMPTY:g} x into an empty warehouse"
        out.append((label, r <= TARGET_WEEKLY_VS_EMPTY))
    if "run" in results and results["run"].get("phases"):
        ph = results["run"]["phases"]
        commit = ph.get("commit lake", 0.0) + ph.get("apply to warehouse", 0.0)
        out.append((f"commit + warehouse apply <= {TARGET_COMMIT_APPLY_S:g} s", commit <= TARGET_COMMIT_APPLY_S))
    if "postgres run / (transform floor + load floor)" in ratios:
        r = ratios["postgres run / (transform floor + load floor)"]
        label = f"run into PostgreSQL <= {TARGET_POSTGRES_VS_FLOORS:g} x (transform + load floor)"
        out.append((label, r <= TARGET_POSTGRES_VS_FLOORS))
    if "run_postgres" in results:
        peak = results["run_postgres"]["peak_rss_mb"]
        out.append((f"peak RSS of the PostgreSQL run <= {TARGET_PEAK_1X_MB} MB", peak <= TARGET_PEAK_1X_MB))
    if "fitabase rows/s / web-api rows/s" in ratios:
        r = ratios["fitabase rows/s / web-api rows/s"]
        out.append(
            (f"Fitabase rows/s >= {TARGET_EXPORT_VS_WEB_API:g} x the Web API path's", r >= TARGET_EXPORT_VS_WEB_API)
        )
    if "incremental" in results:
        inc = results["incremental"]["seconds"]
        out.append((f"incremental run with nothing new <= {TARGET_INCREMENTAL_S:g} s", inc <= TARGET_INCREMENTAL_S))
    return out


if __name__ == "__main__":
    main()
