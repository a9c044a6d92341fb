"""A real HTTP server on 127.0.0.1 speaking the Google Health API v4 ``dataPoints.list`` and an OAuth token endpoint.

The data are the seeded truth of :mod:`fitbit_pipeline.google_health.sample`. Each user (Health User ID)
has a :class:`User` script: refresh token, refused refresh (``invalid_grant``), an access token that
expires after its first use (401 once), statuses to answer before serving (429 with ``Retry-After``,
5xx), or a status for every request. Every API request is recorded (:attr:`MockHealthApi.requests`).
The filter is parsed strictly (snake-case data type, the civil member of its shape, ``>=`` and ``<``):
anything else is a 400 ``INVALID_DATA_POINT_FILTER``, as the real API answers.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from fitbit_pipeline.google_health.datatypes import BY_ID, CIVIL_FILTER_MEMBER, ROLLUPS
from fitbit_pipeline.google_health.sample import day_points, rollup_point

CLIENT_ID = "test-client.apps.example"
CLIENT_SECRET = "client-secret-Zq81xv"
_PATH = re.compile(r"^/v4/users/([^/]+)/dataTypes/([^/]+)/dataPoints$")
_ROLLUP = re.compile(r"^/v4/users/([^/]+)/dataTypes/([^/]+)/dataPoints:dailyRollUp$")
_ROLLUP_BY_TYPE = {r.data_type: r for r in ROLLUPS}
_FILTER = re.compile(r'^([a-z_]+)\.([a-z_.]+) >= "(\d{4}-\d{2}-\d{2})" AND \1\.\2 < "(\d{4}-\d{2}-\d{2})"$')


@dataclass
class User:
    refresh_token: str
    refuse_refresh: bool = False  # the token endpoint answers invalid_grant
    expire_first_token: bool = False  # the first access token gets a 401 on its first use
    script: list[tuple[int, str | None]] = field(default_factory=list)  # (status, Retry-After) served first
    always: int | None = None  # every API request gets this status


@dataclass
class Request:
    user: str
    data_type: str
    first: dt.date
    end: dt.date
    page_token: str | None
    status: int
    at: float
    authorization: str


class MockHealthApi:
    def __init__(self, users: dict[str, User], *, seed: int = 7, hr_step: int = 60) -> None:
        self.users = users
        self.seed, self.hr_step = seed, hr_step
        self.requests: list[Request] = []
        self.token_requests: list[str] = []  # user per refresh
        self.issued: dict[str, str] = {}  # access token -> user
        self._expired: set[str] = set()
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, dt.date], list[dict]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # ------------------------------------------------------------------ truth

    def truth(self, user: str, data_type: str, day: dt.date) -> list[dict]:
        key = (user, data_type, day)
        if key not in self._cache:
            self._cache[key] = day_points(self.seed, user, data_type, day, hr_step=self.hr_step)
        return self._cache[key]

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    def __enter__(self) -> MockHealthApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def api_requests(self, user: str, data_type: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.user == user and (data_type is None or r.data_type == data_type)]

    # ------------------------------------------------------------------ HTTP

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - the token endpoint and dataPoints:dailyRollUp
                length = int(self.headers.get("Content-Length", "0"))
                if _ROLLUP.match(urlsplit(self.path).path):
                    return self._roll_up(json.loads(self.rfile.read(length) or b"{}"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path != "/token" or form.get("grant_type") != "refresh_token":
                    return self._send(400, {"error": "unsupported_grant_type"})
                if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
                    return self._send(401, {"error": "invalid_client"})
                user = next((u for u, s in api.users.items() if s.refresh_token == form.get("refresh_token")), None)
                with api._lock:
                    api.token_requests.append(user or "?")
                    if user is None or api.users[user].refuse_refresh:
                        body = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                        return self._send(400, body)
                    token = f"ya29.access-{user}-{len(api.token_requests)}-Kx9"
                    if api.users[user].expire_first_token and not any(u == user for u in api.issued.values()):
                        api._expired.add(token)
                    api.issued[token] = user
                self._send(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

            def do_GET(self) -> None:  # noqa: N802 - dataPoints.list
                parts = urlsplit(self.path)
                m = _PATH.match(parts.path)
                if not m:
                    return self._send(404, {"error": {"code": 404, "status": "NOT_FOUND"}})
                user, data_type = m.group(1), m.group(2)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ")
                d = BY_ID.get(data_type)
                f = _FILTER.match(query.get("filter", ""))
                ok_filter = (
                    d is not None
                    and f is not None
                    and f.group(1) == d.id.replace("-", "_")
                    and f.group(2) == CIVIL_FILTER_MEMBER[d.shape]
                )
                first = dt.date.fromisoformat(f.group(3)) if f else dt.date.min
                end = dt.date.fromisoformat(f.group(4)) if f else dt.date.min
                with api._lock:
                    status, retry_after = self._decide(user, token, ok_filter)
                    api.requests.append(
                        Request(user, data_type, first, end, query.get("pageToken"), status, time.monotonic(), auth)
                    )
                if status != 200:
                    headers = {"Retry-After": retry_after} if retry_after is not None else {}
                    reason = "INVALID_DATA_POINT_FILTER" if status == 400 else "ERROR"
                    return self._send(status, {"error": {"code": status, "message": reason}}, headers)
                points: list[dict] = []
                day = end - dt.timedelta(days=1)
                while day >= first:  # newest first, as the API orders by start time descending
                    points.extend(api.truth(user, data_type, day))
                    day -= dt.timedelta(days=1)
                size = int(query.get("pageSize", "1440"))
                offset = int(base64.urlsafe_b64decode(query["pageToken"]).decode()) if "pageToken" in query else 0
                body: dict = {"dataPoints": points[offset : offset + size]}
                if offset + size < len(points):
                    body["nextPageToken"] = base64.urlsafe_b64encode(str(offset + size).encode()).decode()
                self._send(200, body)

            def _roll_up(self, body: dict) -> None:
                """One window a day of the truth's points, summed as the API reconciles them (sample.rollup_point)."""
                m = _ROLLUP.match(urlsplit(self.path).path)
                assert m is not None
                user, data_type = m.group(1), m.group(2)
                r = _ROLLUP_BY_TYPE.get(data_type)
                try:
                    first, end = (dt.date(**body["range"][k]["date"]) for k in ("start", "end"))
                    ok = r is not None and body.get("windowSizeDays", 1) == 1 and (end - first).days <= 14
                except (KeyError, TypeError, ValueError):
                    first = end = dt.date.min
                    ok = False
                auth = self.headers.get("Authorization", "")
                with api._lock:
                    status, retry_after = self._decide(user, auth.removeprefix("Bearer "), ok)
                    page_token = body.get("pageToken")
                    api.requests.append(
                        Request(
                            user, f"{data_type}:dailyRollUp", first, end, page_token, status, time.monotonic(), auth
                        )
                    )
                if status != 200:
                    headers = {"Retry-After": retry_after} if retry_after is not None else {}
                    return self._send(status, {"error": {"code": status, "message": "ERROR"}}, headers)
                assert r is not None
                days = [first + dt.timedelta(days=i) for i in range((end - first).days)]
                points = [p for d in days if (p := rollup_point(api.seed, user, r, d, hr_step=api.hr_step))]
                size = int(body.get("pageSize", 14))
                offset = int(page_token or 0)
                out: dict = {"rollupDataPoints": points[offset : offset + size]}
                if offset + size < len(points):
                    out["nextPageToken"] = str(offset + size)
                self._send(200, out)

            def _decide(self, user: str, token: str, ok_filter: bool) -> tuple[int, str | None]:
                u = api.users.get(user)
                if u is None or api.issued.get(token) != user:
                    return 401, None
                if token in api._expired:
                    return 401, None
                if u.always is not None:
                    return u.always, None
                if u.script:
                    return u.script.pop(0)
                if not ok_filter:
                    return 400, None
                return 200, None

        return Handler
