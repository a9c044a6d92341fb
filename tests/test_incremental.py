"""Overlapping exports arriving in any order, one run per arrival, end exactly as all of them loaded at once: the
newest export wins each participant-day, whatever the order (including the order that crashed the old lake)."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pytest

from fitbit_pipeline.sample_data import generate

from .conftest import WAREHOUSES
from .test_crash_recovery import cli, state

IDS = ["RURAL-001", "RURAL-002"]
# (first day, last day) of each MyDataHelps export: the first one, then four newer overlapping ones.
EXPORTS = {
    "A": (dt.date(2024, 11, 1), dt.date(2024, 11, 7)),
    "B": (dt.date(2024, 11, 1), dt.date(2024, 11, 2)),
    "C": (dt.date(2024, 11, 6), dt.date(2024, 11, 12)),
    "D": (dt.date(2024, 11, 8), dt.date(2024, 11, 14)),
    "E": (dt.date(2024, 11, 9), dt.date(2024, 11, 15)),
}
ORDERS = {
    "the-reported-crash": ["A", "BCDE"],
    "oldest-first": ["A", "B", "C", "D", "E"],
    "newest-first": ["E", "D", "C", "B", "A"],
    "shuffled": ["C", "A", "E", "B", "D"],
    "all-at-once": ["ABCDE"],
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, os.PathLike]:
    folder = tmp_path_factory.mktemp("exports")
    out = {}
    for i, (name, (first, last)) in enumerate(EXPORTS.items()):
        truth = generate(folder / name, participant_ids=IDS, days=(last - first).days + 1, start=first, seed=60 + i,
                         layout="mydatahelps")  # fmt: skip
        (archive,) = truth.files
        stamp = dt.datetime.combine(last, dt.time()).timestamp()
        os.utime(archive, (stamp, stamp))
        out[name] = archive
    return out


@pytest.fixture(scope="module")
def outcome() -> dict:
    return {}


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
@pytest.mark.parametrize("order", list(ORDERS))
def test_overlapping_exports_in_any_order(make_env, exports, outcome, warehouse_kind, order) -> None:
    env = make_env(order)
    for arrival in ORDERS[order]:
        for name in arrival:
            shutil.copy2(exports[name], env.source / os.path.basename(exports[name]))
        result = cli(env, "run")
        assert result.returncode == 0, result.stderr[-3000:]
    assert cli(env, "verify").returncode == 0
    got = state(env)
    # every participant-day of the 15 days once, from the newest export that holds it
    days = {r[1] for r in got[1]["intraday_steps"]}
    assert len(days) == 15 and len(got[1]["intraday_steps"]) == 15 * 1440 * len(IDS)
    # Lake, data tables, deliveries, wear and the loaded files are the same whatever the order; whether a losing
    # file is `replaced` or `superseded` depends on whether it arrived before or after its winner.
    tables, lake = got
    files = tables.pop("pipeline_files")
    loaded = sorted(r[0] for r in files if r[7] == "loaded")
    assert len(files) == len(loaded) + sum(r[7] in ("replaced", "superseded") for r in files)
    seen = outcome.setdefault(warehouse_kind, (tables, lake, loaded))
    assert (tables, lake, loaded) == seen, f"{order} differs from the first order run"
