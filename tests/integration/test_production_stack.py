"""The same `python run.py` on the production stack, with its real servers on loopback.

moto's S3 server, the MLflow tracking server, the ZenML server and Airflow 3.3
(its own virtualenv) are started by `python -m stack.services` on free ports,
with their state, ZenML's config and Airflow's home in a temporary folder.
Everything runs in subprocesses, the way a user runs it, so this test's own
ZenML client (the embedded store of the other tests) is never switched.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest
from mlflow import MlflowClient

from stack.airflow.client import AirflowClient
from stack.settings import load_settings
from stack.zenml_server import server_info as zenml_server_info
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
        # MLflow asks for a login: this process's MlflowClient reads as the review app
        # does, with the read-only account (the subprocesses keep the env above).
        with pytest.MonkeyPatch.context() as patch:
            for key, value in _settings(env).mlflow_reader_environment().items():
                patch.setenv(key, value)
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
        assert oct(dag_file.stat().st_mode & 0o777) == "0o600"  # the tasks' environment
        dag_runs = airflow.dag_runs(dag_file.stem)
        assert [r["state"] for r in dag_runs] == ["success"], dag_runs
        assert dag_runs[0]["dag_run_id"] in {r["orchestrator_run_id"] for r in runs}
    assert_token_files_are_private(settings)


def _mode(path) -> str:
    return oct(path.stat().st_mode & 0o777)


JWT = re.compile(rb"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def zenml_tokens(data: bytes, server_id: str) -> list[bytes]:
    """The JSON web tokens in ``data`` that the ZenML server issued (its id in their claims).

    Airflow's own tokens (its API, its task workers) are JWTs too, with other claims.
    """
    found = []
    for match in JWT.finditer(data):
        payload = match.group().split(b".")[1]
        with contextlib.suppress(ValueError):
            claims = base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
            if server_id.encode() in claims:
                found.append(match.group()[:16])
    return found


def assert_token_files_are_private(settings) -> None:
    """No ZenML credential where Airflow keeps the tasks' environment; the rest this user's only.

    ZenML writes a run- or schedule-scoped API token into each task's environment; the
    DAG generator leaves it out of the DAG files, so Airflow's database and the task logs
    never see it, nor the service account's API key (Airflow's own environment) or the
    ZenML password.
    """
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
    assert settings.zenml_api_key and settings.zenml_password  # b"" would be in anything
    forbidden = (settings.zenml_api_key.encode(), settings.zenml_password.encode())
    server_id = zenml_server_info(settings.zenml_url)["id"]
    for path in [p for p in settings.airflow_home.rglob("*") if p.is_file() and not p.is_symlink()]:
        if path.suffix == ".zip":  # the DAG files: their config.json is compressed
            with zipfile.ZipFile(path) as dag:
                contents = [dag.read(name) for name in dag.namelist()]
        else:  # airflow.db (serialized DAGs, rendered task fields, -wal), the task logs
            contents = [path.read_bytes()]
        leaked = [secret[:12] for secret in forbidden for data in contents if secret in data]
        leaked += [token for data in contents for token in zenml_tokens(data, server_id)]
        assert not leaked, (path, leaked)
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
    reader = _settings(env).mlflow_reader_environment()
    result = _run(["-c", MLFLOW_RUN_COUNT, env["CLEARSIGHT_MLFLOW_URI"]], {**env, **reader}, 120)
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


def test_mlflow_asks_for_a_login_and_the_review_app_account_only_reads(production):
    """Anonymous: 401; the read-only account reads a model but cannot move its alias (403)."""
    import requests

    from stack.mlflow_auth import ADMIN_USERNAME, READER_USERNAME

    env = production["env"]
    settings = _settings(env)
    writer = (settings.mlflow_username, settings.mlflow_password)  # the pipelines' account
    reader = (READER_USERNAME, settings.mlflow_reader_password)  # the review app's

    def status(method: str, path: str, auth=None, **body) -> int:
        url = f"{settings.mlflow_uri}/api/2.0/mlflow/{path}"
        if method == "GET":
            return requests.get(url, params=body, auth=auth, timeout=60).status_code
        return requests.request(method, url, json=body, auth=auth, timeout=60).status_code

    model, alias = {"name": "access-check"}, {"name": "access-check", "alias": "champion"}
    assert status("GET", "registered-models/get", **model) == 401
    assert (
        status("GET", "registered-models/get", (READER_USERNAME, "wrong-password"), **model) == 401
    )
    assert status("POST", "registered-models/create", writer, **model) == 200
    source = f"s3://{settings.mlflow_bucket}/access-check/model"
    assert status("POST", "model-versions/create", writer, **model, source=source) == 200
    assert status("POST", "registered-models/alias", writer, **alias, version="1") == 200
    assert status("GET", "registered-models/alias", reader, **alias) == 200
    assert status("POST", "registered-models/alias", reader, **alias, version="1") == 403
    assert status("DELETE", "registered-models/alias", reader, **alias) == 403
    # The pipelines' account is no admin: it cannot look up other users.
    assert status("GET", "users/get", writer, username=ADMIN_USERNAME) == 403

    # A new admin password through MLflow's update_user_password, stored in
    # credentials.env, is the one the next `make services` logs in with.
    rotated = _run(["-m", "stack.mlflow_auth", "rotate", "admin"], env, timeout=120)
    assert rotated.returncode == 0, rotated.stderr[-2000:]
    assert _settings(env).mlflow_admin_password != settings.mlflow_admin_password
    again = _run(["-m", "stack.services", "start", "mlflow"], env, timeout=120)
    assert again.returncode == 0 and "already running" in again.stdout, again.stderr[-2000:]
    assert _mode(settings.services_dir / "mlflow" / "basic_auth.ini") == "0o600"


def test_the_zenml_server_asks_for_the_default_users_password(production):
    from stack.zenml_server import password_accepted

    env = production["env"]
    settings = _settings(env)
    url = settings.zenml_url
    assert not password_accepted(url, "default", "")  # ZenML's default: an empty password
    assert not password_accepted(url, "default", "not-the-password")
    assert password_accepted(url, "default", settings.zenml_password)
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{url}/api/v1/current-user", timeout=10)  # noqa: S310
    assert anonymous.value.code == 401
    # The client's login (ZenML's credentials store) is this user's only.
    assert _mode(Path(env["ZENML_CONFIG_PATH"]) / "credentials.yaml") == "0o600"


STEP_USERS = """
import json, sys
from zenml.client import Client
run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
print(json.dumps({"status": run.status.value, "user": run.user.name if run.user else None,
                  "steps": sorted({s.user.name for s in run.steps.values() if s.user})}))
