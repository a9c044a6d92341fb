"""What a user sees of an error: one place maps exceptions to exit codes and to safe one-line messages.

Exit codes of every command: 0 success, 1 the run failed, 2 a configuration error (a setting names
something that is missing, unreachable or malformed), 3 the validation gate stopped the run.

Messages never carry a measured value or a secret: :func:`safe_message` keeps the exception class
and, for exceptions whose text we do not write ourselves (drivers, Arrow, the OS), removes every
fragment bearing a digit and every quoted literal; :func:`mask_url` and :func:`scrub_url` keep the
secrets of a URL out of any text.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_GATED = 0, 1, 2, 3

SECRET_QUERY_KEYS = frozenset(
    {"password", "secret", "token", "sslpassword", "secret_access_key", "session_token", "access_key"}
)
_NUMBERISH = re.compile(r"[^\s,;()\[\]{}]*\d[^\s,;()\[\]{}]*")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


class SafeError(Exception):
    """An error whose text we write ourselves from counts, rule ids, settings and file ids only."""


class ConfigError(SafeError):
    """A configuration error: exit 2 with one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting, self.problem = setting, problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses the transform's process pool intact
        return type(self), (self.setting, self.problem)


class WarehouseBusy(SafeError):
    """Another process holds the warehouse (a lock conflict, not a bad path): the run failed, exit 1."""


def exit_code(exc: BaseException) -> int:
    """The exit code of a command that ended with ``exc``."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    try:
        from botocore.exceptions import (
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
            PartialCredentialsError,
        )
    except ImportError:  # pragma: no cover - botocore comes with boto3, a dependency
        return EXIT_FAILED
    config = (NoCredentialsError, PartialCredentialsError, NoRegionError, EndpointConnectionError, ConnectTimeoutError)
    return EXIT_CONFIG if isinstance(exc, config) else EXIT_FAILED


def safe_message(exc: BaseException | str) -> str:
    """``Class: text`` for messages, run records and notifications: no measured values, no secrets.

    Our own errors (:class:`SafeError`) keep their text; any other text loses its URLs' secrets,
    its quoted literals and every fragment bearing a digit (values, but also ports and line numbers).
    """
    if isinstance(exc, SafeError):
        return f"{type(exc).__name__}: {exc}"
    text = exc if isinstance(exc, str) else str(exc)
    text = text.strip().splitlines()[0] if text.strip() else ""  # drivers append the statement and context
    text = _URL.sub(lambda m: mask_url(m.group(0)), text)
    text = _QUOTED.sub("…", text)
    text = _NUMBERISH.sub("#", text)
    text = " ".join(text.split())  # one line
    if isinstance(exc, str):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _split_userinfo(url: str) -> tuple[str, str, str]:
    """``(scheme://, userinfo, rest)`` of ``url``; the userinfo ends at the last ``@`` of the authority.

    Passwords with an unescaped ``@`` or ``/`` are common, and parsers disagree about them (libpq
    splits at the first ``@``, urllib at the last): the userinfo here is everything up to the last
    ``@`` before the query, so that it covers the password whichever way a driver reads the URL.
    """
    head, sep, tail = url.partition("://")
    if not sep:
        return "", "", url
    before_query = tail.split("?", 1)[0].split("#", 1)[0]
    at = before_query.rfind("@")
    if at < 0:
        return head + sep, "", tail
    return head + sep, tail[:at], tail[at + 1 :]


def mask_url(url: str) -> str:
    """``url`` with its password and secret query parameters replaced by ``***``, for messages."""
    prefix, userinfo, rest = _split_userinfo(url)
    if userinfo:
        user, has_password, _ = userinfo.partition(":")
        user = user.split("@", 1)[0]
        userinfo = f"{user}:***@" if has_password or "@" in userinfo else f"{user}@"
    hostpath, qmark, query = rest.partition("?")
    query = query.split("#", 1)[0]
    if qmark:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return f"{prefix}{userinfo}{hostpath.split('#', 1)[0]}{qmark}{query}"


def url_secrets(url: str) -> list[str]:
    """Every fragment of ``url`` that may be secret (raw and percent-decoded), longest first.

    The password as each parser might read it (after the first ``:`` of the userinfo, cut at any
    ``@``) and the values of secret query parameters.
    """
    _, userinfo, rest = _split_userinfo(url)
    found: set[str] = set()
    if ":" in userinfo or "@" in userinfo:
        password = userinfo.partition(":")[2] if ":" in userinfo else userinfo.partition("@")[2]
        pieces = [password, *password.split("@"), *userinfo.split("@")[1:]]
        for piece in pieces:
            found.update((piece, unquote(piece)))
        found.add(userinfo.split("@", 1)[0].partition(":")[2])
    try:
        query = urlsplit("x://h?" + rest.partition("?")[2]).query
    except ValueError:
        query = ""
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.lower() in SECRET_QUERY_KEYS:
            found.update((value, unquote(value)))
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(message: str, *secrets: str | None) -> str:
    """``message`` with every given secret replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def scrub_url(message: str, url: str) -> str:
    """``message`` (a driver's error text) without the raw ``url`` and without any secret fragment of it."""
    message = message.replace(url, mask_url(url))
    for secret in url_secrets(url):
        message = message.replace(secret, "***")
    return message
