"""Checks of the configured places before a command touches anything: each failure is a :class:`ConfigError`.

A source must exist and hold at least one file; a lake must be a folder we can write (or an S3 bucket
we can reach with credentials); a DuckDB warehouse must be a file path, not a folder nor a path under
a regular file; a warehouse URL must have a known scheme. S3 is asked once, with a bounded wait.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from typing import Any

from .errors import ConfigError, mask_url
from .sources import fetch_concurrency, is_local

S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 10
S3_ATTEMPTS = 2


def _local_path(uri: str) -> pathlib.Path:
    return pathlib.Path(uri.removeprefix("file://"))


def _under_a_file(path: pathlib.Path) -> pathlib.Path | None:
    """The nearest existing ancestor of ``path`` (itself excluded) when it is not a folder."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def has_local_files(path: pathlib.Path) -> bool:
    """Whether ``path`` is a file or a folder with at least one file somewhere below it."""
    if path.is_file():
        return True
    return any(files for _, _, files in os.walk(path))


def check_source(uri: str, setting: str) -> None:
    """``uri`` exists and holds at least one file (an empty or mistyped source is a configuration error)."""
    if is_local(uri):
        path = _local_path(uri)
        if not path.exists():
            raise ConfigError(setting, f"the source {uri} does not exist")
        if not has_local_files(path):
            raise ConfigError(setting, f"the source {uri} holds no files")
        return
    fetch_concurrency()  # a bad value stops the run here, not in every transform worker
    bucket, key = _bucket_key(uri, setting)
    prefix = key.rstrip("/") + "/" if key else ""
    answer = _s3_call(setting, uri, "list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
    if not answer.get("KeyCount") and not (key and _s3_exists(setting, uri, bucket, key)):
        raise ConfigError(setting, f"the source {uri} holds no files")


def check_lake(uri: str, setting: str) -> None:
    """``uri`` is a folder we can create and write into, or an S3 bucket we can reach."""
    if not is_local(uri):
        bucket, _ = _bucket_key(uri, setting)
        _s3_call(setting, uri, "head_bucket", Bucket=bucket)
        return
    path = _local_path(uri)
    if path.exists() and not path.is_dir():
        raise ConfigError(setting, f"the lake {uri} is a regular file, not a folder")
    blocker = _under_a_file(path)
    if blocker is not None:
        raise ConfigError(setting, f"the lake {uri} is under the regular file {blocker}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(setting, f"cannot write into the lake {uri}: {exc.strerror or type(exc).__name__}") from None


def check_bucket(bucket: str, setting: str) -> None:
    """The S3 bucket ``bucket`` is reachable with the process's credentials."""
    _s3_call(setting, f"s3://{bucket}", "head_bucket", Bucket=bucket)


def check_warehouse(target: str, setting: str) -> None:
    """A known kind of target; a DuckDB path that is neither a folder nor under a regular file."""
    from .warehouse import warehouse_kind

    try:
        kind = warehouse_kind(target)
    except ValueError:
        scheme = target.split("://", 1)[0]
        raise ConfigError(
            setting,
            f"unsupported warehouse URL scheme {scheme!r}: use a DuckDB file, postgresql://... or redshift://...",
        ) from None
    if kind != "duckdb":
        return
    path = pathlib.Path(target)
    if path.is_dir():
        raise ConfigError(setting, f"the warehouse {target} is a folder, not a DuckDB file")
    blocker = _under_a_file(path)
    if blocker is not None:
        raise ConfigError(setting, f"the warehouse {target} is under the regular file {blocker}")


# ---- S3 ----------------------------------------------------------------------------------------


def _bucket_key(uri: str, setting: str) -> tuple[str, str]:
    scheme, _, rest = uri.partition("://")
    if scheme not in ("s3", "s3a"):
        raise ConfigError(setting, f"unsupported URL scheme {scheme!r} in {mask_url(uri)}: use a folder or s3://")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ConfigError(setting, f"no bucket in {mask_url(uri)}")
    return bucket, key


def _client() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
        retries={"max_attempts": S3_ATTEMPTS, "mode": "standard"},
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config)


def _s3_exists(setting: str, uri: str, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        _s3_call(setting, uri, "head_object", Bucket=bucket, Key=key, raw_client_errors=True)
    except ClientError:
        return False
    return True


def _s3_call(setting: str, uri: str, operation: str, *, raw_client_errors: bool = False, **params: Any) -> Any:
    """One S3 request with a bounded wait; credential, network and access failures as ConfigError."""
    from botocore import exceptions as bx

    where = mask_url(uri)
    try:
        return getattr(_client(), operation)(**params)
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        raise ConfigError(
            "AWS credentials", f"none found for {where} (environment, AWS profile or instance role)"
        ) from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError):
        endpoint = "AWS_ENDPOINT_URL" if os.environ.get("AWS_ENDPOINT_URL_S3") is None else "AWS_ENDPOINT_URL_S3"
        name = endpoint if os.environ.get(endpoint) else setting
        raise ConfigError(name, f"cannot reach S3 for {where} (gave up after {S3_ATTEMPTS} attempts)") from None
    except bx.ClientError as exc:
        if raw_client_errors:
            raise
        code = str(exc.response.get("Error", {}).get("Code", "error"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket") or status == 404:
            raise ConfigError(setting, f"the bucket of {where} does not exist") from None
        raise ConfigError(setting, f"S3 refused access to {where} ({code})") from None
    except bx.BotoCoreError as exc:
        raise ConfigError(setting, f"S3 request for {where} failed ({type(exc).__name__})") from None
