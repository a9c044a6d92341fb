"""pyiceberg's overwrite snapshot, with manifest evaluators that are safe to share between its threads.

pyiceberg 0.12's ``_OverwriteFiles`` plans the files an overwrite deletes on its worker pool, and every
worker calls one manifest evaluator per partition spec. That evaluator keeps the manifest it is looking at
in an attribute (``_ManifestEvalVisitor.partition_fields``) between setting it and reading it, so a thread
switch in between evaluates one manifest against another's partition bounds. A manifest holding a file to
delete can then be skipped, and the commit fails with ``ValidationException: Missing required files to
delete`` (seen in CI on a 2-core machine; about one overwrite in fifteen when threads switch often). Scans
are not affected: they give each thread an evaluator of its own.

The subclass below serialises each evaluator; reading the manifests stays parallel. Remove it once
pyiceberg evaluates manifests thread-safely in ``_deleted_entries``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pyiceberg.manifest import ManifestFile
from pyiceberg.table import Transaction
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update.snapshot import _OverwriteFiles


class SerialEvaluatorOverwrite(_OverwriteFiles):
    """An overwrite whose manifest evaluators run one manifest at a time."""

    def _build_manifest_evaluator(self, spec_id: int) -> Callable[[ManifestFile], bool]:
        evaluate = super()._build_manifest_evaluator(spec_id)
        lock = threading.Lock()

        def serial(manifest: ManifestFile) -> bool:
            with lock:
                return evaluate(manifest)

        return serial


def overwrite(tx: Transaction, properties: dict[str, str]) -> SerialEvaluatorOverwrite:
    """An overwrite snapshot of ``tx``'s table on ``main`` (``UpdateSnapshot.overwrite``, made thread-safe)."""
    return SerialEvaluatorOverwrite(
        operation=Operation.OVERWRITE,
        transaction=tx,
        io=tx._table.io,
        snapshot_properties=properties,
    )
