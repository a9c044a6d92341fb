"""Imported by the transform's fork server only (``set_forkserver_preload``): it ends with the run.

Its parent is the run process that started it; the pool workers it forks set their own death signal
in their initializer (:func:`fitbit_pipeline.transform._init_worker`).
"""

from __future__ import annotations

from .lifeline import die_with_parent, parent_pid_from_env

_RUN_PID = parent_pid_from_env()
if _RUN_PID is not None:
    die_with_parent(_RUN_PID)
