"""Frozen data releases: a release keeps the rows, counts and checksums it was made with while later runs, a
corrected re-delivery and maintenance move ``main``; its export and its report show exactly the data of that day;
a withdrawal keeps or rewrites it, as asked; an interrupted ``release create`` or rewrite leaves nothing half-done.

Real ``fitbit-pipeline`` processes, a real Iceberg lake (tags), DuckDB and a real PostgreSQL server.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import signal

import pyarrow.parquet as pq
import pytest

from fitbit_pipeline import schema
from fitbit_pipeline.lake import Lake
from fitbit_pipeline.releases import FROZEN_TABLES, RELEASED_TABLES, files_by_tag, tag
from fitbit_pipeline.verify import content_checksum

from .conftest import WAREHOUSES, Env
from .test_forget import holding
from .test_maintain import cli, deliver

MAY = dt.date(2024, 5, 1)
# Ids no compressed byte run will spell by chance (the lake's files are searched for them).
P1, P2, P3 = "RL-40417", "RL-77310", "RL-55021"
KEYS = {"intraday_heart": ("participant_id", "ts"), "daily_steps": ("participant_id", "date")}


@pytest.fixture(params=WAREHOUSES)
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def ok(done) -> str:  # noqa: ANN001 - a CompletedProcess
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def two_runs(env: Env) -> None:
    deliver(env, [P1, P2], MAY, 3, 61, 1_717_000_000)
    ok(cli(env, "run"))
    deliver(env, [P2], MAY + dt.timedelta(1), 1, 62, 1_717_000_100)  # a corrected day: a second snapshot
    ok(cli(env, "run"))


def shown(env: Env, name: str) -> dict:
    return json.loads(ok(cli(env, "release", "show", name, "--json")))


def in_warehouse(env: Env) -> dict[str, list[tuple]]:
    return {name: env.rows(name) for name in KEYS}


def exported_rows(folder, name: str) -> list[tuple]:  # noqa: ANN001 - a path
    table = pq.read_table(folder / f"{name}.parquet")
    fields = schema.BY_NAME[name].schema.names
    return sorted(zip(*(table[f].to_pylist() for f in fields), strict=True), key=repr)


def test_a_release_keeps_its_rows_and_checksums_while_main_moves(env, tmp_path) -> None:
    two_runs(env)
    frozen = in_warehouse(env)
    out = ok(cli(env, "release", "create", "paper-2024", "--note", "submitted analysis"))
    assert "paper-2024" in out
    made = shown(env, "paper-2024")
    assert made["note"] == "submitted analysis" and set(made["tables"]) == {t.name for t in RELEASED_TABLES}
    assert made["tables"]["intraday_heart"]["row_count"] == len(frozen["intraday_heart"]) > 0

    # main moves: a new participant, new days, a corrected re-delivery of a released day; then maintenance
    deliver(env, [P3], MAY, 3, 63, 1_717_000_200)
    deliver(env, [P1], MAY + dt.timedelta(2), 3, 64, 1_717_000_300)
    ok(cli(env, "run"))
    ok(cli(env, "maintain", "--snapshot-days", "0"))
    now = in_warehouse(env)
    assert now["intraday_heart"] != frozen["intraday_heart"]
    assert any(
        r[0] == P1 and r[1] == MAY + dt.timedelta(2) and r not in frozen["intraday_heart"]
        for r in now["intraday_heart"]
    )
    assert shown(env, "paper-2024") == made  # the record is unchanged
    lake = Lake(str(env.lake), "rural")
    files = files_by_tag(lake, "paper-2024")
    for t in RELEASED_TABLES:  # and the lake still holds exactly those rows
        rows, checksum = content_checksum(files[t.name], t)
        assert (rows, checksum) == (made["tables"][t.name]["row_count"], made["tables"][t.name]["checksum"]), t.name
        if t in schema.DATA_TABLES:
            assert (
                lake.tables[t.name].snapshot_by_name(tag("paper-2024")).snapshot_id
                == made["tables"][t.name]["snapshot_id"]
            )
    assert (
        lake.tables["intraday_heart"].current_snapshot().snapshot_id != made["tables"]["intraday_heart"]["snapshot_id"]
    )
    ok(cli(env, "verify"))

    # the export holds what the warehouse held on the day of the release
    folder = tmp_path / "for-collaborator"
    ok(cli(env, "export", "--release", "paper-2024", "--to", str(folder)))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["release"] == "paper-2024" and manifest["checksum_algorithm"] == "md5-rows-v1"
    for name in KEYS:
        assert exported_rows(folder, name) == sorted(frozen[name], key=repr)
    for t in RELEASED_TABLES:
        entry = manifest["tables"][t.name]
        path = folder / entry["file"]
        assert (
            hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"] and path.stat().st_size == entry["bytes"]
        )
        assert content_checksum([str(path)], t) == (entry["rows"], made["tables"][t.name]["checksum"]), t.name
        assert [c["name"] for c in entry["columns"]] == t.schema.names
    as_csv = tmp_path / "as-csv"
    ok(cli(env, "export", "--release", "paper-2024", "--to", str(as_csv), "--format", "csv"))
    with open(as_csv / "intraday_heart.csv", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == schema.INTRADAY["heart"].schema.names and len(lines) - 1 == len(frozen["intraday_heart"])

    # the report of the release: its participants and days, not those of later runs
    report = tmp_path / "release.html"
    ok(cli(env, "report", "--release", "paper-2024", "--out", str(report)))
    html = report.read_text()
    assert "paper-2024" in html and P1 in html and P2 in html and P3 not in html
    current = tmp_path / "now.html"
    ok(cli(env, "report", "--out", str(current)))
    assert P3 in current.read_text()


def test_release_names_exports_and_unknown_releases_are_refused_clearly(env, tmp_path) -> None:
    two_runs(env)
    bad = cli(env, "release", "create", "../escape")
    assert bad.returncode == 2 and "NAME" in bad.stderr
    ok(cli(env, "release", "create", "r1"))
    again = cli(env, "release", "create", "r1")
    assert again.returncode == 2 and "exists" in again.stderr
    unknown = cli(env, "export", "--release", "nope", "--to", str(tmp_path / "x"))
    assert unknown.returncode == 2 and "no release named nope" in unknown.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "theirs.txt").write_text("keep me")
    busy = cli(env, "export", "--release", "r1", "--to", str(tmp_path / "busy"))
    assert busy.returncode == 2 and (tmp_path / "busy" / "theirs.txt").read_text() == "keep me"
    listed = json.loads(ok(cli(env, "release", "list", "--json")))
    assert [r["name"] for r in listed] == ["r1"]


def test_a_withdrawal_keeps_releases_unless_asked_and_then_rewrites_them(env, tmp_path) -> None:
    two_runs(env)
    ok(cli(env, "release", "create", "kept"))
    ok(cli(env, "release", "create", "rewritten"))
    kept_before = shown(env, "kept")
    released = exported(env, "kept", tmp_path / "kept-before")

    out = ok(cli(env, "forget", P1))
    assert "kept" in out and "rewritten" in out and "--include-releases" in out
    assert shown(env, "kept") == kept_before  # the default keeps releases as they are
    assert holding(env, P1)  # in the releases' files only
    assert all("/releases/" in p or "/production/" in p for p in holding(env, P1))

    out = ok(cli(env, "forget", P1, "--include-releases"))
    assert "Releases rewritten without the participant: kept, rewritten" in out
    assert not holding(env, P1)  # no lake file, snapshot or release file holds the participant any more
    for name in ("kept", "rewritten"):
        now = shown(env, name)
        assert "withdrawn participant" in now["rewritten"]
        after = exported(env, name, tmp_path / f"{name}-after")
        for t in RELEASED_TABLES:
            want = [r for r in released[t.name] if P1 not in map(str, r)]
            assert after[t.name] == want, t.name
            assert now["tables"][t.name]["row_count"] == len(want)
    ok(cli(env, "verify"))


def exported(env: Env, name: str, folder) -> dict[str, list[tuple]]:  # noqa: ANN001 - a path
    ok(cli(env, "export", "--release", name, "--to", str(folder)))
    manifest = json.loads((folder / "manifest.json").read_text())
    for t in RELEASED_TABLES:  # every file's checksum is the release's
        assert content_checksum([str(folder / f"{t.name}.parquet")], t)[1] == manifest["tables"][t.name]["checksum"]
    return {t.name: exported_rows(folder, t.name) for t in RELEASED_TABLES}


def test_an_interrupted_release_or_rewrite_is_finished_or_left_without_trace(env, tmp_path) -> None:
    two_runs(env)
    killed = cli(env, "release", "create", "r1", fault="release-tagged")
    assert killed.returncode == -signal.SIGKILL
    assert json.loads(ok(cli(env, "release", "list", "--json"))) == []  # no record: no release
    ok(cli(env, "release", "create", "r1"))  # the same name again replaces what was left
    made = shown(env, "r1")

    killed = cli(env, "forget", P2, "--include-releases", fault="release-rewrite-table", FITBIT_FAULT_SKIP="2")
    assert killed.returncode == -signal.SIGKILL
    ok(cli(env, "run"))  # recovery finishes the withdrawal, the release's rewrite first
    now = shown(env, "r1")
    assert now["rewritten"] and now["tables"]["daily_steps"]["row_count"] < made["tables"]["daily_steps"]["row_count"]
    assert not holding(env, P2)
    after = exported(env, "r1", tmp_path / "r1")
    assert all(P2 not in repr(rows) for rows in after.values())
    assert {r[0] for r in after["daily_steps"]} == {P1}
    assert FROZEN_TABLES[0].name in after
