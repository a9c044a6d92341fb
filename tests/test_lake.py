"""The production lake (Iceberg tables) holds exactly the warehouse's rows after every run; intraday data files
each hold one day (the partition) and are sorted by participant and time."""

from __future__ import annotations

import datetime as dt
import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fitbit_pipeline import schema
from fitbit_pipeline.lake import Lake
from fitbit_pipeline.sample_data import generate

from .conftest import WAREHOUSES
from .lake_support import lake_files, read_lake


def _lake_equals_warehouse(env) -> None:
    for t in schema.DATA_TABLES:
        cols = ", ".join(f'"{c}"' for c in t.columns)
        in_lake = duckdb.sql(f"SELECT {cols} FROM {read_lake(env.lake, t.name)} ORDER BY ALL").fetchall()
        assert in_lake == env.rows(t.name), t.name
        key = "ts" if t.kind == "intraday" else "date"
        for f in lake_files(env.lake, t.name):
            if t.kind == "intraday":  # one day per file, in its partition folder
                day = os.path.basename(os.path.dirname(f))
                assert duckdb.sql(f"SELECT DISTINCT CAST(date AS VARCHAR) FROM read_parquet('{f}')").fetchall() == [
                    (day[5:],)
                ]
            rows = duckdb.sql(f"SELECT participant_id, {key} FROM read_parquet('{f}')").fetchall()
            assert rows == sorted(rows), (t.name, f)


@pytest.mark.parametrize("warehouse_kind", WAREHOUSES)
def test_new_days_redelivered_days_and_unsorted_rows(env, tmp_path) -> None:
    truth = generate(env.source, participants=3, days=2, seed=17)
    assert env.run(workers=2).status == "succeeded"
    _lake_equals_warehouse(env)

    # A re-delivered day (changed content: rows reversed, one dropped) and a new day.
    p = truth.days[0].participant_id
    day = min(d.date for d in truth.days).isoformat()
    path = env.source / p / day / "steps.json"
    doc = json.loads(path.read_bytes())
    rows = doc["activities-steps-intraday"]["dataset"]
    doc["activities-steps-intraday"]["dataset"] = rows[::-1][1:]
    doc["activities-steps"][0]["value"] = str(sum(r["value"] for r in rows[1:]))
    path.write_text(json.dumps(doc))
    extra = generate(tmp_path / "extra", participants=3, days=3, seed=17)
    last = max(d.date for d in extra.days).isoformat()
    for q in {d.participant_id for d in extra.days}:
        os.rename(tmp_path / "extra" / q / last, env.source / q / last)
    # On the new day, one file's rows arrive newest first: the partition must still come out sorted.
    late = env.source / p / last / "heart.json"
    doc = json.loads(late.read_bytes())
    doc["activities-heart-intraday"]["dataset"].reverse()
    late.write_text(json.dumps(doc, separators=(",", ":")))
    s = env.run(workers=1)
    assert s.status == "succeeded" and s.totals["files_loaded"] == 1 + 3 * 6
    _lake_equals_warehouse(env)
    # The files holding the run's rows (what PostgreSQL copies in): not the rewrites of files it took a day from.
    added = Lake(str(env.lake), "rural").added(s.run_id)["intraday_steps"]
    assert added and not [f for f in added if os.path.basename(f).startswith(f"{s.run_id}-rw-")]
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in added) == len(rows) - 1 + 3 * 1440
    if env.kind == "postgres":  # its data rows are copied from the lake, never staged
        assert env.sql("SELECT COUNT(*) FROM rural.stg_intraday_steps") == [(0,)]
    assert env.sql(f"SELECT COUNT(*) FROM rural.intraday_steps WHERE participant_id = '{p}' AND date = '{day}'") == [
        (len(rows) - 1,)
    ]


def test_superseded_deliveries_stay_out_of_the_lake(make_env, fixtures_dir) -> None:
    """The newer export first, then the older: the older one's overlapping day loses and is not published."""
    import shutil

    e = make_env("newer-first")
    folder = fixtures_dir / "layouts" / "mydatahelps"
    for i, name in enumerate(
        ["RK.5B1C2F9A.RURAL Study_20240306-20240308.zip", "RK.5B1C2F9A.RURAL Study_20240304-20240306.zip"]
    ):
        shutil.copy(folder / name, e.source / name)
        os.utime(e.source / name, (1_700_000_000 + i, 1_700_000_000 + i))
        s = e.run()
        assert s.status == "succeeded"
        _lake_equals_warehouse(e)
    assert s.totals["files_superseded"] == 6 * 2


def test_weekly_replacements_do_not_pile_up_manifests(tmp_path) -> None:
    """Replacing a participant-day again and again keeps the current snapshot's manifest list short: the
    manifests of earlier snapshots that hold deleted entries only are not carried forward (pyiceberg's overwrite
    kept every one of them, so each week's commit and scan read more)."""
    t = schema.DAILY["steps"]
    lake = Lake(str(tmp_path / "lake"), "rural")
    day = dt.date(2024, 5, 1)
    key = {("P1", (day - dt.date(1970, 1, 1)).days)}
    for week in range(8):
        rows = pa.table(
            {
                "participant_id": ["P1"],
                "date": [day],
                "value": [1000 + week],
                "source_file": ["f"],
                "run_id": [f"r{week}"],
            },
            schema=t.schema,
        )
        lake.replace(t.name, f"r{week}", key if week else set(), rows)
    table = lake.tables[t.name]
    manifests = table.current_snapshot().manifests(table.io)
    assert len(manifests) <= 2, [
        (m.added_files_count, m.existing_files_count, m.deleted_files_count) for m in manifests
    ]
    assert table.scan().to_arrow().to_pylist() == rows.to_pylist()
    assert len(table.snapshots()) == 8


