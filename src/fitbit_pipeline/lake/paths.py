"""Where things live below a lake URI."""

from __future__ import annotations

import posixpath


def staging_uri(lake: str, run_id: str) -> str:
    return posixpath.join(lake, "staging", f"run_id={run_id}")


def quarantine_uri(lake: str, run_id: str) -> str:
    return posixpath.join(lake, "quarantine", f"run_id={run_id}")


def production_uri(lake: str, table: str) -> str:
    """The Iceberg table location of ``table`` (``metadata/`` and ``data/`` below it)."""
    return posixpath.join(lake, "production", table)
