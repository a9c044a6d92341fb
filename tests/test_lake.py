"""The production lake (Iceberg tables) holds exactly the warehouse's rows after every run; intraday data files
each hold one day (the partition) and are sorted by participant and time."""

from __future__ import annotations

import json
import os

import duckdb
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
    import datetime as dt

    import pyarrow as pa

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
