"""One participant's Google Health API v4 client: ``dataPoints.list`` with OAuth refresh, retries and a budget.

Requests are built by google-api-python-client from the discovery document it ships
(``health.v4.json``, revision 20261030, ``static_discovery=True``: no network to build). They run on a
plain ``httplib2.Http`` with the bearer token set by :class:`ParticipantClient` itself rather than through
``google_auth_httplib2.AuthorizedHttp``, for a concrete reason: the collector must tell a first 401 (refresh
once, retry) from a second one (consent withdrawn: ``consent_needed``), count requests, refreshes and
retries for the summary, and spend every attempt, retries included, from the per-user request budget;
``AuthorizedHttp`` refreshes silently and ``execute(num_retries=...)`` ignores ``Retry-After``.

Retries: 429 (waiting at least ``Retry-After`` seconds), 5xx and connection errors, with exponential
backoff and full jitter (``base * 2**n``, capped), at most ``max_attempts`` attempts per request.
Budget: at most ``requests_per_minute`` requests in any window of ``window_seconds`` per user (the
documented default quota is 300 requests per minute per user, https://developers.google.com/health/rate-limits).
"""

from __future__ import annotations

import collections
import datetime as dt
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from ..errors import SafeError
from .datatypes import CIVIL_FILTER_MEMBER, DataType, RollUp

DEFAULT_ENDPOINT = "https://health.googleapis.com/"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"

ROLLUP_PAGE_SIZE = 14  # the largest page of every roll-up type (total-calories allows no more)


class ConsentNeeded(SafeError):
    """The participant's authorisation no longer works (a 401 after a refresh, or ``invalid_grant``)."""


class RequestFailed(SafeError):
    """A request failed for good (after retries, or a status that is not retried)."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # attempts per request, the first included
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    max_retry_after_seconds: float = 600.0  # a longer Retry-After fails the request instead of waiting

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before attempt ``attempt + 1``: full-jitter backoff, at least ``Retry-After``."""
        backoff = rng.uniform(0, min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1)))
        return max(backoff, retry_after or 0.0)


class RequestBudget:
    """At most ``limit`` requests in any sliding window of ``window`` seconds (blocking until one is free)."""

    def __init__(self, limit: int = 300, window: float = 60.0, *, sleep: Callable[[float], None] = time.sleep) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("the request budget needs a positive limit and window")
        self.limit, self.window, self._sleep = limit, window, sleep
        self._sent: collections.deque[float] = collections.deque()

    def acquire(self) -> None:
        while True:
            now = time.monotonic()
            while self._sent and now - self._sent[0] >= self.window:
                self._sent.popleft()
            if len(self._sent) < self.limit:
                self._sent.append(now)
                return
            self._sleep(self.window - (now - self._sent[0]) + 0.001)


@dataclass
class Counters:
    requests: int = 0  # HTTP requests to the API (retries included)
    retries: int = 0
    refreshes: int = 0
    pages: int = 0


def civil_filter(d: DataType, first: dt.date, end: dt.date) -> str:
    """The ``filter`` of ``dataPoints.list`` for the civil days ``first`` <= day < ``end``.

    Syntax (https://developers.google.com/health/filters and the discovery document's ``filter``
    parameter): ``{data_type}.{member} >= "YYYY-MM-DD" AND {data_type}.{member} < "YYYY-MM-DD"`` with
    the data type in snake case (``heart_rate``; hyphens are rejected with ``INVALID_DATA_POINT_FILTER``),
    the member ``sample_time.civil_time`` (samples), ``interval.civil_start_time`` (intervals) or ``date``
    (daily types); only ``>=`` and ``<`` are supported.
    """
    name = f"{d.id.replace('-', '_')}.{CIVIL_FILTER_MEMBER[d.shape]}"
    return f'{name} >= "{first.isoformat()}" AND {name} < "{end.isoformat()}"'


