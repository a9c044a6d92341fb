"""The command line as a user runs it: a real process, real folders, a real DuckDB file."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import duckdb
import pytest

from fitbit_pipeline.sample_data import generate


def cli(*args: str, cwd, env_extra: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FITBIT_", "REDSHIFT_"))}
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-m", "fitbit_pipeline.cli", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_quick_start_generates_a_sample_loads_it_and_reruns_quickly(tmp_path) -> None:
    first = cli("run", "--sample-if-empty", "--workers", "1", cwd=tmp_path)  # what scripts/run.sh asks for
    assert "held no files: generated a sample of 126 files" in first.stdout
    assert "succeeded" in first.stdout and "Per activity" in first.stdout
    for name in ("intraday_heart", "daily_steps", "heart_rate_zones"):
        assert name in first.stdout
    wh = tmp_path / "data" / "warehouse.duckdb"
    con = duckdb.connect(str(wh), read_only=True)
    assert con.execute("SELECT COUNT(DISTINCT participant_id) FROM rural.intraday_steps").fetchall() == [(3,)]
    assert con.execute("SELECT COUNT(*) FROM rural.pipeline_files WHERE status = 'loaded'").fetchall() == [(126,)]
    con.close()
    second = cli("run", cwd=tmp_path)
    assert "nothing-new" in second.stdout and "unchanged 126" in second.stdout
    status = cli("status", cwd=tmp_path)
    assert status.stdout.count("succeeded") == 1 and status.stdout.count("nothing-new") == 1
    runs = json.loads(cli("status", "--json", cwd=tmp_path).stdout)
    assert [r["status"] for r in runs] == ["nothing-new", "succeeded"]
    assert runs[1]["files_loaded"] == 126


def test_env_file_is_read_and_flags_override_it(tmp_path) -> None:
    generate(tmp_path / "exports", participants=1, days=1, seed=2)
    (tmp_path / ".env").write_text(
        "FITBIT_SOURCE=exports\nFITBIT_LAKE=lake-from-env\nFITBIT_WAREHOUSE=from-env.duckdb\nREDSHIFT_SCHEMA=study_a\n"
    )
    out = json.loads(cli("run", "--json", "--workers", "1", cwd=tmp_path).stdout)
    assert out["totals"]["files_loaded"] == 6
    con = duckdb.connect(str(tmp_path / "from-env.duckdb"), read_only=True)
    assert con.execute("SELECT COUNT(*) FROM study_a.daily_steps").fetchall() == [(1,)]
    con.close()
    assert (tmp_path / "lake-from-env" / "production" / "daily_steps").is_dir()
    # the environment beats .env, a flag beats both
    cli("run", "--warehouse", "flag.duckdb", cwd=tmp_path, env_extra={"FITBIT_LAKE": "lake-from-environ"})
    assert (tmp_path / "flag.duckdb").exists() and (tmp_path / "lake-from-environ").is_dir()


def test_gated_run_exits_3_with_the_reason(tmp_path) -> None:
    truth = generate(tmp_path / "src", participants=1, days=1, seed=2)
    bad = next(f for f in truth.files if f.name == "steps.json")
    bad.write_bytes(bad.read_bytes().replace(b'"value":0', b'"value":-5'))
    proc = cli("run", "--source", "src", "--workers", "1", cwd=tmp_path, ok=False)
    assert proc.returncode == 3
    assert "validation gate stopped the run" in proc.stderr and "value_out_of_range" in proc.stderr
    forced = cli("run", "--source", "src", "--force", "--workers", "1", cwd=tmp_path)
    assert "forced past the gate" in forced.stdout


def test_bad_settings_fail_with_a_clear_message(tmp_path) -> None:
    proc = cli("run", cwd=tmp_path, env_extra={"FITBIT_RANGES": '{"heart.bogus": [1, 2]}'}, ok=False)
    assert proc.returncode != 0 and "unknown range 'heart.bogus'" in (proc.stderr + proc.stdout)


@pytest.mark.parametrize("layout", ["mydatahelps", "careevolution"])
def test_sample_data_layouts_load(tmp_path, layout) -> None:
    cli("sample-data", "out", "--participants", "2", "--days", "2", "--layout", layout, cwd=tmp_path)
    out = json.loads(cli("run", "--source", "out", "--json", "--workers", "1", cwd=tmp_path).stdout)
    assert out["totals"]["files_loaded"] == 24 and out["totals"]["files_rejected"] == 0


def test_sample_account_exports_load_with_the_zone_the_command_names(tmp_path) -> None:
    """``sample-data --layout account-export`` then ``run``: without a zone the UTC files are rejected
    (zone_unknown, exit 3 at the gate); with the zone it prints, every participant-day-activity loads."""
    made = cli("sample-data", "out", "--participants", "2", "--days", "2", "--layout", "account-export", cwd=tmp_path)
    assert "FITBIT_DEFAULT_TIMEZONE=America/Chicago" in made.stdout
    no_zone = cli("run", "--source", "out", "--workers", "1", cwd=tmp_path, ok=False)
    assert no_zone.returncode == 3 and "zone_unknown" in no_zone.stderr
    env = {"FITBIT_DEFAULT_TIMEZONE": "America/Chicago"}
    out = json.loads(
        cli("run", "--source", "out", "--json", "--workers", "1", "--force", cwd=tmp_path, env_extra=env).stdout
    )
    # one slice a participant-day-activity with rows: the same seed written again, in this process
    from fitbit_pipeline.sample_data import generate_account_export

    _, truth = generate_account_export(tmp_path / "again", participants=2, days=2, start=dt.date(2024, 3, 4))
    slices = [t for t in truth if t.intraday_rows or t.resting_heart_rate is not None]
    assert len(slices) >= 16 and out["totals"]["files_loaded"] == len(slices)
    assert out["totals"]["files_rejected"] == 0
