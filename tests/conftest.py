"""Shared test helpers: real files, real warehouses (DuckDB files, a real PostgreSQL server), the reference fixtures.

Fixtures: ``tests/fixtures`` (a copy of the reference fixtures, see its README); a missing fixture is an
error, never a skip. In CI (``CI=true``) a skipped test fails, unless its reason is one of ``ALLOWED_SKIPS``
(the live Redshift test, which needs a real cluster).

PostgreSQL: ``FITBIT_TEST_POSTGRES_URL`` (a server whose user may create databases), or else a
throw-away server started for the session from ``/usr/lib/postgresql/*/bin`` (``initdb`` into a
temporary folder, 127.0.0.1, a free port, fsync off; through ``runuser -u postgres`` when root).
Without binaries the PostgreSQL tests are skipped with the reason, except in CI (``CI=true``),
where they fail.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb
import pytest

from fitbit_pipeline import pipeline, schema
from fitbit_pipeline.sql import Names, placeholders

from .pg_server import PostgresServer, create_database, postgres_bindir
from .s3_support import moto_port  # noqa: F401 - a fixture of the S3 and Redshift tests

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
WAREHOUSES = ("duckdb", "postgres")
ALLOWED_SKIPS = ("live Redshift test:",)  # the only skips CI accepts (documented in README.md)


def create_unpartitioned_intraday(execute: Callable[[str], object], schema_name: str = "rural") -> None:
    """Create a PostgreSQL schema's intraday tables unpartitioned, as an earlier version did (and as Redshift's
    tables are): ``ensure_schema`` then keeps them so."""
    names = Names(schema_name, "postgres")
    execute(names.create_schema())
    for t in schema.INTRADAY.values():
        execute(names.create_table(t).replace(' PARTITION BY RANGE ("date")', ""))


def _fixtures() -> pathlib.Path:
    if not (FIXTURES / "expected.json").exists():
        pytest.fail(f"reference fixtures not found at {FIXTURES} (they are part of the repository)", pytrace=False)
    return FIXTURES


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_unexpected_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """In CI, a skip whose reason is not allowed becomes a failure (a skipped test tests nothing)."""
    if not in_ci() or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if not reason.startswith(ALLOWED_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), which only allows {ALLOWED_SKIPS}: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    return _fixtures()


@pytest.fixture(scope="session")
def expected() -> dict[str, dict]:
    return json.loads((_fixtures() / "expected.json").read_text())


# ---- PostgreSQL ----------------------------------------------------------------------------------


def unavailable(reason: str) -> None:
    """Skip with ``reason`` locally; fail in CI, where every warehouse must be tested."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: not skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for the session (started here unless given)."""
    url = os.environ.get("FITBIT_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[postgres]')")
    bindir = postgres_bindir()
    if bindir is None:
        unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found in FITBIT_TEST_PG_BINDIR, "
            "/usr/lib/postgresql/*/bin or on PATH: install postgresql or set FITBIT_TEST_POSTGRES_URL"
        )
    server = PostgresServer(bindir)  # type: ignore[arg-type]
    try:
        url = server.start()
    except RuntimeError as exc:
        server.stop()
        unavailable(f"could not start PostgreSQL from {bindir}: {exc}")
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh databases on the session's server (dropped afterwards); returns their URLs."""
    import psycopg

    created: list[str] = []

    def make() -> str:
        name, url = create_database(postgres_server, "fitbit_test")
        created.append(name)
        return url

    yield make
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- test environments ------------------------------------------------------------------------


@dataclass
class Env:
    """A source folder, a lake and a warehouse (a DuckDB file, or a PostgreSQL database when ``postgres_url``)."""

    root: pathlib.Path
    postgres_url: str | None = None
    source_dir: pathlib.Path | None = None  # default: <root>/source

    @property
    def kind(self) -> str:
        return "postgres" if self.postgres_url else "duckdb"

    @property
    def source(self) -> pathlib.Path:
        return self.source_dir or self.root / "source"

    @property
    def lake(self) -> pathlib.Path:
        return self.root / "lake"

    @property
    def warehouse(self) -> pathlib.Path:
        return self.root / "warehouse.duckdb"

    @property
    def target(self) -> str:
        return self.postgres_url or str(self.warehouse)

    def run(self, schema: str = "rural", **kwargs) -> pipeline.RunSummary:
        kwargs.setdefault("workers", 1)
        return pipeline.run(str(self.source), str(self.lake), self.target, schema, **kwargs)

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        """Rows of ``query`` (``?`` placeholders) from whichever warehouse this is."""
        if self.postgres_url:
            import psycopg

            with psycopg.connect(self.postgres_url) as con:
                return con.execute(placeholders(query, "%s"), params or []).fetchall()
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(query, params or []).fetchall()
        finally:
            con.close()

    def execute(self, statement: str, params: list | None = None) -> None:
        """Change the warehouse behind the pipeline's back (to set up a scenario)."""
        if self.postgres_url:
            import psycopg

            with psycopg.connect(self.postgres_url, autocommit=True) as con:
                con.execute(placeholders(statement, "%s"), params or [])
            return
        con = duckdb.connect(str(self.warehouse))
        try:
            con.execute(statement, params or [])
        finally:
            con.close()

    def rows(self, table: str, *, exclude: tuple[str, ...] = (), schema: str = "rural") -> list[tuple]:
        """Every row of ``table`` (minus ``exclude`` columns) in one order on every engine (byte order for text)."""
        import pyarrow as pa

        from fitbit_pipeline import schema as model
        from fitbit_pipeline.sql import Names, ident

        fields = [f for f in model.BY_NAME[table].schema if f.name not in exclude]
        collate = ' COLLATE "C"' if self.postgres_url else ""
        order = ", ".join(ident(f.name) + (collate if pa.types.is_string(f.type) else "") for f in fields)
        cols = ", ".join(ident(f.name) for f in fields)
        return self.sql(f"SELECT {cols} FROM {Names(schema).q(table)} ORDER BY {order}")


@pytest.fixture
def warehouse_kind() -> str:
    """Which warehouse ``env``/``make_env`` use; a test module parametrises it over ``WAREHOUSES``."""
    return "duckdb"


@pytest.fixture
def env(tmp_path: pathlib.Path, warehouse_kind: str, request: pytest.FixtureRequest) -> Env:
    (tmp_path / "source").mkdir()
    url = request.getfixturevalue("postgres_db")() if warehouse_kind == "postgres" else None
    return Env(tmp_path, url)


@pytest.fixture
def make_env(tmp_path: pathlib.Path, warehouse_kind: str, request: pytest.FixtureRequest) -> Callable[..., Env]:
    def make(name: str, kind: str | None = None) -> Env:
        kind = kind or warehouse_kind
        url = request.getfixturevalue("postgres_db")() if kind == "postgres" else None
        e = Env(tmp_path / name, url)
        e.source.mkdir(parents=True)
        return e

    return make
