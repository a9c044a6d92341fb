"""`fitbit-pipeline collect` against a real HTTP server speaking the Google Health API v4 (google_health_mock)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fitbit_pipeline.cli import app
from fitbit_pipeline.errors import ConfigError
from fitbit_pipeline.google_health import collect as gh
from fitbit_pipeline.google_health.client import RetryPolicy
from fitbit_pipeline.google_health.datatypes import BY_ID, DATA_TYPES, ROLLUPS
from fitbit_pipeline.google_health.sample import rollup_point
from fitbit_pipeline.google_health.tokens import Participant, load_participants, resolve
from fitbit_pipeline.settings import Settings

from .google_health_mock import CLIENT_ID, CLIENT_SECRET, MockHealthApi, User

ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = dt.date(2026, 10, 31), dt.date(2026, 11, 2)  # 2026-11-01 has 25 civil hours in America/Chicago
FAST = {"google_health_retry_base_seconds": 0.01, "google_health_retry_max_seconds": 0.05}


def _settings(api: MockHealthApi, **extra: object) -> Settings:
    values = {
        "google_health_client_id": CLIENT_ID,
        "google_health_client_secret": CLIENT_SECRET,
        "google_health_api_endpoint": api.url,
        "google_oauth_token_uri": api.token_uri,
        "google_health_page_size": 400,
        **FAST,
        **extra,
    }
    return Settings(_env_file=None, **values)


def _config(api: MockHealthApi, out: str, **values: object) -> gh.CollectConfig:
    """A collect configuration against the mock, with the study's client."""
    base: dict = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "endpoint": api.url}
    return gh.CollectConfig(out=out, **{**base, "token_uri": api.token_uri, **values})


