"""``fitbit-pipeline glue deploy``: the package wheel, the job script and six AWS Glue jobs.

Builds the package wheel (``pip wheel --no-deps``; or takes a prebuilt one), uploads it and
``glue_job.py`` to ``s3://$GLUE_SCRIPTS_BUCKET/fitbit_pipeline/`` and creates or updates one
Glue job per activity, ``{GLUE_JOB_PREFIX}_{activity}_processor``: the names and the script
location the Airflow DAG's Glue mode starts. boto3 reads credentials from the standard chain and
honours ``AWS_ENDPOINT_URL`` (how the tests aim it at an emulator).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any

from .activities import ACTIVITIES
from .settings import Settings

S3_FOLDER = "fitbit_pipeline"
SCRIPT_NAME = "glue_job.py"
GLUE_VERSION = "5.0"  # Spark 3.5, Python 3.11
TIMEOUT_MINUTES = 240  # the DAG's execution timeout of an activity
SCRIPT = pathlib.Path(__file__).with_name(SCRIPT_NAME)


class DeployError(ValueError):
    """The deployment is not configured (a missing setting, no wheel to upload)."""


@dataclass
class Deployment:
    script_uri: str
    wheel_uri: str
    jobs: dict[str, str] = field(default_factory=dict)  # job name -> created | updated

    def as_dict(self) -> dict[str, Any]:
        return {"script": self.script_uri, "wheel": self.wheel_uri, "jobs": self.jobs}


def job_name(prefix: str, activity: str) -> str:
    return f"{prefix}_{activity}_processor"


def script_uri(bucket: str) -> str:
    return f"s3://{bucket}/{S3_FOLDER}/{SCRIPT_NAME}"


def project_root() -> pathlib.Path | None:
    """The source tree this package is installed from (editable install or checkout), if any."""
    root = pathlib.Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and 'name = "fitbit-pipeline"' in pyproject.read_text() else None


def build_wheel(out_dir: pathlib.Path, root: pathlib.Path | None = None) -> pathlib.Path:
    """``pip wheel --no-deps``: the package alone (Glue installs its dependencies).

    Built from a clean copy of the tree (pyproject, README, src), so no stale ``build/`` folder
    leaks removed modules into the wheel and the work tree is left as it was.
    """
    root = root or project_root()
    if root is None:
        raise DeployError("no source tree next to the installed package to build a wheel from: pass --wheel")
    tree = out_dir / "tree"
    shutil.copytree(root / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(root / name, tree / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--quiet", "-w", str(out_dir)],
        capture_output=True,
        text=True,
    )
    if built.returncode:
        raise RuntimeError(f"pip wheel failed ({built.returncode}): {built.stderr.strip()[-2000:]}")
    (wheel,) = out_dir.glob("fitbit_pipeline-*.whl")
    return wheel


def job_definition(activity: str, s: Settings, wheel_uri: str) -> dict[str, Any]:
    """The fields of one Glue job (as ``create_job`` and ``update_job``'s ``JobUpdate`` take them)."""
    bucket = s.glue_scripts_bucket
    modules = [wheel_uri, *(m.strip() for m in s.fitbit_glue_python_modules.split(",") if m.strip())]
    args = {
        "--job-language": "python",
        "--additional-python-modules": ",".join(modules),
        "--activity_type": activity,
        "--TempDir": f"s3://{bucket}/{S3_FOLDER}/temp/",
        "--job-bookmark-option": "job-bookmark-disable",  # the pipeline's ledger decides what is new
        "--enable-metrics": "true",
        "--enable-continuous-cloudwatch-log": "true",
    }
    # The buckets the DAG passes anyway, and the configured thresholds (the job has no .env).
    for key in ("source_bucket", "source_prefix", "dest_bucket", "dest_prefix"):
        value = getattr(s, f"fitbit_{key}")
        if value:
            args[f"--{key}"] = value
    if s.fitbit_ranges:
        args["--fitbit_ranges"] = json.dumps(s.fitbit_ranges)
    if s.fitbit_tolerances:
        args["--fitbit_tolerances"] = json.dumps(s.fitbit_tolerances)
    return {
        "Description": f"fitbit-pipeline: stage the {activity} documents of a planned run (Spark engine)",
        "Role": s.fitbit_glue_role_arn,
        "Command": {"Name": "glueetl", "ScriptLocation": script_uri(bucket or ""), "PythonVersion": "3"},
        "DefaultArguments": args,
        "GlueVersion": GLUE_VERSION,
        "WorkerType": s.fitbit_glue_worker_type,
        "NumberOfWorkers": s.fitbit_glue_workers,
        "Timeout": TIMEOUT_MINUTES,
        "MaxRetries": 0,  # Airflow retries the activity
        "ExecutionProperty": {"MaxConcurrentRuns": 1},
    }


def check(s: Settings) -> None:
    required = {"GLUE_SCRIPTS_BUCKET": s.glue_scripts_bucket, "FITBIT_GLUE_ROLE_ARN": s.fitbit_glue_role_arn}
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise DeployError(f"set {' and '.join(missing)} to deploy the Glue jobs")


def deploy(s: Settings, wheel: pathlib.Path | None = None) -> Deployment:
    """Upload the wheel and the script, then create or update the six jobs."""
    import boto3

    check(s)
    bucket = s.glue_scripts_bucket
    assert bucket is not None
    region = s.aws_region or None
    s3 = boto3.client("s3", region_name=region)
    glue = boto3.client("glue", region_name=region)
    with tempfile.TemporaryDirectory(prefix="fitbit-wheel-") as tmp:
        wheel = wheel or build_wheel(pathlib.Path(tmp))
        wheel_key = f"{S3_FOLDER}/{wheel.name}"
        s3.upload_file(str(wheel), bucket, wheel_key)
    s3.upload_file(str(SCRIPT), bucket, f"{S3_FOLDER}/{SCRIPT_NAME}")
    out = Deployment(script_uri(bucket), f"s3://{bucket}/{wheel_key}")
    for a in ACTIVITIES:
        name = job_name(s.glue_job_prefix, a.name)
        definition = job_definition(a.name, s, out.wheel_uri)
        try:
            glue.get_job(JobName=name)
        except glue.exceptions.EntityNotFoundException:
            glue.create_job(Name=name, Tags={"app": "fitbit-pipeline", "activity": a.name}, **definition)
            out.jobs[name] = "created"
        else:
            glue.update_job(JobName=name, JobUpdate=definition)
            out.jobs[name] = "updated"
    return out
