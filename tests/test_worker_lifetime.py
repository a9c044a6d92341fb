"""Issue 13, item 10: transform workers (and the fork server) die with a killed run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fitbit_pipeline.sample_data import generate

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")

CLI = Path(sys.executable).with_name("fitbit-pipeline")


def _descendants(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_workers_and_fork_server_die_with_a_killed_run(tmp_path) -> None:
    generate(tmp_path / "source", participants=8, days=10, hr_seconds=True, seed=11)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITBIT_")}
    args = ["run", "--source", "source", "--lake", "lake", "--warehouse", "wh.duckdb", "--workers", "2"]
    run = subprocess.Popen([str(CLI), *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parent = psutil.Process(run.pid)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            workers = _descendants(parent)
            if len(workers) >= 3:  # the fork server and two workers
                break
            time.sleep(0.01)
        assert len(workers) >= 3, f"no workers seen (exit {run.poll()})"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
        workers = [*workers, *(c for w in _alive(workers) for c in _descendants(w))]
        deadline = time.monotonic() + 15
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = _alive(workers)
        assert left == [], f"{len(left)} processes outlived the run: {[p.pid for p in left]}"
    finally:
        for p in [parent, *_descendants(parent), *workers]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if run.poll() is None:
            run.kill()
        run.wait(10)


# A child that asks to die with the run only after the run was killed, while the run is still a zombie.
_LATE_CHILD = """
import pathlib, sys, time
time.sleep(1.0)  # the run is killed meanwhile (and not reaped)
from fitbit_pipeline.lifeline import die_with_parent, parent_pid_from_env
die_with_parent(parent_pid_from_env())
pathlib.Path(sys.argv[1]).write_text("survived")
time.sleep(60)
"""
_RUN = """
import os, signal, subprocess, sys
os.environ["_FITBIT_PARENT_PID"] = str(os.getpid())
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_fork_server_started_as_the_run_is_killed_does_not_outlive_it(tmp_path: Path) -> None:
    """The run dies before its child asked for the death signal, and is not reaped yet (its parent is still
    reading its output): the child must see the zombie as ended and exit, not live on holding the pipes."""
    marker = tmp_path / "survived"
    run = subprocess.Popen([sys.executable, "-c", _RUN, _LATE_CHILD, str(marker)])
    try:
        deadline = time.monotonic() + 30
        while psutil.Process(run.pid).status() != psutil.STATUS_ZOMBIE:  # killed, deliberately not reaped
            assert time.monotonic() < deadline, "the run did not kill itself"
            time.sleep(0.05)
        time.sleep(4.0)  # the child wakes after 1 s and decides
        assert not marker.exists(), "the child outlived its killed run"
    finally:
        run.wait()
        for p in psutil.process_iter(["cmdline"]):  # never leave the child behind, whatever happened
            with contextlib.suppress(psutil.Error):
                if str(marker) in (p.info["cmdline"] or []):
                    p.kill()