def _participants_csv(tmp_path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = tmp_path / "participants.csv"
    lines = ["participant_id,health_user_id,refresh_token", *(",".join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _token_file(tmp_path: Path, name: str, token: str) -> str:
    path = tmp_path / "tokens" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(token + "\n")
    return f"file:{path}"


def _documents(out: Path) -> dict[str, dict]:
    return {p.relative_to(out).as_posix(): json.loads(p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()}


def _expected(api: MockHealthApi, people: dict[str, str], first: dt.date, last: dt.date) -> dict[str, dict]:
    """participant id -> health user id: the truth's documents of every day with points."""
    docs: dict[str, dict] = {}
    for pid, user in people.items():
        for d in DATA_TYPES:
            day = first
            while day <= last:
                points = api.truth(user, d.id, day)
                if points:
                    docs[f"google-health/{pid}/{d.id}/{day.isoformat()}.json"] = {"dataPoints": points}
                day += dt.timedelta(days=1)
        for r in ROLLUPS:  # the API's daily roll-ups, one window a day
            day = first
            while day <= last:
                point = rollup_point(api.seed, user, r, day, hr_step=api.hr_step)
                if point is not None:
                    docs[f"google-health/{pid}/{r.folder}/{day.isoformat()}.json"] = {"rollupDataPoints": [point]}
                day += dt.timedelta(days=1)
    return docs


@pytest.fixture
def study(tmp_path, monkeypatch):
    """Four participants: one whose first access token expires, one throttled then failing over (429, 5xx),
    one whose refresh is refused (invalid_grant), one refused by the API even after a refresh."""
    users = {
        "1001": User("1//refresh-A-q8Zt", expire_first_token=True),
        "1002": User("1//refresh-B-w3Lp", script=[(429, "0"), (429, "0"), (503, None), (500, None)]),
        "1003": User("1//refresh-C-k2Mv", refuse_refresh=True),
        "1004": User("1//refresh-D-p5Rn", always=401),
    }
    monkeypatch.setenv("GH_TEST_TOKEN_B", users["1002"].refresh_token)
    rows = [
        ("P-A", "1001", _token_file(tmp_path, "a", users["1001"].refresh_token)),
        ("P-B", "1002", "env:GH_TEST_TOKEN_B"),
        ("P-C", "1003", _token_file(tmp_path, "c", users["1003"].refresh_token)),
        ("P-D", "1004", _token_file(tmp_path, "d", users["1004"].refresh_token)),
    ]
    csv = _participants_csv(tmp_path, rows)
    with MockHealthApi(users) as api:
        yield api, csv, tmp_path / "out", users


def test_collect_writes_the_truth_per_day_and_isolates_participants(study, caplog) -> None:
    api, csv, out, users = study
    caplog.set_level(logging.DEBUG)
    results = gh.run(_settings(api), participants=str(csv), out=str(out), since=str(FIRST), until=str(LAST))
    by_pid = {r.participant_id: r for r in results}

    assert {p: r.status for p, r in by_pid.items()} == {
        "P-A": "ok",
        "P-B": "ok",
        "P-C": "consent_needed",
        "P-D": "consent_needed",
    }
    assert gh.exit_status(results) == 0
    assert _documents(out) == _expected(api, {"P-A": "1001", "P-B": "1002"}, FIRST, LAST)
    # pages were joined: heart rate at minute detail needs several 400-point pages a day
    heart = api.api_requests("1001", "heart-rate")
    assert len({r.first for r in heart}) == 3 and sum(1 for r in heart if r.page_token) >= 3
    # P-A: one refresh at the start, one after the 401 of its expired token, then every request worked
    assert by_pid["P-A"].refreshes == 2 and by_pid["P-A"].retries == 0
    assert [r.status for r in api.api_requests("1001")][:2] == [401, 200]
    # P-B: two 429s, a 503 and a 500, each retried
    assert by_pid["P-B"].retries == 4 and [r.status for r in api.api_requests("1002")][:5] == [429, 429, 503, 500, 200]
    # P-C never reached the API; P-D was refused once, refreshed, refused again, and left alone
    assert api.api_requests("1003") == [] and by_pid["P-C"].error and "invalid_grant" in by_pid["P-C"].error
    assert [r.status for r in api.api_requests("1004")] == [401, 401] and by_pid["P-D"].refreshes == 2
    days = sum(len(v.get("dataPoints", v.get("rollupDataPoints"))) for k, v in _documents(out).items() if "/P-A/" in k)
    assert by_pid["P-A"].points == days and by_pid["P-A"].days_written == sum(
        1 for k in _documents(out) if "/P-A/" in k
    )
    # nothing secret and no measured value in the logs
    _assert_clean(caplog.text, api, users)


def _assert_clean(text: str, api: MockHealthApi, users: dict[str, User]) -> None:
    secrets = [CLIENT_SECRET, *(u.refresh_token for u in users.values()), *api.issued]
    assert api.issued, "the mock issued no access token: nothing was checked"
    for secret in secrets:
        assert secret not in text
    for key in ("beatsPerMinute", "kcal", "millimeters", "gainMillimeters", '"count"'):
        assert key not in text
    kcal = {
        repr(p["basalEnergyBurned"]["kcal"])
        for u in ("1001", "2001")
        for p in api.truth(u, "basal-energy-burned", LAST)
    }
    assert not [v for v in kcal if len(v) >= 5 and v in text]


def test_second_collect_starts_at_the_high_water_day_and_keeps_unchanged_files(study) -> None:
    api, csv, out, _users = study
    settings = _settings(api)
    gh.run(settings, participants=str(csv), out=str(out), since=str(FIRST), until=str(LAST))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    marks = {
        (pid, d.id): max(dt.date.fromisoformat(p.stem) for p in (out / "google-health" / pid / d.id).glob("*.json"))
        for pid in ("P-A", "P-B")
        for d in DATA_TYPES
    }
    seen = len(api.requests)

    results = gh.run(settings, participants=str(csv), out=str(out), until=str(LAST))  # no --since

    again = api.requests[seen:]
    for (pid, dtype), mark in marks.items():
        user = {"P-A": "1001", "P-B": "1002"}[pid]
        firsts = {r.first for r in again if r.user == user and r.data_type == dtype}
        assert firsts == {mark}, (pid, dtype)  # only from the high-water day on
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == before  # identical bytes: not rewritten
    ok = [r for r in results if r.status == "ok"]
    assert len(ok) == 2 and all(r.days_written == 0 and r.days_unchanged > 0 for r in ok)

    # a later --until adds the new day and leaves the others alone
    results = gh.run(settings, participants=str(csv), out=str(out), until=str(LAST + dt.timedelta(days=1)))
    assert _documents(out) == _expected(api, {"P-A": "1001", "P-B": "1002"}, FIRST, LAST + dt.timedelta(days=1))
    assert all(p.stat().st_mtime_ns == m for p, m in before.items())


def test_without_since_or_documents_the_backfill_starts_30_days_before_until(tmp_path) -> None:
    users = {"1001": User("1//refresh-A-q8Zt")}
    csv = _participants_csv(tmp_path, [("P-A", "1001", _token_file(tmp_path, "a", users["1001"].refresh_token))])
    config_types = (BY_ID["daily-resting-heart-rate"], BY_ID["steps"])
    with MockHealthApi(users) as api:
        s = _settings(api, google_health_page_size=10_000)
        people = load_participants(str(csv))
        tokens = {p.participant_id: resolve(p.token_ref, p.participant_id) for p in people}
        config = _config(
            api,
            str(tmp_path / "out"),
            until=LAST,
            page_size=s.google_health_page_size,
            data_types=config_types,
        )
        [result] = gh.collect(people, tokens, config)
        assert result.status == "ok"
        daily = api.api_requests("1001", "daily-resting-heart-rate")
        steps = api.api_requests("1001", "steps")
    start = LAST - dt.timedelta(days=30)
    assert min(r.first for r in daily) == start and max(r.end for r in daily) == LAST + dt.timedelta(days=1)
    assert min(r.first for r in steps) == start and max(r.end for r in steps) == LAST + dt.timedelta(days=1)
    assert all((r.end - r.first).days <= 7 for r in steps)  # interval types in windows of at most a week


def test_retry_after_is_honoured(tmp_path) -> None:
    users = {"1001": User("1//refresh-A-q8Zt", script=[(429, "1")])}
    people = [Participant("P-A", "1001", "env:UNUSED")]
    with MockHealthApi(users) as api:
        config = _config(
            api,
            str(tmp_path / "out"),
            until=LAST,
            since=LAST,
            policy=RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=0.02),
            data_types=(BY_ID["daily-resting-heart-rate"],),
        )
        [result] = gh.collect(people, {"P-A": users["1001"].refresh_token}, config)
        first, second = api.requests[:2]
    assert result.status == "ok" and result.retries == 1
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95  # Retry-After: 1, although the backoff alone would wait 0.02 s at most


def test_the_request_budget_bounds_requests_per_window(tmp_path) -> None:
    users = {"1001": User("1//refresh-A-q8Zt")}
    people = [Participant("P-A", "1001", "env:UNUSED")]
    limit, window = 4, 0.5
    with MockHealthApi(users) as api:
        config = _config(
            api,
            str(tmp_path / "out"),
            until=LAST,
            since=FIRST,
            page_size=300,
            requests_per_minute=limit,
            budget_window_seconds=window,
            data_types=(BY_ID["steps"],),
        )
        [result] = gh.collect(people, {"P-A": users["1001"].refresh_token}, config)
        times = [r.at for r in api.requests]
    assert result.status == "ok" and len(times) >= 3 * limit
    assert all(times[i + limit] - times[i] >= window - 0.02 for i in range(len(times) - limit))


def test_cli_subprocess_exit_1_when_a_participant_fails_for_good(tmp_path) -> None:
    users = {"2001": User("1//refresh-E-t7Yh"), "2002": User("1//refresh-F-m4Qs", always=500)}
    csv = _participants_csv(
        tmp_path,
        [
            ("P-E", "2001", _token_file(tmp_path, "e", users["2001"].refresh_token)),
            ("P-F", "2002", "env:GH_TEST_TOKEN_F"),
        ],
    )
    out = tmp_path / "out"
    with MockHealthApi(users) as api:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "FITBIT_"))},
            "PYTHONPATH": str(ROOT / "src"),
            "GH_TEST_TOKEN_F": users["2002"].refresh_token,
            "GOOGLE_HEALTH_CLIENT_ID": CLIENT_ID,
            "GOOGLE_HEALTH_CLIENT_SECRET": CLIENT_SECRET,
            "GOOGLE_HEALTH_API_ENDPOINT": api.url,
            "GOOGLE_OAUTH_TOKEN_URI": api.token_uri,
            "GOOGLE_HEALTH_PAGE_SIZE": "2000",
            "GOOGLE_HEALTH_MAX_ATTEMPTS": "3",
            "GOOGLE_HEALTH_RETRY_BASE_SECONDS": "0.01",
            "GOOGLE_HEALTH_RETRY_MAX_SECONDS": "0.02",
        }
        args = ["--participants", str(csv), "--out", str(out), "--since", str(LAST), "--until", str(LAST), "--json"]
        proc = subprocess.run(
            [sys.executable, "-m", "fitbit_pipeline.cli", "-v", "collect", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        failing = api.api_requests("2002")
        expected = _expected(api, {"P-E": "2001"}, LAST, LAST)
    assert proc.returncode == 1, proc.stderr
    lines = {d["participant_id"]: d for d in map(json.loads, proc.stdout.splitlines())}
    assert lines["P-E"]["status"] == "ok" and lines["P-F"]["status"] == "failed"
    assert lines["P-F"]["error"] == "RequestFailed: HTTP 500 after 3 attempts" and lines["P-F"]["retries"] == 2
    assert [r.status for r in failing] == [500, 500, 500]  # bounded attempts, then the next participant
    assert _documents(out) == expected
    assert "P-F" in proc.stderr and "failed" in proc.stderr  # the summary table
    _assert_clean(proc.stdout + proc.stderr, api, users)


@pytest.mark.parametrize(
    ("rows", "extra_args", "env", "expect"),
    [
        ([("participant,user,token", "")], [], {}, "header"),
        ([("P-A", "1001", "1//raw-token-Leak42")], [], {}, "must be a reference"),
        ([("P-A", "1001", "env:GH_TEST_UNSET_VAR")], [], {}, "environment variable is not set"),
        ([("P-A", "1001", "file:/nonexistent/gh-token")], [], {}, "cannot read the file"),
        ([("P-A", "1001", "env:X"), ("P-A", "1002", "env:X")], [], {"X": "t"}, "occurs twice"),
        ([("../x", "1001", "env:X")], [], {"X": "t"}, "cannot be used in a path"),
        ([("P-A", "1001", "env:X")], ["--since", "2026-11-05", "--until", "2026-11-01"], {"X": "t"}, "--since"),
        ([("P-A", "1001", "env:X")], ["--until", "yesterday"], {"X": "t"}, "--until"),
        ([("P-A", "1001", "env:X")], [], {"X": "t", "GOOGLE_HEALTH_CLIENT_ID": ""}, "GOOGLE_HEALTH_CLIENT_ID"),
    ],
)
def test_configuration_errors_exit_2_without_echoing_values(tmp_path, monkeypatch, rows, extra_args, env, expect):
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("GH_TEST_UNSET_VAR", raising=False)
    monkeypatch.setenv("GOOGLE_HEALTH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("GOOGLE_HEALTH_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("GOOGLE_HEALTH_API_ENDPOINT", "http://127.0.0.1:9/")  # nothing may be requested
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "participants.csv"
    header = [] if rows[0][0].startswith("participant,") else ["participant_id,health_user_id,refresh_token"]
    path.write_text("\n".join([*header, *(",".join(r).rstrip(",") for r in rows)]) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["collect", "--participants", str(path), "--out", str(out), *extra_args])
    assert result.exit_code == 2, result.output
    assert expect in result.output
    assert "raw-token-Leak42" not in result.output and CLIENT_SECRET not in result.output
    assert not out.exists() or not any(out.rglob("*.json"))


def test_secrets_manager_references(monkeypatch) -> None:
    moto_server = pytest.importorskip("moto.server")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        sm = boto3.client("secretsmanager", region_name="eu-west-1")
        plain = sm.create_secret(Name="gh/plain", SecretString="1//sm-plain-Tok")["ARN"]
        as_json = sm.create_secret(Name="gh/json", SecretString=json.dumps({"refresh_token": "1//sm-json-Tok"}))["ARN"]
        assert resolve(plain, "P-A") == "1//sm-plain-Tok"
        assert resolve(as_json, "P-A") == "1//sm-json-Tok"
        missing = plain.rsplit(":", 1)[0] + ":gh/missing-AbCdEf"
        with pytest.raises(ConfigError, match="Secrets Manager refused"):
            resolve(missing, "P-A")
    finally:
        server.stop()


def test_orchestration_task_body_raises_after_collecting_the_others(tmp_path) -> None:
    from fitbit_pipeline import orchestration as orch

    users = {"2001": User("1//refresh-E-t7Yh"), "2002": User("1//refresh-F-m4Qs", always=503)}
    csv = _participants_csv(
        tmp_path,
        [(p, u, _token_file(tmp_path, p, users[u].refresh_token)) for p, u in (("P-E", "2001"), ("P-F", "2002"))],
    )
    with MockHealthApi(users) as api:
        s = _settings(
            api,
            google_health_participants=str(csv),
            fitbit_source=str(tmp_path / "source"),
            google_health_max_attempts=2,
            google_health_page_size=5000,
        )
        with pytest.raises(orch.CollectFailed, match="1 participant"):
            orch.collect_google_health(s, since=str(LAST), until=str(LAST))
        users["2002"].always = None
        summary = orch.collect_google_health(s, since=str(LAST), until=str(LAST))
    assert [p["status"] for p in summary["participants"]] == ["ok", "ok"]
    assert any((tmp_path / "source" / "google-health" / "P-F").rglob("*.json"))
    json.dumps(summary)  # XCom-sized, JSON-serialisable


def test_collect_into_s3_and_again_without_rewrites(tmp_path, monkeypatch) -> None:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    users = {"1001": User("1//refresh-A-q8Zt")}
    try:
        host, port = server.get_host_and_port()
        for k, v in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(k, v)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="study-raw")
        types = (BY_ID["daily-heart-rate-zones"], BY_ID["floors"])
        rollups = tuple(r for r in ROLLUPS if r.data_type == "floors")
        with MockHealthApi(users) as api:
            config = _config(
                api,
                "s3://study-raw/exports",
                until=LAST,
                since=FIRST,
                data_types=types,
                rollups=rollups,
            )
            people = [Participant("P-A", "1001", "env:UNUSED")]
            [first] = gh.collect(people, {"P-A": users["1001"].refresh_token}, config)
            objects = {o["Key"]: o for o in s3.list_objects_v2(Bucket="study-raw")["Contents"]}
            time.sleep(1.1)  # LastModified has second resolution: a rewrite would show
            again = gh.CollectConfig(**{**config.__dict__, "since": None})
            [second] = gh.collect(people, {"P-A": users["1001"].refresh_token}, again)
            after = {o["Key"]: o for o in s3.list_objects_v2(Bucket="study-raw")["Contents"]}
            names = {d.id for d in types} | {r.folder for r in rollups}
            truth = _expected(api, {"P-A": "1001"}, FIRST, LAST)
            expected = {f"exports/{k}": v for k, v in truth.items() if k.split("/")[2] in names}
            bodies = {k: json.loads(s3.get_object(Bucket="study-raw", Key=k)["Body"].read()) for k in after}
    finally:
        server.stop()
    assert first.status == second.status == "ok" and first.days_written == len(expected) > 0
    assert bodies == expected
    assert second.days_written == 0 and second.days_unchanged > 0
    assert {k: o["LastModified"] for k, o in after.items()} == {k: o["LastModified"] for k, o in objects.items()}


def test_a_wrong_client_secret_fails_instead_of_asking_for_consent(tmp_path) -> None:
    users = {"1001": User("1//refresh-A-q8Zt")}
    with MockHealthApi(users) as api:
        config = _config(
            api,
            str(tmp_path / "out"),
            client_secret="not-the-secret",
            until=LAST,
            since=LAST,
        )
        results = gh.collect([Participant("P-A", "1001", "env:UNUSED")], {"P-A": "1//refresh-A-q8Zt"}, config)
    assert [(r.status, r.error) for r in results] == [
        ("failed", "RequestFailed: token refresh failed (invalid_client)")
    ]
    assert gh.exit_status(results) == 1 and api.requests == []
