"""The lake's overwrite snapshots evaluate manifests correctly when pyiceberg's worker threads interleave.

pyiceberg 0.12 shares one stateful manifest evaluator between the threads that plan an overwrite's deletes;
a thread switch at the wrong moment evaluated a manifest against another's partition bounds, and a commit
failed with ``Missing required files to delete`` (CI, test_incremental). This test forces that switch."""

from __future__ import annotations

import datetime as dt
import threading
from types import SimpleNamespace

from pyiceberg.conversions import to_bytes
from pyiceberg.expressions import EqualTo, Or
from pyiceberg.manifest import PartitionFieldSummary
from pyiceberg.types import DateType

from fitbit_pipeline.lake.catalog import open_catalog, open_tables
from fitbit_pipeline.lake.overwrite import overwrite

_EPOCH = dt.date(1970, 1, 1)


def _summary(day: dt.date) -> PartitionFieldSummary:
    bound = to_bytes(DateType(), (day - _EPOCH).days)
    return PartitionFieldSummary.from_args(
        contains_null=False, contains_nan=False, lower_bound=bound, upper_bound=bound
    )


class _PausesOnce(list):
    """Partition summaries whose first read waits (at most ``timeout``) for ``go``; says it is waiting first."""

    def __init__(self, items, waiting: threading.Event, go: threading.Event, timeout: float) -> None:
        super().__init__(items)
        self.waiting, self.go, self.timeout, self.paused = waiting, go, timeout, False

    def __getitem__(self, i):
        if not self.paused:
            self.paused = True
            self.waiting.set()
            self.go.wait(self.timeout)
        return super().__getitem__(i)


class _Announces(list):
    """Partition summaries that set ``read`` when they are read."""

    def __init__(self, items, read: threading.Event) -> None:
        super().__init__(items)
        self.read = read

    def __getitem__(self, i):
        self.read.set()
        return super().__getitem__(i)


def test_manifest_evaluator_is_safe_across_threads(tmp_path) -> None:
    lake = str(tmp_path / "lake")
    table = open_tables(open_catalog(lake), lake, "rural")["intraday_steps"]
    d1, d2, other = dt.date(2024, 11, 1), dt.date(2024, 11, 2), dt.date(2024, 11, 9)
    op = overwrite(table.transaction(), {})
    op.delete_by_predicate(Or(EqualTo("date", d1.isoformat()), EqualTo("date", d2.isoformat())))
    evaluate = op._build_manifest_evaluator(table.spec().spec_id)

    waiting, b_read = threading.Event(), threading.Event()
    # Manifest A holds day d2: the predicate's first term (d1) is false for it, the second (d2) true. Its
    # first read pauses until manifest B's evaluation has begun, so that, without serialisation, the second
    # term would be read from B's bounds (day `other`) and A wrongly skipped.
    a = SimpleNamespace(partitions=_PausesOnce([_summary(d2)], waiting, b_read, timeout=0.5))
    b = SimpleNamespace(partitions=_Announces([_summary(other)], b_read))
    got: dict[str, bool] = {}
    thread_a = threading.Thread(target=lambda: got.__setitem__("a", evaluate(a)))
    thread_a.start()
    assert waiting.wait(10)
    thread_b = threading.Thread(target=lambda: got.__setitem__("b", evaluate(b)))
    thread_b.start()
    thread_a.join(10)
    thread_b.join(10)
    assert got == {"a": True, "b": False}
