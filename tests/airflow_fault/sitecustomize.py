"""Fault injection for the Airflow tests, loaded only when this folder is on PYTHONPATH.

``FITBIT_TEST_FAULT=<activity>:<failures>:<counter file>`` makes that activity's task raise a
ConnectionError on its first <failures> attempts (a transient fault), then run for real.
"""

import os
from pathlib import Path

_spec = os.environ.get("FITBIT_TEST_FAULT")
if _spec:
    import fitbit_pipeline.orchestration as _orch

    _real = _orch.process_activity
    _activity, _failures, _counter = _spec.split(":", 2)

    def _flaky(run_id, activity, settings=None):
        if activity == _activity:
            counter = Path(_counter)
            done = int(counter.read_text()) if counter.exists() else 0
            if done < int(_failures):
                counter.write_text(str(done + 1))
                raise ConnectionError(f"injected transient fault #{done + 1}")
        return _real(run_id, activity, settings)

    _orch.process_activity = _flaky