"""


def test_a_revoked_airflow_key_stops_runs_with_a_clear_error_and_a_new_key_works(
    production, tmp_path
):
    from stack.zenml_server import API_KEY_NAME, SERVICE_ACCOUNT

    env = production["env"]
    old_key = _settings(env).zenml_api_key
    tiny = tmp_path / "tiny"
    for label in ("0", "1"):
        (tiny / label).mkdir(parents=True)
        for image in sorted((production["data"] / "train" / label).glob("*.png"))[:6]:
            (tiny / label / image.name).write_bytes(image.read_bytes())
    zenml = str(Path(sys.executable).parent / "zenml")
    revoke = [zenml, "service-account", "api-key", SERVICE_ACCOUNT, "update", API_KEY_NAME]
    revoked = subprocess.run(
        [*revoke, "--active", "false"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert revoked.returncode == 0, revoked.stdout[-2000:] + revoked.stderr[-2000:]

    refused = _run(["run.py", "--pipeline", "ingest", "--data-dir", str(tiny)], env)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "refused the API key" in refused.stderr, refused.stderr[-3000:]
    assert "make services" in refused.stderr and "Traceback" not in refused.stderr

    # make services issues a new key and restarts Airflow with it.
    restarted = _run(["-m", "stack.services", "start"], env, timeout=600)
    assert restarted.returncode == 0, restarted.stdout[-3000:] + restarted.stderr[-3000:]
    assert f"API key of service account {SERVICE_ACCOUNT} replaced" in restarted.stdout
    assert "restarting: its tasks get the new ZenML API key" in restarted.stdout
    new_key = _settings(env).zenml_api_key
    assert new_key and new_key != old_key

    result = _run(["run.py", "--pipeline", "ingest", "--data-dir", str(tiny)], env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The run was submitted by the default user; its steps ran as the service account.
    users = _run(["-c", STEP_USERS], env, timeout=120)
    assert users.returncode == 0, users.stderr[-2000:]
    newest = json.loads(users.stdout.strip().splitlines()[-1])
    assert newest == {"status": "completed", "user": "default", "steps": [SERVICE_ACCOUNT]}
    # Nothing Airflow keeps holds a ZenML credential, the schedules' DAGs included.
    assert_token_files_are_private(_settings(env))
