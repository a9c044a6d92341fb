"""Transform workers and the CLI's own process allocate Arrow memory with the system allocator (it returns
freed buffers to the system), unless the user chose another with ``ARROW_DEFAULT_MEMORY_POOL``."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

# The transform's own pool context; each worker reports the allocator Arrow chose in it.
_PROBE = """
from concurrent.futures import ProcessPoolExecutor
from fitbit_pipeline import transform
if __name__ == "__main__":
    with ProcessPoolExecutor(2, mp_context=transform._forkserver(), initializer=transform._init_worker,
                             initargs=(transform._worker_env(), __import__("os").getpid())) as pool:
        probe = "__import__('pyarrow').default_memory_pool().backend_name"
        print(sorted(set(pool.map(eval, [probe] * 4))))
"""


def _allocator_in(args: list[str], chosen: str | None) -> str:
    """What a Python process run with ``args`` prints, with ``ARROW_DEFAULT_MEMORY_POOL`` set to ``chosen``
    (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.mark.parametrize(("chosen", "expected"), [(None, "['system']"), ("mimalloc", "['mimalloc']")])
def test_workers_allocator(tmp_path, chosen, expected) -> None:
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    assert _allocator_in([str(script)], chosen) == expected


# The CLI's own process (the one that commits and applies a run), once its callback has run.
_CLI_PROBE = """
import pyarrow
from fitbit_pipeline.cli import app
@app.command("probe-allocator")
def probe() -> None:
    print(pyarrow.default_memory_pool().backend_name)
app(["probe-allocator"])
"""


@pytest.mark.parametrize(("chosen", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_cli_process_allocator(chosen, expected) -> None:
    assert _allocator_in(["-c", _CLI_PROBE], chosen) == expected


# Each worker converts a Python list, as the transform does, after its initializer has run.
_CONVERT = """
from concurrent.futures import ProcessPoolExecutor
from fitbit_pipeline import transform
if __name__ == "__main__":
    with ProcessPoolExecutor(2, mp_context=transform._forkserver(), initializer=transform._init_worker,
                             initargs=(transform._worker_env(), __import__("os").getpid())) as pool:
        convert = "len(__import__('pyarrow').array(['P-1'] * 3, __import__('pyarrow').string()))"
        print(list(pool.map(eval, [convert] * 4)))
"""


def _stand_in_pandas(tmp_path: pathlib.Path) -> tuple[dict[str, str], pathlib.Path]:
    """An environment whose first ``pandas`` on the path is a stand-in that records any import of it in the
    returned file (then refuses it, so pyarrow goes on as without pandas)."""
    fake = tmp_path / "site" / "pandas"
    fake.mkdir(parents=True)
    mark = tmp_path / "pandas-imported"
    (fake / "__init__.py").write_text(f"open({str(mark)!r}, 'a').write('x')\nraise ImportError('stand-in')\n")
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PANDAS_MARK": str(mark)}, mark


def test_workers_convert_python_lists_without_importing_pandas(tmp_path) -> None:
    """pyarrow imports pandas, where it is installed, to check each Python list it converts (~35 MB a worker);
    the workers never do."""
    env, mark = _stand_in_pandas(tmp_path)
    script = tmp_path / "convert.py"
    script.write_text(_CONVERT)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[3, 3, 3, 3]"
    assert not mark.exists()
    # the stand-in is found where nothing keeps it out: the check above can fail
    subprocess.run([sys.executable, "-c", "import pyarrow as pa; pa.array(['x'])"], env=env, timeout=60)
    assert mark.exists()


_OPEN_LAKE = """
import sys
import fitbit_pipeline.pipeline  # what the run's process imports
from fitbit_pipeline.lake import Lake
Lake(sys.argv[1], "rural").snapshots()  # every table loaded
print(sorted(m for m in ("pandas", "pyarrow.dataset") if m in sys.modules))
"""


def test_opening_a_lake_leaves_pandas_out(tmp_path) -> None:
    """The run's process opens the lake before the transform: creating its tables (a fresh lake) or loading
    them must not import pyarrow.dataset and pandas (~40 MB held while the workers run); the commit imports
    them later, when it describes the files."""
    script = tmp_path / "open.py"
    script.write_text(_OPEN_LAKE)
    lake = str(tmp_path / "lake")
    runs = [subprocess.run([sys.executable, str(script), lake], capture_output=True, text=True, timeout=120)
            for _ in range(2)]  # fmt: skip
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    assert [r.stdout.strip() for r in runs] == ["[]", "[]"]


def test_the_models_iceberg_schemas_are_what_pyiceberg_derives() -> None:
    """The tables are created from the model's own Iceberg schemas: they must be exactly what pyiceberg makes
    of the model's Arrow schemas (types, ids, required)."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.schema import assign_fresh_schema_ids

    from fitbit_pipeline import schema
    from fitbit_pipeline.lake.catalog import iceberg_schema

    for t in schema.DATA_TABLES:
        derived = assign_fresh_schema_ids(Catalog._convert_schema_if_needed(t.schema))
        assert iceberg_schema(t) == derived, t.name


_RUN = """
import os, sys
from fitbit_pipeline import pipeline
from fitbit_pipeline.sample_data import generate
transform, seen = pipeline.transform, []
def watched(*args, **kwargs):  # what the run's process has imported when its workers start
    seen.append(os.path.exists(os.environ["PANDAS_MARK"]))
    return transform(*args, **kwargs)
pipeline.transform = watched
if __name__ == "__main__":
    root = sys.argv[1]
    generate(root + "/source", participants=1, days=1)
    summary = pipeline.run(root + "/source", root + "/lake", root + "/w.duckdb", "rural", workers=2)
    print(summary.status, seen)
"""


def test_a_first_run_starts_its_workers_without_pandas(tmp_path) -> None:
    """On a fresh lake and warehouse the run's process reaches the transform without having imported pandas
    (pyarrow would, to convert Python rows; the lake state goes in as bound parameters)."""
    env, _ = _stand_in_pandas(tmp_path)
    script = tmp_path / "run.py"
    script.write_text(_RUN)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "succeeded [False]"
