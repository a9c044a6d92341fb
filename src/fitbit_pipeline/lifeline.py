"""Processes that end with their parent: the transform's fork server and its pool workers.

A killed run (``kill -9``) must not leave workers behind holding memory. On Linux the kernel sends
SIGKILL to a process when its parent ends (``prctl(PR_SET_PDEATHSIG)``): the fork server asks for it
(its parent is the run), each worker too (its parent is the fork server). A parent that ended before
the request is caught by checking the parent's pid afterwards. Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_PID_ENV = "_FITBIT_PARENT_PID"  # the run's pid, as the fork server inherits it
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None) -> None:
    """Have the kernel kill this process when its parent ends; end now if ``parent_pid`` is already gone."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and not _alive(parent_pid):
        os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parent_pid_from_env() -> int | None:
    value = os.environ.get(PARENT_PID_ENV)
    return int(value) if value and value.isdigit() else None
