"""The same `python run.py` on the production stack, with its real servers on loopback.

moto's S3 server, the MLflow tracking server, the ZenML server and Airflow 3.3
(its own virtualenv) are started by `python -m stack.services` on free ports,
with their state, ZenML's config and Airflow's home in a temporary folder.
Everything runs in subprocesses, the way a user runs it, so this test's own
ZenML client (the embedded store of the other tests) is never switched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time

import boto3
import pytest
from mlflow import MlflowClient

from stack.airflow.client import AirflowClient
from stack.settings import load_settings
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

AIRFLOW_VENV = ROOT / ".venv-airflow"
MODEL = "image-classifier"


def _free_port(count: int = 1) -> int:
    """A free port on loopback (the first of ``count`` consecutive free ones)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + count < 65000 and all(_free(port + i) for i in range(count)):
            return port
    raise RuntimeError("no free port")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _run(args: list[str], env: dict[str, str], timeout: int = 900):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


ZENML_RUNS = """
import json
from zenml.client import Client
runs = Client().list_pipeline_runs(size=100, sort_by="asc:created")
print(json.dumps([
    {"name": r.name, "pipeline": r.pipeline.name if r.pipeline else None,
     "status": r.status.value, "orchestrator_run_id": r.orchestrator_run_id}
    for r in runs.items
]))
"""


def zenml_runs(env: dict[str, str]) -> list[dict]:
    result = _run(["-c", ZENML_RUNS], env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def production(tmp_path_factory, digits_dir):
    """Start the services on free ports, register the production stack; stop all after."""
    if not (AIRFLOW_VENV / "bin" / "airflow").exists():
        pytest.fail("Airflow is not installed: run `make airflow-venv` (make test does).")
    state = tmp_path_factory.mktemp("production")
    env = {
        **os.environ,
        "ZENML_CONFIG_PATH": str(state / "zenml"),
        "CLEARSIGHT_STATE_DIR": str(state),
        "CLEARSIGHT_S3_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
        "CLEARSIGHT_MLFLOW_URI": f"http://127.0.0.1:{_free_port()}",
        "CLEARSIGHT_ZENML_URL": f"http://127.0.0.1:{_free_port()}",
        "CLEARSIGHT_AIRFLOW_URL": f"http://127.0.0.1:{_free_port()}",
        "CLEARSIGHT_ALERTMANAGER_URL": f"http://127.0.0.1:{_free_port()}",
        "CLEARSIGHT_PUSHGATEWAY_URL": f"http://127.0.0.1:{_free_port()}",
        "CLEARSIGHT_AIRFLOW_LOG_PORT": str(_free_port(2)),
        "CLEARSIGHT_CATALOG_URL": f"sqlite:///{state / 'catalog.db'}",
        "ZENML_AUTO_OPEN_DASHBOARD": "false",
    }
    # ZENML_REPOSITORY_PATH stays: the tests never touch the checkout's .zen (see conftest).
    for name in ("ZENML_STORE_URL", "ZENML_ACTIVE_STACK_ID"):
        env.pop(name, None)
    started = _run(["-m", "stack.services", "start"], env, timeout=600)
    try:
        assert started.returncode == 0, started.stdout + started.stderr[-3000:]
        registered = _run(["-m", "stack.register", "production"], env, timeout=300)
        assert registered.returncode == 0, registered.stderr[-3000:]
        yield {"env": env, "state": state, "data": digits_dir}
    finally:
        _run(["-m", "stack.serve_stop"], env, timeout=300)
        _run(["-m", "stack.services", "stop"], env, timeout=300)


def _settings(env: dict[str, str]):
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(previous)


def test_run_py_on_the_production_stack(production):
    env = production["env"]
    result = _run(["run.py", "--data-dir", str(production["data"])], env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "stack           production" in result.stdout
    assert "submitted to Airflow as DAG" in result.stdout
    assert re.search(r"gate            v\d+ promoted", result.stdout), result.stdout
    assert "smoke test      true" in result.stdout

    settings = _settings(env)
    # The artifacts are in the bucket: the images by content hash and ZenML's artifacts.
    s3 = boto3.client("s3", **settings.boto3_kwargs())
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.artifact_bucket)
        for item in page.get("Contents", [])
    ]
    assert len([k for k in keys if k.startswith("images/sha256/")]) == 1797
    assert any(k.startswith("calibrate_model/model/") and k.endswith(".keras") for k in keys)

    # The MLflow runs are on the tracking server, their artifacts in the MLflow bucket.
    mlflow = MlflowClient(tracking_uri=settings.mlflow_uri)
    champion = mlflow.get_model_version_by_alias(MODEL, "champion")
    run = mlflow.get_run(champion.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics, run
    mlflow_keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.mlflow_bucket)
        for item in page.get("Contents", [])
    ]
    assert any(champion.run_id in key for key in mlflow_keys), mlflow_keys[:20]
    # ... and the tracking server itself lists them (served from that bucket).
    served = [a.path for a in mlflow.list_artifacts(champion.run_id)]
    assert served, f"MLflow lists no artifacts for run {champion.run_id}"
    assert all(any(path in key for key in mlflow_keys) for path in served), (served, mlflow_keys)

    # Every pipeline ran as an Airflow DAG run that succeeded, and ZenML's run of it
    # completed carrying that Airflow run id.
    runs = zenml_runs(env)
    assert {r["pipeline"] for r in runs} >= {"ingest", "train", "promote", "deploy"}
    assert all(r["status"] == "completed" for r in runs), runs
    airflow = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
    for dag_file in settings.airflow_dags.glob("*.zip"):
        assert oct(dag_file.stat().st_mode & 0o777) == "0o600"  # holds a ZenML API token
        dag_runs = airflow.dag_runs(dag_file.stem)
        assert [r["state"] for r in dag_runs] == ["success"], dag_runs
        assert dag_runs[0]["dag_run_id"] in {r["orchestrator_run_id"] for r in runs}
    assert_token_files_are_private(settings)


