"""Shared test helpers: real files, real DuckDB warehouses, the shared reference fixtures."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pytest

from fitbit_pipeline import pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"


def _fixtures() -> pathlib.Path:
    if not (FIXTURES / "expected.json").exists():
        pytest.skip(f"reference fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    return _fixtures()


@pytest.fixture(scope="session")
def expected() -> dict[str, dict]:
    return json.loads((_fixtures() / "expected.json").read_text())


@dataclass
class Env:
    root: pathlib.Path

    @property
    def source(self) -> pathlib.Path:
        return self.root / "source"

    @property
    def lake(self) -> pathlib.Path:
        return self.root / "lake"

    @property
    def warehouse(self) -> pathlib.Path:
        return self.root / "warehouse.duckdb"

    def run(self, **kwargs) -> pipeline.RunSummary:
        kwargs.setdefault("workers", 1)
        return pipeline.run(str(self.source), str(self.lake), str(self.warehouse), "rural", **kwargs)

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()


@pytest.fixture
def env(tmp_path: pathlib.Path) -> Env:
    (tmp_path / "source").mkdir()
    return Env(tmp_path)


@pytest.fixture
def make_env(tmp_path: pathlib.Path) -> Callable[[str], Env]:
    def make(name: str) -> Env:
        e = Env(tmp_path / name)
        e.source.mkdir(parents=True)
        return e

    return make
