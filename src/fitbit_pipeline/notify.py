"""Notifications: a Slack-compatible incoming webhook, e-mail over SMTP and Amazon SNS.

Used by the CLI and the Airflow DAG alike. A message names the run, what failed or what the
gate stopped, and key counts: never a measured value, never a secret. A channel that fails is
logged (by name, without its URL or credentials) and never hides the others.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal

from pydantic import SecretStr

from .errors import safe_message

log = logging.getLogger(__name__)
Level = Literal["success", "failure", "gated", "alert"]
_ICON = {"success": ":white_check_mark:", "failure": ":x:", "gated": ":warning:", "alert": ":bell:"}


@dataclass
class Notification:
    title: str
    level: Level
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join([self.title, *self.lines])


@dataclass
class NotifyConfig:
    webhook_url: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "fitbit-pipeline@localhost"
    smtp_to: list[str] = field(default_factory=list)
    smtp_starttls: bool = False
    sns_topic_arn: str | None = None
    aws_region: str | None = None
    on_success: bool = False
    timeout_s: float = 10.0

    @property
    def channels(self) -> list[str]:
        return [
            name
            for name, on in (
                ("webhook", self.webhook_url is not None),
                ("email", bool(self.smtp_host and self.smtp_to)),
                ("sns", bool(self.sns_topic_arn)),
            )
            if on
        ]


def run_notification(summary: dict[str, Any], *, report_url: str | None = None) -> Notification:
    """A message from :meth:`RunSummary.as_dict` (counts only)."""
    status = summary["status"]
    level: Level = "success" if status in ("succeeded", "nothing-new") else "gated" if status == "gated" else "failure"
    t = summary.get("totals", {})
    lines = [
        f"files: found {t.get('files_found', 0)}, new {t.get('files_new', 0)}, changed {t.get('files_changed', 0)}, "
        f"loaded {t.get('files_loaded', 0)}, rejected {t.get('files_rejected', 0)}",
        f"rows: read {t.get('rows_read', 0)}, loaded {t.get('rows_loaded', 0)}, rejected {t.get('rows_rejected', 0)}, "
        f"duplicates {t.get('rows_duplicate', 0)}, warnings {t.get('warnings', 0)}",
    ]
    if summary.get("rules"):
        lines.append("rejects by rule: " + ", ".join(f"{r} {n}" for r, n in summary["rules"].items()))
    if summary.get("message"):
        lines.append(summary["message"])
    if report_url:
        lines.append(f"report: {report_url}")
    return Notification(f"fitbit-pipeline run {summary['run_id']}: {status}", level, lines)


def failure_notification(
    run: str, task: str, error: BaseException | str, *, attempt: int | None = None
) -> Notification:
    """A task or run failure: the error's class and its text without values or secrets (:func:`safe_message`)."""
    what = safe_message(error)
    lines = [f"task: {task}" + (f" (attempt {attempt})" if attempt else ""), f"error: {what}"]
    return Notification(f"fitbit-pipeline {run}: {task} failed", "failure", lines)


class Notifier:
    def __init__(self, config: NotifyConfig) -> None:
        self.config = config

    def send(self, n: Notification) -> dict[str, str]:
        """Send to every configured channel; the outcome per channel ("sent" or the failure)."""
        if n.level == "success" and not self.config.on_success:
            return {}
        outcome: dict[str, str] = {}
        for channel in self.config.channels:
            try:
                getattr(self, f"_{channel}")(n)
                outcome[channel] = "sent"
            except Exception as exc:  # one channel failing never hides the others
                outcome[channel] = f"failed: {type(exc).__name__}"
                log.warning("notification via %s failed: %s", channel, type(exc).__name__)
        return outcome

    def _webhook(self, n: Notification) -> None:
        assert self.config.webhook_url is not None
        body = json.dumps({"text": f"{_ICON[n.level]} " + n.text()}).encode()
        req = urllib.request.Request(
            self.config.webhook_url.get_secret_value(), data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:  # noqa: S310 - configured URL
            if resp.status >= 300:
                raise RuntimeError(f"webhook answered HTTP {resp.status}")

    def _email(self, n: Notification) -> None:
        c = self.config
        msg = EmailMessage()
        msg["Subject"] = n.title
        msg["From"] = c.smtp_from
        msg["To"] = ", ".join(c.smtp_to)
        msg.set_content(n.text())
        with smtplib.SMTP(c.smtp_host or "localhost", c.smtp_port, timeout=c.timeout_s) as smtp:
            if c.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if c.smtp_user and c.smtp_password:
                smtp.login(c.smtp_user, c.smtp_password.get_secret_value())
            smtp.send_message(msg)

    def _sns(self, n: Notification) -> None:
        import boto3

        client = boto3.client("sns", region_name=self.config.aws_region)
        client.publish(TopicArn=self.config.sns_topic_arn, Subject=n.title[:100], Message=n.text())
