"""CI fails on any skipped test but the live Redshift one: checked on a throw-away test module."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from .conftest import ROOT

INNER = """
import pytest

def test_runs():
    pass

def test_binaries_missing():
    pytest.skip("server binaries not found")

def test_live_redshift():
    pytest.skip("live Redshift test: no cluster configured")

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_known_bug():
    assert False
"""


def _pytest(folder: pathlib.Path, target: str, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    plugins = ["-p", "tests.conftest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    args = [*plugins, "-q", "-rs", "--rootdir", str(folder), "-c", str(folder / "pytest.ini")]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, str(folder / target)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ci_turns_unexpected_skips_into_failures(tmp_path: pathlib.Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "test_module_skip.py").write_text('import pytest\n\npytest.importorskip("no_such_module_x")\n')
    local = _pytest(tmp_path, "", None)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 passed, 3 skipped, 1 xfailed" in local.stdout, local.stdout
    ci = _pytest(tmp_path, "test_inner.py", "true")
    assert ci.returncode == 1 and "1 failed, 1 passed, 1 skipped, 1 xfailed" in ci.stdout, ci.stdout + ci.stderr
    assert "skipped in CI" in ci.stdout and "server binaries not found" in ci.stdout
    module = _pytest(tmp_path, "test_module_skip.py", "true")
    assert module.returncode != 0 and "no_such_module_x" in module.stdout, module.stdout