def _mode(path) -> str:
    return oct(path.stat().st_mode & 0o777)


def assert_token_files_are_private(settings) -> None:
    """The ZenML API token (DAG configs, airflow.db) and the passwords: this user's only."""
    for folder in (settings.services_dir, settings.airflow_home, settings.airflow_dags):
        assert _mode(folder) == "0o700", folder
    for secret_file in (settings.credentials_file, settings.airflow_home / "passwords.json"):
        assert _mode(secret_file) == "0o600", secret_file
    database = settings.airflow_home / "airflow.db"
    # Airflow's database holds the serialized DAGs with every task's environment: ZenML's
    # store settings, and the API token when the server asks for one.
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        serialized = " ".join(str(row[0]) for row in db.execute("SELECT data FROM serialized_dag"))
    assert "ZENML_STORE_URL" in serialized
    assert _mode(database) == "0o600", database
    # Everything Airflow and the other servers wrote (logs included) is private.
    for folder in (settings.services_dir, settings.airflow_home):
        exposed = [p for p in folder.rglob("*") if not p.is_symlink() and p.stat().st_mode & 0o077]
        assert not exposed, exposed[:10]


def test_schedules_are_airflow_dags_and_a_triggered_run_takes_overrides(production):
    env = production["env"]
    first = _run(["run.py", "schedule", "--data-dir", str(production["data"])], env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert re.search(r"ingest\s+0 2 \* \* \*\s+created", first.stdout), first.stdout
    assert re.search(r"retrain\s+0 3 \* \* 0\s+created", first.stdout), first.stdout
    assert re.search(r"monitor\s+0 \* \* \* \*\s+created", first.stdout), first.stdout
    again = _run(["run.py", "schedule", "--data-dir", str(production["data"])], env)
    assert again.returncode == 0 and again.stdout.count("unchanged") == 3, again.stdout

    settings = _settings(env)
    schedules = json.loads((settings.airflow_home / "schedules.json").read_text())
    airflow = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
    for name, cron in (
        ("ingest-schedule", "0 2 * * *"),
        ("retrain-schedule", "0 3 * * 0"),
        ("monitor-schedule", "0 * * * *"),
    ):
        dag = airflow.wait_for_dag(schedules[name]["dag_id"])
        assert dag["timetable_summary"] == cron and not dag["is_paused"], dag

    bad = _run(["run.py", "trigger", "retrain", "--conf", '{"epoch": 1}'], env, timeout=120)
    assert bad.returncode != 0 and "Known fields" in bad.stderr, bad.stderr[-2000:]
    # The weekly retrain chain, now: ingest, train, the gate, the champion served.
    triggered = _run(["run.py", "trigger", "retrain", "--conf", '{"epochs": 1}'], env)
    assert triggered.returncode == 0, triggered.stdout[-3000:] + triggered.stderr[-3000:]
    run_id = re.search(r"\(Airflow run (\S+)\)", triggered.stdout).group(1)
    assert run_id.startswith("manual__")
    (chain,) = [r for r in zenml_runs(env) if r["orchestrator_run_id"] == run_id]
    assert (chain["pipeline"], chain["status"]) == ("retrain", "completed"), chain
    assert "step record_retrain_outcome: completed" in triggered.stdout, triggered.stdout[-3000:]
    mlflow = MlflowClient(tracking_uri=settings.mlflow_uri)
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    newest = mlflow.search_runs(experiments, order_by=["attributes.start_time DESC"])[0]
    assert newest.data.params["epochs"] == "1"
    assert json.loads(newest.data.tags["run_overrides"]) == {"epochs": 1}


def test_a_failing_step_fails_the_dag_run_and_the_zenml_run(production, tmp_path):
    env = production["env"]
    broken = tmp_path / "broken"
    for label in ("cat", "dog"):
        (broken / label).mkdir(parents=True)
        (broken / label / "a.png").write_bytes(b"not an image at all")
    before = len(zenml_runs(env))
    result = _run(["run.py", "--pipeline", "ingest", "--data-dir", str(broken)], env)
    assert result.returncode != 0
    assert "failed" in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]
    runs = zenml_runs(env)
    assert len(runs) == before + 1 and runs[-1]["status"] == "failed", runs[-1]
    settings = _settings(env)
    airflow = AirflowClient(settings.airflow_url, settings.airflow_user, settings.airflow_password)
    newest = max(settings.airflow_dags.glob("ingest*.zip"), key=lambda p: p.stat().st_mtime)
    deadline = time.monotonic() + 60
    while airflow.dag_runs(newest.stem)[0]["state"] == "running" and time.monotonic() < deadline:
        time.sleep(1)
    assert airflow.dag_runs(newest.stem)[0]["state"] == "failed"


