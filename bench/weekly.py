"""The weekly pattern of a running study, for the benchmark: exports that re-deliver the previous export's last
two days (late syncs), and a scattered re-delivery of 5 % of the participant-days of the whole history.

``weekly_dataset(participants, weeks)`` writes (once, cached) ``week-00`` .. ``week-<weeks>`` below one root:
week 0 holds days 0-6, week k (k >= 1) days 7k-2 .. 7k+6, all of the same participants, each export's files
newer than the previous export's; and ``scattered`` with 5 % of the participant-days of weeks 0..weeks-1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import random
import shutil
import time

START = dt.date(2024, 1, 1)


def _touch(folder: pathlib.Path, stamp: float) -> None:
    for f in folder.rglob("*.json"):
        os.utime(f, (stamp, stamp))


def weekly_dataset(cache: pathlib.Path, participants: int, weeks: int) -> tuple[pathlib.Path, dict]:
    from fitbit_pipeline.sample_data import generate

    root = cache / "data" / f"weekly-p{participants}-w{weeks}"
    marker = root / "dataset.json"
    if marker.exists():
        return root, json.loads(marker.read_text())
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    ids: list[str] | None = None
    stamp = 1_704_067_200.0
    for week in range(weeks + 1):
        first = START + dt.timedelta(days=0 if week == 0 else 7 * week - 2)
        days = 7 if week == 0 else 9
        folder = root / f"week-{week:02d}"
        print(f"generating {folder.name}: {participants} participants x {days} days from {first}", flush=True)
        kw = {"participant_ids": ids} if ids else {"participants": participants}
        truth = generate(folder, days=days, start=first, hr_seconds=True, seed=100 + week, **kw)
        ids = ids or sorted({d.participant_id for d in truth.days})
        rows = sum(d.intraday_rows for d in truth.days)
        _touch(folder, stamp + week * 7 * 86400)
    rng = random.Random(7)
    history = [(p, START + dt.timedelta(days=d)) for p in ids for d in range(7 * weeks)]
    scattered = rng.sample(history, k=max(1, len(history) // 20))
    folder = root / "scattered"
    for i, (p, day) in enumerate(sorted(scattered)):
        generate(folder, participant_ids=[p], days=1, start=day, hr_seconds=True, seed=1000 + i)
    _touch(folder, stamp + (weeks + 1) * 7 * 86400)
    info = {
        "participants": participants,
        "weeks": weeks,
        "scattered_participant_days": len(scattered),
        "bytes": sum(f.stat().st_size for f in (root / f"week-{weeks:02d}").rglob("*.json")),  # the timed export
        "rows": rows,
        "generated_in_s": round(time.perf_counter() - t0, 1),
    }
    marker.write_text(json.dumps(info))
    return root, info
