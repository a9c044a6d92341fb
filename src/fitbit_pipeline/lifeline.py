"""Processes that end with their parent: the transform's fork server and its pool workers.

A killed run (``kill -9``) must not leave workers behind holding memory. On Linux the kernel sends
SIGKILL to a process when its parent ends (``prctl(PR_SET_PDEATHSIG)``): the fork server asks for it
(its parent is the run), each worker too (its parent is the fork server). A run that ended before
the request is caught by checking the run's pid afterwards; a run killed but not yet reaped by its own parent
(a zombie, e.g. while that parent still reads the run's output) counts as ended, else a fork server started
just as the run was killed would outlive it and hold its output pipes open. Elsewhere this is a no-op.
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
    """Whether ``pid`` runs: it exists and is not a zombie (ended, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]  # the field after "(comm)"
    except FileNotFoundError:
        return False  # gone in between
    except (OSError, IndexError):
        return True  # no /proc: as far as we can tell it exists
    return state not in (b"Z", b"X")


def parent_pid_from_env() -> int | None:
    value = os.environ.get(PARENT_PID_ENV)
    return int(value) if value and value.isdigit() else None
