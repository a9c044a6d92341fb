"""Fault injection for the crash tests: ``FITBIT_FAULT_POINT=<name>`` kills this process at that point.

The points are named where the commit protocol has a boundary or a long step (ARCHITECTURE.md lists
them). ``FITBIT_FAULT_SIGNAL`` picks the signal (``KILL``, the default, or ``TERM``); ``FITBIT_FAULT_SKIP=n``
lets the first ``n`` passes through the point go by. ``STOP`` suspends the process there until the test has
changed the world (filled the disk, cut the endpoint) and sends ``SIGCONT``. Unset, a point costs one lookup.
"""

from __future__ import annotations

import os
import signal

_passes: dict[str, int] = {}


def point(name: str) -> None:
    """Die here when the environment names this point."""
    if os.environ.get("FITBIT_FAULT_POINT") != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] <= int(os.environ.get("FITBIT_FAULT_SKIP", "0")):
        return
    sig = getattr(signal, "SIG" + os.environ.get("FITBIT_FAULT_SIGNAL", "KILL").upper())
    os.kill(os.getpid(), sig)
    if sig not in (signal.SIGKILL, signal.SIGSTOP):  # a handled signal may return: stop here all the same
        signal.pause()