MLFLOW_RUN_COUNT = """
import sys
from mlflow import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
ids = [e.experiment_id for e in client.search_experiments()]
count, token = 0, None
while ids:
    page = client.search_runs(ids, max_results=1000, page_token=token)
    count += len(page)
    token = page.token
    if not token:
        break
print(count)
"""


def mlflow_run_count(env: dict[str, str]) -> int:
    result = _run(["-c", MLFLOW_RUN_COUNT, env["CLEARSIGHT_MLFLOW_URI"]], env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("service", "named"), [("mlflow", "MLflow tracking server"), ("s3", "S3 endpoint")]
)
def test_a_stopped_server_fails_fast_and_submits_nothing(production, service, named):
    env = production["env"]
    settings = _settings(env)
    before = len(zenml_runs(env))
    dags_before = sorted(p.name for p in settings.airflow_dags.iterdir())
    mlflow_runs_before = mlflow_run_count(env)
    stopped = _run(["-m", "stack.services", "stop", service], env, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    try:
        started = time.monotonic()
        result = _run(["run.py", "--data-dir", str(production["data"])], env, timeout=300)
        took = time.monotonic() - started
        assert result.returncode != 0
        assert named in result.stderr and "make services" in result.stderr, result.stderr
        assert "nothing was submitted" in result.stderr
        assert "Traceback" not in result.stderr
        assert took < 60, took
    finally:
        restarted = _run(["-m", "stack.services", "start", service], env, timeout=300)
        assert restarted.returncode == 0, restarted.stderr
    # Nothing half-registered: no ZenML run, no DAG for Airflow, no MLflow run.
    assert len(zenml_runs(env)) == before
    assert sorted(p.name for p in settings.airflow_dags.iterdir()) == dags_before
    assert mlflow_run_count(env) == mlflow_runs_before


STACK_STATE = """
import json
from zenml.client import Client
client = Client()
print(json.dumps({
    "secret": client.get_secret("clearsight_s3").secret_values,
    "components": sorted(c.name for c in client.list_stack_components(size=1000).items),
}))
"""


def test_registration_is_idempotent_and_an_invalid_config_writes_nothing(production):
    env = production["env"]
    again = _run(["-m", "stack.register", "production"], env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert "Stack 'production' unchanged and active." in output, output[-3000:]
    changed = [
        line
        for line in output.splitlines()
        if re.search(r"\b(created|updated)$", line) and not line.startswith("flavor")
    ]
    assert not changed, output[-3000:]
    assert output.count("unchanged") >= 8, output[-3000:]  # 2 secrets, 6 components

    state = _run(["-c", STACK_STATE], env, timeout=120)
    before = json.loads(state.stdout.strip().splitlines()[-1])
    # New S3 credentials with a Seldon setting that cannot work: the secret is not
    # rewritten, no component of the Kubernetes deployer appears.
    invalid = {**env, "CLEARSIGHT_SELDON": "kubernetes", "AWS_ACCESS_KEY_ID": "rotated-key"}
    invalid.pop("CLEARSIGHT_SELDON_BASE_URL", None)
    refused = _run(["-m", "stack.register", "production"], invalid, timeout=300)
    assert refused.returncode == 1, refused.stdout + refused.stderr[-3000:]
    assert "CLEARSIGHT_SELDON_BASE_URL" in refused.stderr, refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr, refused.stderr[-3000:]
    state = _run(["-c", STACK_STATE], env, timeout=120)
    after = json.loads(state.stdout.strip().splitlines()[-1])
    assert after == before and "seldon_k8s" not in after["components"], after
