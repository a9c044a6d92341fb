"""A study of many weeks, simulated and run week by week (issue 16, part 4).

    python -m bench.study --participants 1000 --weeks 52 --second-hr 100 --maintain-every 4 --work /tmp/study
    python -m bench.study ... --maintain-every 0        # the reference: the same weeks without maintenance
    python -m bench.study ... --from-week 38            # continue the study in --work from week 38

Week ``k``'s export (week 0: days 0-6; week ``k >= 1``: days ``7k-2 .. 7k+6``, so each re-delivers the previous
export's last two days, as late syncs do) is generated into ``<work>/inbox`` while no run is going, then the
previous export is deleted: one export is on disk at a time, whatever the study's length (the ledger keeps what
was loaded). ``--second-hr N`` of the participants have second-level heart rate, the others minute-level.

Each run is ``fitbit-pipeline run`` in a child process whose whole process tree's RSS is sampled (the peak is
recorded); every ``--maintain-every`` weeks ``fitbit-pipeline maintain --snapshot-days 0`` follows (the weekly
runs of a real study are days apart: with the default 7-day retention its snapshots expire the same way). After
each week: files and snapshots per table; at each maintenance, the analysis query of :mod:`bench.tasks` (daily
steps and wear hours per participant for the whole history, on the DuckDB warehouse) before and after it.
Generation is not timed. Writes ``<work>/study.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time

import psutil

from bench.benchmark import MB, _become_subreaper, _reap, _tree_rss
from bench.tasks import _query_s

START = dt.date(2025, 1, 6)


def export_days(week: int) -> tuple[dt.date, int]:
    """The first day and the number of days of week ``week``'s export."""
    return (START, 7) if week == 0 else (START + dt.timedelta(days=7 * week - 2), 9)


def deliver(inbox: pathlib.Path, week: int, minute_ids: list[str], second_ids: list[str]) -> None:
    """Week ``week``'s export into ``inbox/week-<k>``, files dated at the end of its week."""
    from fitbit_pipeline.sample_data import generate

    folder = inbox / f"week-{week:03d}"
    first, days = export_days(week)
    for ids, seconds in ((minute_ids, False), (second_ids, True)):
        if ids:
            generate(folder, participant_ids=ids, days=days, start=first, hr_seconds=seconds, seed=1000 + week)
    stamp = time.mktime((first + dt.timedelta(days=days)).timetuple())
    for f in folder.rglob("*.json"):
        os.utime(f, (stamp, stamp))


PHASE = re.compile(r" fitbit_pipeline\.\w+: (?P<phase>.+?) done in (?P<s>[0-9.]+) s$", re.M)


def command(work: pathlib.Path, *args: str) -> tuple[float, int, str, dict[str, float]]:
    """``fitbit-pipeline -v ARGS`` in a child process: seconds, the peak RSS of its process tree, stdout, and the
    seconds of the phases it logged."""
    env = {
        **os.environ,
        "FITBIT_SOURCE": str(work / "inbox"),
        "FITBIT_LAKE": str(work / "lake"),
        "FITBIT_WAREHOUSE": str(work / "warehouse.duckdb"),
    }
    cmd = [sys.executable, "-c", "from fitbit_pipeline.cli import app; app()", "-v", *args]
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    out: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.append(child.stdout.read())),  # type: ignore[union-attr]
        threading.Thread(target=lambda: errors.append(child.stderr.read())),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()
    me = psutil.Process()  # the child and everything below it (the pool's fork server is re-parented to us)
    while child.poll() is None:
        peak = max(peak, _tree_rss(me)[0])
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    for reader in readers:
        reader.join()
    _reap()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({child.returncode}): {errors[0][-3000:]}")
    phases: dict[str, float] = {}
    for m in PHASE.finditer(errors[0]):
        name = m["phase"].split(" ")[0] if m["phase"].startswith("transform") else m["phase"]
        phases[name] = round(phases.get(name, 0.0) + float(m["s"]), 2)
    return seconds, peak, out[0], phases