def _weekly_steps(lake: Lake, weeks: int, start) -> None:
    """``weeks`` weekly deliveries of daily steps for three participants, each re-delivering its last two days."""
    t = schema.DAILY["steps"]
    for week in range(weeks):
        days = [start + dt.timedelta(days=7 * week + i) for i in range(-2 if week else 0, 7)]
        ids = [p for p in ("P1", "P2", "P3") for _ in days]
        rows = pa.table(
            {
                "participant_id": ids,
                "date": days * 3,
                "value": [1000 + 10 * week + i for i in range(len(ids))],
                "source_file": [f"w{week}"] * len(ids),
                "run_id": [f"r{week}"] * len(ids),
            },
            schema=t.schema,
        )
        keys = {(p, (d - dt.date(1970, 1, 1)).days) for p, d in zip(ids, days * 3, strict=True)}
        lake.replace(t.name, f"r{week}", keys, rows)


def test_compacted_daily_tables_keep_months_apart(tmp_path) -> None:
    """Maintenance compacts a daily table into one file per calendar month, so the next week's replacement of
    two re-delivered days rewrites the current month's file only (it rewrote the whole history)."""
    from fitbit_pipeline.lake.maintain import compact

    t = schema.DAILY["steps"]
    lake = Lake(str(tmp_path / "lake"), "rural")
    _weekly_steps(lake, 14, dt.date(2024, 3, 4))  # March 4 to June 9: four months
    table = lake.tables[t.name]
    before = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: (r["participant_id"], r["date"]))

    assert len(lake_files(tmp_path / "lake", t.name)) == 14  # one per week (the two re-delivered days rewritten out)
    assert compact(table, t, "maintain-test") == 13  # June's only file (June 1-9) stays as it is
    lake.refresh()
    table = lake.tables[t.name]
    assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: (r["participant_id"], r["date"])) == before
    months = {}
    for f in lake_files(tmp_path / "lake", t.name):
        days = pq.read_table(f, columns=["date"])["date"].to_pylist()
        assert len({(d.year, d.month) for d in days}) == 1, f  # each file within one month
        months[(days[0].year, days[0].month)] = months.get((days[0].year, days[0].month), 0) + len(days)
    assert months == {(2024, 3): 3 * 28, (2024, 4): 3 * 30, (2024, 5): 3 * 31, (2024, 6): 3 * 9}

    old = {task.file.file_path for task in table.scan().plan_files()}
    redelivered = dt.date(2024, 6, 8)  # the next week re-delivers June 8 and 9
    keys = {(p, (redelivered - dt.date(1970, 1, 1)).days + i) for p in ("P1", "P2", "P3") for i in (0, 1)}

    rows = pa.table(
        {
            "participant_id": [p for p, _ in sorted(keys)],
            "date": [dt.date(1970, 1, 1) + dt.timedelta(days=d) for _, d in sorted(keys)],
            "value": [7] * len(keys),
            "source_file": ["w14"] * len(keys),
            "run_id": ["r14"] * len(keys),
        },
        schema=t.schema,
    )
    lake.replace(t.name, "r14", keys, rows)
    table = lake.tables[t.name]
    gone = old - {task.file.file_path for task in table.scan().plan_files()}
    assert len(gone) == 1
    rewritten = pq.read_table(gone.pop().removeprefix("file://"), columns=["date"])["date"].to_pylist()
    assert {d.month for d in rewritten} == {6}
    assert table.scan().to_arrow().num_rows == len(before)


def test_a_whole_history_daily_file_is_split_into_months(tmp_path) -> None:
    """The single file an earlier version's compaction left in a daily table (all months in one) is alone in its
    group, and still rewritten as one file per month."""
    from fitbit_pipeline.lake.maintain import compact

    t = schema.DAILY["steps"]
    lake = Lake(str(tmp_path / "lake"), "rural")
    days = [dt.date(2024, 1, 30) + dt.timedelta(days=i) for i in range(40)]  # January 30 to March 9
    rows = pa.table(
        {
            "participant_id": ["P1"] * len(days),
            "date": days,
            "value": list(range(len(days))),
            "source_file": ["f"] * len(days),
            "run_id": ["r0"] * len(days),
        },
        schema=t.schema,
    )
    lake.replace(t.name, "r0", set(), rows)
    assert len(lake_files(tmp_path / "lake", t.name)) == 1
    assert compact(lake.tables[t.name], t, "maintain-test") == 1
    lake.refresh()
    per_file = [pq.read_table(f, columns=["date"])["date"].to_pylist() for f in lake_files(tmp_path / "lake", t.name)]
    assert sorted((d[0].month, len(d)) for d in per_file) == [(1, 2), (2, 29), (3, 9)]
    assert all(len({d.month for d in days}) == 1 for days in per_file)
    assert lake.tables[t.name].scan().to_arrow().sort_by("date").equals(rows)
    assert compact(lake.tables[t.name], t, "maintain-again") == 0  # settled: each month's file alone