@dataclass
class ParticipantClient:
    """The API as one participant's credentials see it."""

    health_user_id: str
    credentials: Credentials
    endpoint: str = DEFAULT_ENDPOINT
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    budget: RequestBudget = field(default_factory=RequestBudget)
    timeout: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._http = httplib2.Http(timeout=self.timeout)
        self._service = build(
            "health",
            "v4",
            static_discovery=True,
            cache_discovery=False,
            http=self._http,
            client_options={"api_endpoint": self.endpoint},
        )

    # ----------------------------------------------------------------- OAuth

    def _refresh(self) -> None:
        self.counters.refreshes += 1
        try:
            self.credentials.refresh(google_auth_httplib2.Request(httplib2.Http(timeout=self.timeout)))
        except RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            code = data.get("error")
            if code == "invalid_grant":  # revoked or expired refresh token: this participant must consent again
                raise ConsentNeeded("token refresh refused (invalid_grant)") from None
            known = code if code in ("invalid_client", "unauthorized_client", "invalid_request") else "RefreshError"
            raise RequestFailed(f"token refresh failed ({known})") from None  # e.g. our client id/secret
        except TransportError:
            raise RequestFailed("token endpoint unreachable (TransportError)") from None

    # ----------------------------------------------------------------- one request

    def _execute(self, request) -> dict:  # noqa: ANN001 - a googleapiclient HttpRequest
        refreshed = False  # after a 401: a second 401 means the authorisation is gone
        attempt = 0
        while True:
            attempt += 1
            if not self.credentials.valid:  # no access token yet, or it expired: not an answer of the API
                self._refresh()
            self.budget.acquire()
            self.counters.requests += 1
            request.headers["authorization"] = f"Bearer {self.credentials.token}"
            retry_after: float | None = None
            try:
                return request.execute(http=self._http, num_retries=0)
            except HttpError as exc:
                status = exc.resp.status
                if status == 401:
                    if refreshed:
                        raise ConsentNeeded("the API refused a freshly refreshed token (HTTP 401)") from None
                    self._refresh()
                    refreshed = True
                    attempt -= 1  # a refresh is not a retry of the request
                    continue
                if status != 429 and status < 500:
                    raise RequestFailed(f"HTTP {status}") from None
                retry_after = _retry_after(exc.resp.get("retry-after"))
                what = f"HTTP {status}"
            except (OSError, httplib2.HttpLib2Error) as exc:  # resets, refused, timeouts
                what = type(exc).__name__
            if attempt >= self.policy.max_attempts:
                raise RequestFailed(f"{what} after {attempt} attempts") from None
            if retry_after is not None and retry_after > self.policy.max_retry_after_seconds:
                raise RequestFailed(f"{what}: Retry-After longer than the configured maximum") from None
            self.counters.retries += 1
            self.sleep(self.policy.delay(attempt, retry_after, self.rng))

    # ----------------------------------------------------------------- dataPoints.list

    def list_points(self, d: DataType, first: dt.date, end: dt.date, page_size: int) -> Iterator[dict]:
        """Every DataPoint of ``d`` for the civil days ``first`` <= day < ``end``, page after page, in API order."""
        points = self._service.users().dataTypes().dataPoints()
        token: str | None = None
        while True:
            kwargs = {
                "parent": f"users/{self.health_user_id}/dataTypes/{d.id}",
                "filter": civil_filter(d, first, end),
                "pageSize": page_size,
            }
            if token:
                kwargs["pageToken"] = token
            page = self._execute(points.list(**kwargs))
            self.counters.pages += 1
            yield from page.get("dataPoints", [])
            token = page.get("nextPageToken") or None
            if not token:
                return

    def roll_up(self, r: RollUp, first: dt.date, end: dt.date) -> Iterator[dict]:
        """The daily roll-ups of ``r`` for the civil days ``first`` <= day < ``end`` (``dataPoints:dailyRollUp``,
        one window a day; at most 14 days a request for total calories, 90 for the others), page after page."""
        points = self._service.users().dataTypes().dataPoints()
        token: str | None = None
        while True:
            body: dict = {"range": {"start": _civil_day(first), "end": _civil_day(end)}, "windowSizeDays": 1}
            body["pageSize"] = ROLLUP_PAGE_SIZE
            if token:
                body["pageToken"] = token
            page = self._execute(
                points.dailyRollUp(parent=f"users/{self.health_user_id}/dataTypes/{r.data_type}", body=body)
            )
            self.counters.pages += 1
            yield from page.get("rollupDataPoints", [])
            token = page.get("nextPageToken") or None
            if not token:
                return


def _civil_day(day: dt.date) -> dict:
    return {"date": {"year": day.year, "month": day.month, "day": day.day}}


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds; an HTTP date counts as unknown)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def credentials(refresh_token: str, client_id: str, client_secret: str, token_uri: str) -> Credentials:
    """OAuth 2 user credentials with no access token yet: the first request refreshes."""
    return Credentials(
        token=None,
        refresh_token=refresh_token,
        client_id=client_id,
        client_secret=client_secret,
        token_uri=token_uri,
    )