def lake_state(work: pathlib.Path) -> dict[str, int]:
    from fitbit_pipeline.lake import Lake
    from fitbit_pipeline.lake.maintain import table_state

    lake = Lake(str(work / "lake"), "rural")
    states = [table_state(t) for t in lake.tables.values()]
    return {
        "data_files": sum(s.data_files for s in states),
        "snapshots": sum(s.snapshots for s in states),
        "stored_files": sum(s.stored_files for s in states),
        "data_mb": round(sum(s.data_bytes for s in states) / MB, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--participants", type=int, default=1000)
    p.add_argument("--weeks", type=int, default=52)
    p.add_argument("--second-hr", type=int, default=100, help="participants with second-level heart rate")
    p.add_argument("--maintain-every", type=int, default=4, help="weeks between maintenances (0: never)")
    p.add_argument("--work", type=pathlib.Path, required=True)
    p.add_argument("--from-week", type=int, default=0, help="continue the study already in --work from this week")
    a = p.parse_args()
    _become_subreaper()
    if not a.from_week:
        shutil.rmtree(a.work, ignore_errors=True)
    (a.work / "inbox").mkdir(parents=True, exist_ok=True)
    ids = [f"S{i:05d}" for i in range(a.participants)]
    second_ids, minute_ids = ids[: a.second_hr], ids[a.second_hr :]
    weeks: list[dict] = []
    started = time.perf_counter()
    for week in range(a.from_week, a.weeks):
        g0 = time.perf_counter()
        deliver(a.work / "inbox", week, minute_ids, second_ids)
        for old in sorted((a.work / "inbox").iterdir())[:-1]:
            shutil.rmtree(old)
        generated = time.perf_counter() - g0
        seconds, peak, out, phases = command(a.work, "run", "--json")
        summary = json.loads(out)
        record = {
            "week": week,
            "run_s": round(seconds, 2),
            "peak_mb": round(peak / MB),
            "rows": sum(v for k, v in summary.get("rows_by_table", {}).items() if k.startswith("intraday_")),
            "status": summary.get("status"),
            "generate_s": round(generated, 1),
            "phases": phases,
        }
        if a.maintain_every and (week + 1) % a.maintain_every == 0:
            warehouse = str(a.work / "warehouse.duckdb")
            record["query_before_s"] = round(_query_s(warehouse), 3)
            record["lake_before_maintain"] = lake_state(a.work)
            m_s, m_peak, _, _ = command(a.work, "maintain", "--snapshot-days", "0")
            record |= {"maintain_s": round(m_s, 2), "maintain_peak_mb": round(m_peak / MB)}
            record["query_after_s"] = round(_query_s(warehouse), 3)
        record["lake"] = lake_state(a.work)
        weeks.append(record)
        print(json.dumps(record), flush=True)
    wall = time.perf_counter() - started
    pipeline_s = sum(w["run_s"] + w.get("maintain_s", 0.0) for w in weeks)
    result = {
        "participants": a.participants,
        "second_hr": a.second_hr,
        "weeks": a.weeks,
        "from_week": a.from_week,
        "maintain_every": a.maintain_every,
        "weeks_detail": weeks,
        "pipeline_s": round(pipeline_s, 1),
        "wall_s": round(wall, 1),
        "participant_years_per_hour": round(a.participants * len(weeks) / 52 / (pipeline_s / 3600), 1),
        "peak_mb": max(max(w["peak_mb"], w.get("maintain_peak_mb", 0)) for w in weeks),
        "last_over_week_2": (
            round(weeks[-1]["run_s"] / weeks[1]["run_s"], 2) if len(weeks) > 2 and not a.from_week else None
        ),
        "final_query_s": round(_query_s(str(a.work / "warehouse.duckdb")), 3),
    }
    (a.work / "study.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "weeks_detail"}, indent=2))


if __name__ == "__main__":
    main()
