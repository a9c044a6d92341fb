"""The participants file and the references to their OAuth refresh tokens.

The file is a CSV with the header ``participant_id,health_user_id,refresh_token``; ``refresh_token`` is
a *reference*, never a token: ``file:PATH`` (the file's content, stripped), ``env:NAME`` (an environment
variable) or an AWS Secrets Manager ARN (``arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME``; the secret
string, or its ``refresh_token`` member when it is a JSON object). Anything malformed or unresolvable is a
:class:`~fitbit_pipeline.errors.ConfigError` naming the line, never the value.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..sources import filesystem

HEADER = ("participant_id", "health_user_id", "refresh_token")
SETTING = "--participants"
_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER_ID = re.compile(r"^[A-Za-z0-9._~-]+$")  # a path segment: the numeric Health User ID, or "me"


@dataclass(frozen=True)
class Participant:
    participant_id: str
    health_user_id: str
    token_ref: str  # the reference, not the token

    def __repr__(self) -> str:  # keep references out of logs anyway
        return f"Participant({self.participant_id!r})"


def _safe_id(pid: str) -> bool:
    return bool(pid) and pid not in (".", "..") and not any(c in pid for c in "/\\\0") and pid == pid.strip()


def check_reference(ref: str) -> str:
    """The kind of ``ref`` (``file``, ``env`` or ``arn``); a :class:`ConfigError` when it is none of them."""
    if ref.startswith("file:") and len(ref) > len("file:"):
        return "file"
    if ref.startswith("env:") and _ENV_NAME.match(ref[len("env:") :]):
        return "env"
    if _ARN.match(ref):
        return "arn"
    raise ConfigError(SETTING, "refresh_token must be a reference: file:PATH, env:NAME or a Secrets Manager ARN")


def load_participants(uri: str) -> list[Participant]:
    """The participants of the CSV at ``uri`` (local path or fsspec URI), checked."""
    try:
        fs, path = filesystem(uri)
        with fs.open(path, "rb") as fh:
            text = fh.read().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(SETTING, f"cannot read the participants file ({type(exc).__name__})") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows or tuple(c.strip() for c in rows[0]) != HEADER:
        raise ConfigError(SETTING, f"the first line must be the header {','.join(HEADER)}")
    participants: list[Participant] = []
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(HEADER):
            raise ConfigError(SETTING, f"line {line}: expected {len(HEADER)} columns, found {len(row)}")
        pid, user, ref = (c.strip() for c in row)
        if not _safe_id(pid):
            raise ConfigError(SETTING, f"line {line}: participant_id is empty or cannot be used in a path")
        if pid in seen:
            raise ConfigError(SETTING, f"line {line}: participant_id occurs twice")
        if not _USER_ID.match(user):
            raise ConfigError(SETTING, f"line {line}: health_user_id is empty or not a plain id")
        try:
            check_reference(ref)
        except ConfigError as exc:
            raise ConfigError(SETTING, f"line {line}: {str(exc).split(': ', 1)[1]}") from None
        seen.add(pid)
        participants.append(Participant(pid, user, ref))
    if not participants:
        raise ConfigError(SETTING, "the participants file lists no participant")
    return participants


def resolve(ref: str, participant_id: str, secrets_client_factory=None) -> str:  # noqa: ANN001
    """The refresh token ``ref`` points to. Errors name the participant and the kind of reference only."""
    kind = check_reference(ref)
    where = f"participant {participant_id}: refresh_token ({kind} reference)"
    if kind == "file":
        try:
            with open(os.path.expanduser(ref[len("file:") :]), encoding="utf-8") as fh:
                token = fh.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(SETTING, f"{where}: cannot read the file ({type(exc).__name__})") from None
    elif kind == "env":
        token = os.environ.get(ref[len("env:") :], "").strip()
        if not token:
            raise ConfigError(SETTING, f"{where}: the environment variable is not set")
    else:
        token = _secret(ref, where, secrets_client_factory)
    if not token or any(c.isspace() for c in token):
        raise ConfigError(SETTING, f"{where}: empty or not a single token")
    return token


def _secret(arn: str, where: str, factory) -> str:  # noqa: ANN001
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    match = _ARN.match(arn)
    assert match is not None
    try:
        client = factory(match.group(1)) if factory else boto3.client("secretsmanager", region_name=match.group(1))
        value = client.get_secret_value(SecretId=arn).get("SecretString") or ""
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise ConfigError(SETTING, f"{where}: Secrets Manager refused ({code})") from None
    except BotoCoreError as exc:
        raise ConfigError(SETTING, f"{where}: Secrets Manager unreachable ({type(exc).__name__})") from None
    if value.lstrip().startswith("{"):
        try:
            value = str(json.loads(value).get("refresh_token") or "")
        except (ValueError, AttributeError):
            raise ConfigError(SETTING, f"{where}: the secret is JSON without a refresh_token member") from None
    return value.strip()
