"""Wear time, silent participants and the HTML compliance report (rendered in a real Chromium)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer

import orjson
import pytest

from fitbit_pipeline import report as reporting
from fitbit_pipeline.notify import Notifier, NotifyConfig
from fitbit_pipeline.sample_data import generate
from fitbit_pipeline.warehouse import open_warehouse

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _minutes_hours(doc: dict) -> tuple[int, int, int]:
    times = [r["time"] for r in doc["activities-heart-intraday"]["dataset"]]
    return len({t[:5] for t in times}), len({t[:2] for t in times}), len(times)


def test_wear_time_on_fixtures_with_known_answers(env, fixtures_dir) -> None:
    shutil.copytree(fixtures_dir / "layouts" / "by-participant-and-date", env.source / "a")
    shutil.copytree(fixtures_dir / "layouts" / "careevolution", env.source / "b")
    env.run()
    cases = [
        ("7ZXK9Q", "2024-03-09", fixtures_dir / "layouts/by-participant-and-date/7ZXK9Q/2024-03-09/heart.json"),
        ("B41M0T", "2024-03-10", fixtures_dir / "layouts/by-participant-and-date/B41M0T/2024-03-10/heart.json"),
        ("P100234", "2024-03-09", next((fixtures_dir / "layouts/careevolution").rglob("*heart_date_2024-03-09*"))),
    ]
    for pid, day, path in cases:
        minutes, hours, samples = _minutes_hours(json.loads(path.read_text()))
        got = env.sql(
            "SELECT wear_minutes, hours_with_data, heart_samples, valid_day FROM rural.daily_wear "
            "WHERE participant_id = ? AND date = ?",
            [pid, dt.date.fromisoformat(day)],
        )
        assert got == [(minutes, hours, samples, minutes >= 600)]
    # the minute fixture: one sample per worn minute, 1226 of them (expected.json's intraday_rows)
    assert env.sql(
        "SELECT wear_minutes FROM rural.daily_wear WHERE participant_id = '7ZXK9Q' AND date = DATE '2024-03-09'"
    ) == [(1226,)]


def test_wear_follows_a_redelivered_day(env, fixtures_dir) -> None:
    src = fixtures_dir / "layouts" / "mydatahelps"
    older, newer = sorted(p.name for p in src.glob("*.zip"))
    shutil.copy(src / older, env.source / older)
    env.run()
    member = "fitbit_intraday_activities_heart/MDH-4950-2492/activities_heart_date_2024-03-06_1d_1sec.json"
    q = "SELECT wear_minutes FROM rural.daily_wear WHERE participant_id = 'MDH-4950-2492' AND date = DATE '2024-03-06'"
    with zipfile.ZipFile(src / older) as zf:
        partial = _minutes_hours(json.loads(zf.read(member)))[0]
    assert env.sql(q) == [(partial,)]
    shutil.copy(src / newer, env.source / newer)
    env.run()
    with zipfile.ZipFile(src / newer) as zf:
        complete = _minutes_hours(json.loads(zf.read(member)))[0]
    assert complete > partial and env.sql(q) == [(complete,)]


def test_valid_day_threshold_is_configurable(env) -> None:
    generate(env.source, participants=1, days=2, seed=2)
    env.run(valid_day_minutes=24 * 60 + 1)  # nobody can be valid
    assert env.sql("SELECT COUNT(*) FROM rural.daily_wear WHERE valid_day") == [(0,)]


@pytest.fixture
def study(env):
    """Three participants over 21 days: A active, B silent for 4 days, C whose wear collapsed."""
    end = dt.date(2024, 3, 24)
    truth = generate(
        env.source,
        days=21,
        start=end - dt.timedelta(days=20),
        seed=17,
        participant_ids=["A-active", "B-silent", "C-dropping"],
    )
    for d in range(4):  # B: empty heart datasets for the last four days
        path = env.source / "B-silent" / (end - dt.timedelta(days=d)).isoformat() / "heart.json"
        doc = orjson.loads(path.read_bytes())
        doc["activities-heart-intraday"]["dataset"] = []
        path.write_bytes(orjson.dumps(doc))
    for d in range(7):  # C: only the first hour of data each day for the last week
        path = env.source / "C-dropping" / (end - dt.timedelta(days=d)).isoformat() / "heart.json"
        doc = orjson.loads(path.read_bytes())
        ds = doc["activities-heart-intraday"]["dataset"]
        doc["activities-heart-intraday"]["dataset"] = [r for r in ds if r["time"] < "07:00:00"][:60]
        path.write_bytes(orjson.dumps(doc))
    env.run()
    return end, truth


def test_silent_participants_are_reported_and_notified(env, study) -> None:
    end, _ = study
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open_warehouse(str(env.warehouse), "rural") as wh:
        data = reporting.build(wh, end - dt.timedelta(days=6), end)
    reasons = {p.participant_id: p.silent_reason for p in data.participants}
    assert reasons["A-active"] is None
    assert reasons["B-silent"] == "no heart-rate data for 4 days"
    assert reasons["C-dropping"].startswith("wear time down")
    alert = reporting.silent_alert(data)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    from pydantic import SecretStr

    assert Notifier(NotifyConfig(webhook_url=SecretStr(url))).send(alert) == {"webhook": "sent"}
    server.shutdown()
    text = received[0]["text"]
    assert "B-silent" in text and "C-dropping" in text and "A-active" not in text
    assert not any(ch.isdigit() for ch in text.split("\n")[-1].replace("B-silent", "").replace("C-dropping", ""))


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium not installed (apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(env, study, tmp_path) -> None:
    assert CHROMIUM, "CI must install chromium (scripts/test.sh does with apt-get)"
    end, truth = study
    with open_warehouse(str(env.warehouse), "rural") as wh:
        data = reporting.build(wh, end - dt.timedelta(days=6), end)
    out = reporting.write(data, str(tmp_path / "report.html"))
    a_steps = next(d for d in truth.days if d.participant_id == "A-active" and d.activity == "steps" and d.date == end)
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"file://{out}")
        assert page.title().startswith("Fitbit compliance report")
        alert = page.get_by_role("alert").inner_text()
        assert "B-silent" in alert and "C-dropping" in alert and "A-active" not in alert
        heat_rows = page.locator("table.heat tbody tr")
        assert heat_rows.count() == 3
        a_row = heat_rows.filter(has_text="A-active").inner_text()
        valid = next(p.valid_days for p in data.participants if p.participant_id == "A-active")
        assert f"{valid}/7" in a_row
        plain = page.locator("#numbers + table").inner_text()
        assert f"A-active\t{end}" in plain and str(a_steps.daily_value) in plain
        assert page.locator("svg[role=img]").count() >= 4  # sparklines
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert requests == [f"file://{out}"]  # self-contained: nothing else is fetched
    assert (tmp_path / "report.png").stat().st_size > 10_000
