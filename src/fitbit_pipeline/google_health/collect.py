"""``fitbit-pipeline collect``: Google Health API v4 data points -> one JSON document per participant, type, day.

Layout (the reader's contract): ``<out>/google-health/<participant_id>/<data-type>/<YYYY-MM-DD>.json``
holding ``{"dataPoints": [...]}``: the points of every page of that civil day joined in API order, each
as the API returned it (parsed and re-serialised: same members, same order, same values; int64 stay
strings). A point's day is the civil date of ``sampleTime.civilTime`` (samples),
``interval.civilStartTime`` (intervals) or the record's ``date`` (daily types). Days without points
get no file. Writes are atomic (a hidden temporary name, then a rename; one PUT on S3), and a document
whose bytes are already there is not written again (the pipeline fingerprints files by size and mtime).

Range: the civil days ``start`` ..= ``until`` (``until`` inclusive, default today in UTC). ``start`` is
``since`` when given; otherwise the latest day already collected for that participant and data type
(the high-water mark is the newest ``<YYYY-MM-DD>.json`` present, fetched again as it may have been
partial; no state file is kept, since any other file under the source would be an unknown layout to
the pipeline); otherwise ``until`` minus :data:`DEFAULT_BACKFILL_DAYS` days.

Nothing here logs a token, a secret or a measured value: only participant ids, data-type ids, days and
counts.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import posixpath
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..errors import ConfigError, SafeError
from ..sources import filesystem, is_local
from .client import (
    DEFAULT_ENDPOINT,
    DEFAULT_TOKEN_URI,
    ConsentNeeded,
    ParticipantClient,
    RequestBudget,
    RetryPolicy,
    credentials,
)
from .datatypes import DATA_TYPES, ROLLUPS, DataType, RollUp, Shape
from .sample import LAYOUT, document_bytes, point_day
from .tokens import Participant

if TYPE_CHECKING:
    from ..settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BACKFILL_DAYS = 30
# Days per dataPoints.list query: bounds the points held in memory (second-level heart rate: ~86k a day).
WINDOW_DAYS: dict[Shape, int] = {"sample": 1, "interval": 7, "daily": 31}
ROLLUP_WINDOW_DAYS = 14  # dataPoints:dailyRollUp of total calories covers at most 14 days a request
_DOC_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.json$")

Progress = Callable[[str, str], None]  # (participant_id, data_type id) done


@dataclass(frozen=True)
class CollectConfig:
    out: str
    client_id: str
    client_secret: str
    until: dt.date
    since: dt.date | None = None
    endpoint: str = DEFAULT_ENDPOINT
    token_uri: str = DEFAULT_TOKEN_URI
    page_size: int = 10_000
    requests_per_minute: int = 300  # per user: the documented default quota
    budget_window_seconds: float = 60.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_seconds: float = 60.0
    data_types: tuple[DataType, ...] = DATA_TYPES
    rollups: tuple[RollUp, ...] = ROLLUPS


@dataclass
class ParticipantResult:
    participant_id: str
    status: str = "ok"  # ok | consent_needed | failed
    days_written: int = 0
    days_unchanged: int = 0
    points: int = 0
    points_outside: int = 0  # points the API returned outside the requested days (none expected): not written
    requests: int = 0
    retries: int = 0
    refreshes: int = 0
    error: str | None = None  # the error's class (and our own value-free text), never a value

    def as_dict(self) -> dict:
        return asdict(self)


def high_water(fs: fsspec.AbstractFileSystem, root: str, participant_id: str, data_type: str) -> dt.date | None:
    """The latest day with a document of ``participant_id`` and ``data_type`` under ``root``."""
    folder = posixpath.join(root, LAYOUT, participant_id, data_type)
    try:
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)]
    except (FileNotFoundError, NotADirectoryError):
        return None
    days = []
    for name in names:
        m = _DOC_NAME.match(name)
        if m:
            try:
                days.append(dt.date.fromisoformat(m.group(1)))
            except ValueError:
                continue
    return max(days, default=None)


def first_day(config: CollectConfig, mark: dt.date | None) -> dt.date:
    if config.since is not None:
        return config.since
    if mark is not None:
        return mark
    return config.until - dt.timedelta(days=DEFAULT_BACKFILL_DAYS)


def write_document(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """Write ``data`` at ``path`` atomically unless the same bytes are there; whether it wrote."""
    try:
        if fs.size(path) == len(data) and fs.cat_file(path) == data:
            return False
    except FileNotFoundError:
        pass
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = posixpath.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        fs.pipe_file(path, data)  # one PUT: an object appears whole or not at all
    return True


def _collect_type(
    client: ParticipantClient,
    fs: fsspec.AbstractFileSystem,
    root: str,
    participant_id: str,
    d: DataType | RollUp,
    config: CollectConfig,
    result: ParticipantResult,
) -> None:
    """One data type (``dataPoints.list``) or one daily roll-up (``dataPoints:dailyRollUp``), window by window
    from its high-water day, one document per civil day."""
    folder = d.id if isinstance(d, DataType) else d.folder
    start = first_day(config, high_water(fs, root, participant_id, folder))
    stop = config.until + dt.timedelta(days=1)  # exclusive
    window = dt.timedelta(days=WINDOW_DAYS[d.shape] if isinstance(d, DataType) else ROLLUP_WINDOW_DAYS)
    while start < stop:
        end = min(start + window, stop)
        by_day: dict[dt.date, list[dict]] = {}
        if isinstance(d, DataType):
            pages, key = (
                ((p, point_day(p, d)) for p in client.list_points(d, start, end, config.page_size)),
                "dataPoints",
            )
        else:
            pages, key = ((p, rollup_day(p)) for p in client.roll_up(d, start, end)), "rollupDataPoints"
        for point, day in pages:
            if day is not None and start <= day < end:  # the request guarantees it; no stray point moves windows
                by_day.setdefault(day, []).append(point)
            else:
                result.points_outside += 1
        for day in sorted(by_day):
            points = by_day[day]
            path = posixpath.join(root, LAYOUT, participant_id, folder, f"{day.isoformat()}.json")
            if write_document(fs, path, document_bytes(points, key)):
                result.days_written += 1
            else:
                result.days_unchanged += 1
            result.points += len(points)
        start = end


def rollup_day(point: dict) -> dt.date | None:
    """The civil day of a daily roll-up window (``civilStartTime.date``)."""
    try:
        date = point["civilStartTime"]["date"]
        return dt.date(date["year"], date["month"], date["day"])
    except (KeyError, TypeError, ValueError):
        return None


def collect_participant(
    participant: Participant,
    refresh_token: str,
    config: CollectConfig,
    *,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ParticipantResult:
    """Collect one participant; never raises for the API's or the participant's sake (see ``status``)."""
    result = ParticipantResult(participant.participant_id)
    fs, root = filesystem(config.out)
    client: ParticipantClient | None = None
    try:
        client = ParticipantClient(
            participant.health_user_id,
            credentials(refresh_token, config.client_id, config.client_secret, config.token_uri),
            endpoint=config.endpoint,
            policy=config.policy,
            budget=RequestBudget(config.requests_per_minute, config.budget_window_seconds, sleep=sleep),
            timeout=config.timeout_seconds,
            sleep=sleep,
            rng=random.Random(),
        )
        for d in (*config.data_types, *config.rollups):
            _collect_type(client, fs, root, participant.participant_id, d, config, result)
            if progress:
                progress(participant.participant_id, d.id if isinstance(d, DataType) else d.folder)
    except ConsentNeeded as exc:
        result.status, result.error = "consent_needed", f"{type(exc).__name__}: {exc}"
    except SafeError as exc:
        result.status, result.error = "failed", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # noqa: BLE001 - one participant's failure must not stop the others
        result.status, result.error = "failed", type(exc).__name__
    if result.points_outside:
        log.warning(
            "collect %s: the API returned %d points outside the requested days (not written; the day they belong "
            "to is collected by its own request)",
            result.participant_id,
            result.points_outside,
        )
    if client is not None:
        c = client.counters
        result.requests, result.retries, result.refreshes = c.requests, c.retries, c.refreshes
    log.info(
        "collect %s: %s, %d documents written, %d unchanged, %d requests, %d retries",
        result.participant_id,
        result.status,
        result.days_written,
        result.days_unchanged,
        result.requests,
        result.retries,
    )
    return result


def collect(
    participants: Sequence[Participant],
    tokens: dict[str, str],
    config: CollectConfig,
    *,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ParticipantResult]:
    """Collect every participant in turn (each with its own credentials and request budget)."""
    if config.since is not None and config.since > config.until:
        raise ConfigError("--since", "is after --until")
    if is_local(config.out):
        os.makedirs(filesystem(config.out)[1], exist_ok=True)
    return [
        collect_participant(p, tokens[p.participant_id], config, progress=progress, sleep=sleep) for p in participants
    ]


def exit_status(results: Sequence[ParticipantResult]) -> int:
    """0 when every participant was collected or needs consent, 1 when any failed."""
    return 1 if any(r.status == "failed" for r in results) else 0


def parse_day(value: str | None, setting: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(setting, "must be a date YYYY-MM-DD") from None


def run(
    settings: Settings,
    *,
    participants: str | None = None,
    out: str | None = None,
    since: str | None = None,
    until: str | None = None,
    progress: Progress | None = None,
    on_start: Callable[[int], None] | None = None,
) -> list[ParticipantResult]:
    """The collect command from settings and flags: check everything (exit 2 on any problem), then collect.

    ``participants`` defaults to ``GOOGLE_HEALTH_PARTICIPANTS``, ``out`` to the pipeline's source
    (``FITBIT_SOURCE`` or its bucket), ``until`` to today (UTC). Every refresh-token reference is resolved
    before the first request, so a bad reference stops the command before anything is fetched.
    """
    from .tokens import load_participants, resolve

    uri = participants or settings.google_health_participants
    if not uri:
        raise ConfigError("--participants", "no participants file (or GOOGLE_HEALTH_PARTICIPANTS)")
    if not settings.google_health_client_id:
        raise ConfigError("GOOGLE_HEALTH_CLIENT_ID", "not set")
    if settings.google_health_client_secret is None or not settings.google_health_client_secret.get_secret_value():
        raise ConfigError("GOOGLE_HEALTH_CLIENT_SECRET", "not set")
    last = parse_day(until, "--until") or dt.datetime.now(dt.UTC).date()
    first = parse_day(since, "--since")
    if first is not None and first > last:
        raise ConfigError("--since", "is after --until")
    people = load_participants(uri)
    tokens = {p.participant_id: resolve(p.token_ref, p.participant_id) for p in people}
    config = CollectConfig(
        out=out or settings.source_uri(),
        client_id=settings.google_health_client_id,
        client_secret=settings.google_health_client_secret.get_secret_value(),
        until=last,
        since=first,
        endpoint=settings.google_health_api_endpoint,
        token_uri=settings.google_oauth_token_uri,
        page_size=settings.google_health_page_size,
        requests_per_minute=settings.google_health_requests_per_minute,
        policy=RetryPolicy(
            max_attempts=settings.google_health_max_attempts,
            base_seconds=settings.google_health_retry_base_seconds,
            cap_seconds=settings.google_health_retry_max_seconds,
        ),
    )
    if on_start:
        on_start(len(people) * len(config.data_types))
    return collect(people, tokens, config, progress=progress)
