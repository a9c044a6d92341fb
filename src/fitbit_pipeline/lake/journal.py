"""Where a run stands in the commit protocol: ``_state.json`` in the run's staging folder.

States, in order (ARCHITECTURE.md, "Commit protocol"): ``planned`` -> ``staged`` -> ``committing`` (the
point of no return: the run's winners are decided and saved) -> ``applied`` (the warehouse holds the run)
-> ``finished``. ``gated``, ``failed`` and ``abandoned`` end a run that never reached ``committing``.
"""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any

from ..sources import filesystem, is_local
from .paths import staging_uri

PLANNED, STAGED, COMMITTING, APPLIED, FINISHED = "planned", "staged", "committing", "applied", "finished"
GATED, FAILED, ABANDONED = "gated", "failed", "abandoned"
ENDED = (FINISHED, GATED, FAILED, ABANDONED)
STATE_FILE = "_state.json"


def write_state(staging: str, state: str, **extra: Any) -> None:
    """Record ``state`` durably and atomically (a rename locally, one PUT on object storage)."""
    fs, path = filesystem(posixpath.join(staging, STATE_FILE))
    data = json.dumps({"state": state, **extra}).encode()
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if is_local(staging):
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return
    with fs.open(path, "wb") as fh:
        fh.write(data)


def read_state(staging: str) -> dict[str, Any] | None:
    fs, path = filesystem(posixpath.join(staging, STATE_FILE))
    try:
        with fs.open(path, "rb") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        return None


def runs_in_progress(lake: str) -> list[tuple[str, str]]:
    """``(run_id, state)`` of every run whose journal has not ended, oldest first.

    Staging folders without a journal were written by an earlier version, which kept them: not runs in progress.
    """
    fs, root = filesystem(posixpath.join(lake, "staging"))
    if not fs.exists(root):
        return []
    out = []
    for folder in sorted(fs.ls(root, detail=False)):
        name = posixpath.basename(folder.rstrip("/"))
        if not name.startswith("run_id="):
            continue
        run_id = name[len("run_id=") :]
        state = read_state(staging_uri(lake, run_id))
        if state is not None and state["state"] not in ENDED:
            out.append((run_id, state["state"]))
    return out
