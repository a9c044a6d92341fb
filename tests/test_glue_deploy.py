"""``fitbit-pipeline glue deploy`` against S3 and Glue emulated over HTTP (moto server on 127.0.0.1)."""

from __future__ import annotations

import json
import pathlib
import urllib.request
import zipfile

import pytest
from typer.testing import CliRunner

from fitbit_pipeline import glue_job
from fitbit_pipeline.activities import ACTIVITIES
from fitbit_pipeline.cli import app
from fitbit_pipeline.settings import Settings

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "rural-glue-scripts"
ROLE = "arn:aws:iam::123456789012:role/fitbit-glue"
JOBS = {f"rural_{a.name}_processor": a.name for a in ACTIVITIES}


def _add_update_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2 emulates CreateJob and GetJob but not UpdateJob: give the emulator a minimal one."""
    from moto.glue.responses import GlueResponse

    if hasattr(GlueResponse, "update_job"):
        return

    def update_job(self):  # noqa: ANN001, ANN202 - moto's handler signature
        job = self.glue_backend.get_job(self._get_param("JobName"))
        fields = {
            "Role": "role",
            "Description": "description",
            "Command": "command",
            "DefaultArguments": "default_arguments",
            "GlueVersion": "glue_version",
            "WorkerType": "worker_type",
            "NumberOfWorkers": "number_of_workers",
            "Timeout": "timeout",
            "MaxRetries": "max_retries",
            "ExecutionProperty": "execution_property",
        }
        for key, value in self._get_param("JobUpdate").items():
            setattr(job, fields.get(key, key), value)
        return json.dumps({"JobName": job.name})

    monkeypatch.setattr(GlueResponse, "update_job", update_job, raising=False)


@pytest.fixture(scope="module")
def endpoint():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(endpoint, monkeypatch, tmp_path):
    """Dummy credentials, the emulator's endpoint, a fresh emulator state and the scripts bucket."""
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "FITBIT_RANGES", "FITBIT_GLUE_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "GLUE_SCRIPTS_BUCKET": BUCKET,
        "GLUE_JOB_PREFIX": "rural",
        "FITBIT_GLUE_ROLE_ARN": ROLE,
        "FITBIT_DEST_BUCKET": "rural-lake",
        "FITBIT_DEST_PREFIX": "fitbit",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)  # no .env of the work tree
    _add_update_job(monkeypatch)
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return s3, boto3.client("glue", region_name="eu-west-1")


def _deploy(*args: str) -> dict:
    result = CliRunner().invoke(app, ["glue", "deploy", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_deploy_uploads_wheel_and_script_and_creates_then_updates_the_jobs(aws, monkeypatch, tmp_path) -> None:
    s3, glue = aws
    monkeypatch.setenv("FITBIT_RANGES", '{"heart.value": [30, 220]}')
    first = _deploy()  # builds the wheel from this source tree
    wheel_key = "fitbit_pipeline/fitbit_pipeline-0.1.0-py3-none-any.whl"
    script_uri = f"s3://{BUCKET}/fitbit_pipeline/glue_job.py"  # where the DAG's Glue mode points
    wheel_uri = f"s3://{BUCKET}/{wheel_key}"
    assert first == {"script": script_uri, "wheel": wheel_uri, "jobs": dict.fromkeys(JOBS, "created")}

    # The objects: the script as in the package, a wheel of this package holding the engine and the script.
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {"fitbit_pipeline/glue_job.py", wheel_key}
    script = s3.get_object(Bucket=BUCKET, Key="fitbit_pipeline/glue_job.py")["Body"].read()
    assert script == pathlib.Path(glue_job.__file__).read_bytes()
    wheel = tmp_path / "fitbit_pipeline-0.1.0-py3-none-any.whl"
    s3.download_file(BUCKET, wheel_key, str(wheel))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read("fitbit_pipeline-0.1.0.dist-info/METADATA").decode()
    assert {"fitbit_pipeline/spark_engine.py", "fitbit_pipeline/glue_job.py", "fitbit_pipeline/transform.py"} <= names
    assert "Name: fitbit-pipeline" in metadata and not any("__pycache__" in n for n in names)

    # The jobs: one per activity, Glue 5.0 Spark ETL on Python 3, the script, the wheel, the role.
    jobs = {j["Name"]: j for j in glue.get_jobs()["Jobs"]}
    assert set(jobs) == set(JOBS)
    for name, activity in JOBS.items():
        job = glue.get_job(JobName=name)["Job"]
        assert job["Command"] == {"Name": "glueetl", "ScriptLocation": script_uri, "PythonVersion": "3"}
        assert job["GlueVersion"] == "5.0" and job["Role"] == ROLE
        assert job["WorkerType"] == "G.1X" and job["NumberOfWorkers"] == 5
        args = job["DefaultArguments"]
        assert args["--additional-python-modules"] == f"{wheel_uri},s3fs"
        assert args["--activity_type"] == activity
        assert args["--dest_bucket"] == "rural-lake" and args["--dest_prefix"] == "fitbit"
        assert args["--job-bookmark-option"] == "job-bookmark-disable"
        # the configured thresholds reach the job, and the job script reads them back
        job_settings = glue_job.settings_for({"fitbit_ranges": args["--fitbit_ranges"]})
        assert job_settings.limits() == Settings().limits()
        assert job_settings.limits().range("heart.value") == (30, 220)

    # A second deploy (a prebuilt wheel, more workers) updates the same six jobs in place.
    monkeypatch.setenv("FITBIT_GLUE_WORKERS", "10")
    second = _deploy("--wheel", str(wheel))
    assert second["jobs"] == dict.fromkeys(JOBS, "updated")
    assert len(glue.get_jobs()["Jobs"]) == 6
    for name in JOBS:
        job = glue.get_job(JobName=name)["Job"]
        assert job["NumberOfWorkers"] == 10 and job["Command"]["ScriptLocation"] == script_uri
    assert {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]} == keys


def test_deploy_without_a_role_is_a_configuration_error(aws, monkeypatch) -> None:
    s3, glue = aws
    monkeypatch.delenv("FITBIT_GLUE_ROLE_ARN")
    result = CliRunner().invoke(app, ["glue", "deploy"])
    assert result.exit_code == 2 and "FITBIT_GLUE_ROLE_ARN" in result.output
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0 and glue.get_jobs()["Jobs"] == []
