"""A throw-away PostgreSQL server for the tests and the benchmark (no pytest here: ``bench/`` imports it too)."""

from __future__ import annotations

import glob
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from urllib.parse import urlsplit, urlunsplit


def postgres_bindir() -> pathlib.Path | None:
    """PostgreSQL server binaries: ``FITBIT_TEST_PG_BINDIR``, else the newest /usr/lib/postgresql/*/bin, else PATH."""
    if os.environ.get("FITBIT_TEST_PG_BINDIR"):
        candidates = [pathlib.Path(os.environ["FITBIT_TEST_PG_BINDIR"])]
    else:
        found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
        found.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/")[-3])])
        candidates = [pathlib.Path(p).parent for p in reversed(found)]
        if shutil.which("initdb"):
            candidates.append(pathlib.Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    return next((d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))


def create_database(server: str, prefix: str) -> tuple[str, str]:
    """A new, empty database ``<prefix>_<random>`` on the server at URL ``server``: its name and URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, with_database(server, name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throw-away PostgreSQL cluster in a temporary folder (trust auth, 127.0.0.1 only)."""

    def __init__(self, bindir: pathlib.Path) -> None:
        self.bindir = bindir
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="fitbit-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.as_user: list[str] = []

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{pathlib.Path(args[0]).name} failed: {proc.stderr.strip()} {log[-2000:]}")

    def start(self) -> str:
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            if not shutil.which("runuser"):
                raise RuntimeError("running as root without runuser: cannot start PostgreSQL as user postgres")
            try:
                shutil.chown(self.root, "postgres")
            except LookupError:
                raise RuntimeError("running as root and there is no user postgres to run the server") from None
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        for attempt in range(3):
            self.port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
            )
            try:
                self._run(
                    str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                    "-o", options, "start",
                )  # fmt: skip
                return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            except RuntimeError:
                if attempt == 2:  # the port was taken in between, or a real failure
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
