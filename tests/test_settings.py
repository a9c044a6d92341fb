"""`.env.example` documents every setting the code reads, and a copy of it is a valid configuration."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from fitbit_pipeline.settings import Settings
from fitbit_pipeline.warehouse.redshift_backend import RedshiftSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / ".env.example"


def _documented() -> set[str]:
    return set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), flags=re.M))


def _read_by_code() -> set[str]:
    """Environment variables named in the package and the DAG (``os.environ.get("X")``) and settings fields."""
    names = {f.upper() for f in Settings.model_fields} | {f.upper() for f in RedshiftSettings.model_fields}
    for path in [*ROOT.joinpath("src", "fitbit_pipeline").rglob("*.py"), *ROOT.joinpath("dags").glob("*.py")]:
        names |= set(re.findall(r"environ\.get\(\s*\"((?:FITBIT|AWS|REDSHIFT|GLUE)_[A-Z0-9_]+)\"", path.read_text()))
    return names - {"AWS_DEFAULT_REGION"}  # the AWS SDK's own fallback for AWS_REGION


def test_every_setting_is_documented_in_env_example() -> None:
    missing = sorted(_read_by_code() - _documented())
    assert not missing, f".env.example does not document {missing}"


def test_a_copy_of_env_example_is_a_valid_configuration(tmp_path, monkeypatch) -> None:
    shutil.copy(EXAMPLE, tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    for name in _documented():
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.redshift_schema == "rural" and s.fitbit_engine == "local" and s.fitbit_workers == 0
    assert s.source_uri().endswith("data/source") and s.lake_uri().endswith("data/lake")
    assert s.zone_map().empty and s.fitbit_notify_webhook_url is None
    assert RedshiftSettings().redshift_port == 5439 and not RedshiftSettings().configured
