"""Configuration: environment variables, a ``.env`` file, then CLI flags (highest)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .gate import GateLimits
from .limits import DEFAULT_LIMITS, Limits
from .notify import NotifyConfig
from .timezones import ZoneMap, check_zone

if TYPE_CHECKING:
    from .lake.maintain import Retention


class Settings(BaseSettings):
    """Every setting, with its environment variable (case-insensitive) as the field name."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # The original design's variables.
    fitbit_source_bucket: str | None = Field(None, description="S3 bucket of the raw exports")
    fitbit_source_prefix: str = Field("", description="key prefix of the raw exports")
    fitbit_dest_bucket: str | None = Field(None, description="S3 bucket of the Parquet lake")
    fitbit_dest_prefix: str = Field("", description="key prefix of the Parquet lake")
    glue_scripts_bucket: str | None = Field(None, description="S3 bucket for Glue job scripts")
    redshift_database: str | None = Field(None, description="Redshift database")
    redshift_schema: str = Field("rural", description="warehouse schema (all warehouses)")
    redshift_temp_dir: str | None = Field(None, description="S3 temp location for Redshift")
    aws_region: str | None = Field(None, description="AWS region")
    glue_job_prefix: str = Field("fitbit", description="Glue job names: {prefix}_{activity}_processor")

    # What the local default needs (URIs; a bucket setting above takes precedence when set).
    fitbit_source: str = Field("data/source", description="source folder or URI of the raw exports")
    fitbit_lake: str = Field("data/lake", description="lake folder or URI")
    fitbit_warehouse: str = Field("data/warehouse.duckdb", description="DuckDB file of the warehouse")
    fitbit_workers: int = Field(0, description="transform processes; 0 = one per core")
    fitbit_max_file_bytes: int = Field(
        256 << 20,
        ge=1,
        description="largest loose source file read; larger ones are rejected (file_too_large)",
    )
    fitbit_account_export_participant_segment: int = Field(
        0,
        ge=0,
        description="Fitbit account exports: the segment of the path below the source root (0: the first folder, "
        "or archive) that names the participant",
    )
    fitbit_engine: Literal["local", "spark"] = Field(
        "local", description="transform engine: local (process pool) or spark (local[*] or the running session)"
    )

    # AWS Glue jobs (`fitbit-pipeline glue deploy`).
    fitbit_glue_role_arn: str | None = Field(None, description="IAM role the Glue jobs run as")
    fitbit_glue_worker_type: str = Field("G.1X", description="Glue worker type (G.1X: 4 vCPU, 16 GB)")
    fitbit_glue_workers: int = Field(5, ge=2, description="Glue workers per job (one is the driver)")
    fitbit_glue_python_modules: str = Field(
        "s3fs", description="pip requirements installed next to the package wheel (comma-separated)"
    )

    # Validation thresholds (see docs/validation.md) and the gate before the production merge.
    fitbit_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description='range overrides, JSON: {"heart.value": [30, 220]}'
    )
    fitbit_tolerances: dict[str, float] = Field(
        default_factory=dict, description='daily-total tolerance overrides, JSON: {"distance": 0.01}'
    )
    fitbit_gate_max_reject_rate: float = Field(0.05, ge=0, le=1, description="rows rejected / read, per activity")
    fitbit_gate_max_file_failure_rate: float = Field(0.20, ge=0, le=1, description="files rejected / processed")
    fitbit_gate_min_files: int = Field(10, ge=0, description="files needed before a file rate can stop a run")

    # Time zones of participants (issue: local timestamps carry no offset).
    fitbit_timezones_csv: str | None = Field(
        None, description="CSV participant_id,timezone,valid_from,valid_to (IANA zones)"
    )
    fitbit_default_timezone: str | None = Field(None, description="IANA zone for participants not in the CSV")
    # Silent participants in the report and its alert.
    fitbit_silent_after_days: int = Field(3, ge=1, description="days without heart-rate data before an alert")
    fitbit_wear_drop_ratio: float = Field(
        0.5, gt=0, le=1, description="alert when the last 7 days' wear falls below this share of the 14 before"
    )

    # Wear time: a valid day has at least this many hours with heart-rate data.
    fitbit_valid_day_hours: float = Field(10.0, ge=0, le=24, description="hours of heart-rate data for a valid day")

    # Maintenance (`fitbit-pipeline maintain`; the DAG runs it after the merge when asked to).
    fitbit_snapshot_retention_days: float = Field(7.0, ge=0, description="maintain: expire lake snapshots older")
    fitbit_staging_retention_days: float = Field(14.0, ge=0, description="maintain: remove ended runs' staging older")
    fitbit_quarantine_retention_days: float = Field(
        180.0, ge=0, description="maintain: remove quarantined raw files of runs older than this"
    )
    fitbit_compact_target_mb: int = Field(64, ge=1, description="maintain: data files below this size are merged")
    fitbit_maintain_after_run: bool = Field(False, description="Airflow: run maintain after each merge")

    # Notifications (CLI and Airflow): any combination; secrets are never logged.
    fitbit_notify_webhook_url: SecretStr | None = Field(None, description="Slack-compatible incoming webhook URL")
    fitbit_notify_smtp_host: str | None = Field(None, description="SMTP server for e-mail notifications")
    fitbit_notify_smtp_port: int = Field(25, description="SMTP port")
    fitbit_notify_smtp_user: str | None = Field(None, description="SMTP user (optional)")
    fitbit_notify_smtp_password: SecretStr | None = Field(None, description="SMTP password (optional)")
    fitbit_notify_smtp_starttls: bool = Field(False, description="use STARTTLS")
    fitbit_notify_email_from: str = Field("fitbit-pipeline@localhost", description="sender address")
    fitbit_notify_email_to: str = Field("", description="comma-separated recipients")
    fitbit_notify_sns_topic_arn: str | None = Field(None, description="Amazon SNS topic ARN")
    fitbit_notify_on_success: bool = Field(False, description="also notify successful runs")

    # Google Health API v4 collector (`fitbit-pipeline collect`; tokens live in the participants file's references).
    google_health_client_id: str | None = Field(None, description="OAuth 2 client id of the Google Health API app")
    google_health_client_secret: SecretStr | None = Field(None, description="OAuth 2 client secret")
    google_health_api_endpoint: str = Field("https://health.googleapis.com/", description="Google Health API root URL")
    google_oauth_token_uri: str = Field("https://oauth2.googleapis.com/token", description="OAuth 2 token endpoint")
    google_health_collect: bool = Field(False, description="Airflow: run the collect task before detect_new_files")
    google_health_participants: str | None = Field(
        None, description="participants CSV (participant_id,health_user_id,refresh_token reference): path or URI"
    )
    google_health_page_size: int = Field(10_000, ge=1, le=10_000, description="data points per list page")
    google_health_requests_per_minute: int = Field(
        300, ge=1, description="request budget per user and minute (the API's default quota)"
    )
    google_health_max_attempts: int = Field(6, ge=1, description="attempts per request (429, 5xx, connection errors)")
    google_health_retry_base_seconds: float = Field(1.0, ge=0, description="first backoff step (doubles, jittered)")
    google_health_retry_max_seconds: float = Field(60.0, ge=0, description="longest backoff step (Retry-After wins)")

    def retention(self) -> Retention:
        from .lake.maintain import Retention

        return Retention(
            snapshot_days=self.fitbit_snapshot_retention_days,
            staging_days=self.fitbit_staging_retention_days,
            quarantine_days=self.fitbit_quarantine_retention_days,
            compact_target_bytes=self.fitbit_compact_target_mb << 20,
        )

    def source_uri(self) -> str:
        if self.fitbit_source_bucket:
            return _s3(self.fitbit_source_bucket, self.fitbit_source_prefix)
        return _local(self.fitbit_source)

    def lake_uri(self) -> str:
        if self.fitbit_dest_bucket:
            return _s3(self.fitbit_dest_bucket, self.fitbit_dest_prefix)
        return _local(self.fitbit_lake)

    def warehouse_target(self) -> str:
        """A DuckDB file path (made absolute), a ``postgresql://``/``redshift://`` URL, or ``redshift``."""
        target = self.fitbit_warehouse
        return target if "://" in target or target == "redshift" else _local(target)

    def workers(self) -> int:
        return self.fitbit_workers or os.cpu_count() or 1

    def valid_day_minutes(self) -> int:
        return round(self.fitbit_valid_day_hours * 60)

    def zone_map(self) -> ZoneMap:
        if self.fitbit_timezones_csv:
            return ZoneMap.from_csv(self.fitbit_timezones_csv, self.fitbit_default_timezone or None)
        if self.fitbit_default_timezone:
            check_zone(self.fitbit_default_timezone)
        return ZoneMap(default=self.fitbit_default_timezone or None)

    def limits(self) -> Limits:
        return DEFAULT_LIMITS.with_overrides(self.fitbit_ranges, self.fitbit_tolerances)

    def notify_config(self) -> NotifyConfig:
        return NotifyConfig(
            webhook_url=self.fitbit_notify_webhook_url,
            smtp_host=self.fitbit_notify_smtp_host,
            smtp_port=self.fitbit_notify_smtp_port,
            smtp_user=self.fitbit_notify_smtp_user,
            smtp_password=self.fitbit_notify_smtp_password,
            smtp_from=self.fitbit_notify_email_from,
            smtp_to=[a.strip() for a in self.fitbit_notify_email_to.split(",") if a.strip()],
            smtp_starttls=self.fitbit_notify_smtp_starttls,
            sns_topic_arn=self.fitbit_notify_sns_topic_arn,
            aws_region=self.aws_region or None,
            on_success=self.fitbit_notify_on_success,
        )

    def gate_limits(self) -> GateLimits:
        return GateLimits(
            self.fitbit_gate_max_reject_rate, self.fitbit_gate_max_file_failure_rate, self.fitbit_gate_min_files
        )


def _s3(bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")


def _local(path: str) -> str:
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))
