"""`python run.py` as a user runs it: real subprocesses on the isolated store."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys

import pytest
import requests
from zenml.client import Client
from zenml.enums import ExecutionStatus

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def model_version(output: str) -> int:
    """The ZenML model version number in a run summary."""
    return int(re.search(r"model version   image-classifier #(\d+) \(ZenML\)", output).group(1))


def run_py(*args: str, env: dict[str, str] | None = None, timeout: int = 900):
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture()
def cli_env(tmp_path):
    yield {"CLEARSIGHT_CATALOG_URL": f"sqlite:///{tmp_path / 'catalog.db'}"}
    deployer = Client().active_stack.model_deployer
    for service in deployer.servers_for("image-classifier"):
        deployer.delete_model_server(service.uuid, force=True)


def test_default_run_trains_a_good_model_then_reuses_it(embedded_stack, digits_dir, cli_env):
    first = run_py("--data-dir", str(digits_dir), env=cli_env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "Traceback" not in first.stdout + first.stderr
    accuracy = float(re.search(r"test metrics\s+accuracy ([0-9.]+)", first.stdout).group(1))
    assert accuracy >= 0.97, first.stdout  # the default config on the bundled digits
    assert re.search(r"fingerprint\s+[0-9a-f]{64}", first.stdout)
    assert "splits          train 1257, val 270, test 270; 10 classes" in first.stdout
    assert re.search(r"gate            v\d+ promoted", first.stdout), first.stdout
    assert re.search(r"champion        image-classifier v\d+ \(ZenML", first.stdout)
    # No ZenML server in the tests: the summary says how to get one; MLflow via make mlflow-ui.
    assert "dashboard       make dashboard, then http://127.0.0.1:8237" in first.stdout
    mlflow_run = re.search(r"MLflow model\s+\S+ v(\d+), run ([0-9a-f]+)", first.stdout)
    assert re.search(
        r"MLflow run      make mlflow-ui, then http://127\.0\.0\.1:5001/#/experiments/\d+"
        rf"/runs/{mlflow_run.group(2)}\n",
        first.stdout,
    ), first.stdout
    assert "--port 5000" not in first.stdout

    second = run_py("--data-dir", str(digits_dir), env=cli_env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "0 uploaded, 1797 already stored" in second.stdout
    last_train = Client().get_pipeline("train").last_run
    statuses = {name: step.status for name, step in last_train.steps.items()}
    never_cached = ("link_dataset", "log_model_metadata", "find_label_issues")
    assert {statuses.pop(name) for name in never_cached} == {ExecutionStatus.COMPLETED}
    assert set(statuses.values()) == {ExecutionStatus.CACHED}, statuses
    # The cached re-run's new model version (the one promoted) carries the same figures.
    versions = [
        Client().get_model_version("image-classifier", model_version(run.stdout))
        for run in (first, second)
    ]
    assert versions[1].number > versions[0].number
    metadata = [version.run_metadata for version in versions]
    for key in ("test_accuracy", "test_macro_f1", "test_ece_after", "registered_model_version"):
        assert metadata[1][key] == metadata[0][key], key
    assert metadata[1]["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)

    assert re.search(r"gate            v\d+ promoted", second.stdout), second.stdout
    # The MLflow version this test registered (earlier tests may have registered others).
    registered = mlflow_run.group(1)
    assert f"MLflow model    image-classifier v{registered}, " in second.stdout  # cached
    assert f"(deployed MLflow v{registered})" in first.stdout, first.stdout[-2500:]
    assert f"(already serving MLflow v{registered})" in second.stdout, second.stdout[-2500:]
    assert "smoke test      true" in first.stdout and "curl -s -X POST" in first.stdout

    url = run_py("endpoint", env=cli_env)
    assert url.returncode == 0 and url.stdout.strip().endswith("/api/v1.0/predictions")
    image = sorted((digits_dir / "test" / "3").glob("*.png"))[0].read_bytes()
    answer = requests.post(
        url.stdout.strip(), json={"binData": base64.b64encode(image).decode()}, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["jsonData"]["predictions"][0]["label"] == "3"


def test_missing_data_folder_names_the_fix(embedded_stack, tmp_path, cli_env):
    result = run_py("--data-dir", str(tmp_path / "missing"), env=cli_env)
    assert result.returncode != 0
    assert "does not exist" in result.stderr and "make data" in result.stderr
    assert "Traceback" not in result.stderr


def test_stack_without_tracker_names_the_fix(tmp_path, cli_env):
    # A fresh ZenML config has only ZenML's own `default` stack: no MLflow tracker.
    fresh = {**cli_env, "ZENML_CONFIG_PATH": str(tmp_path / "fresh-zenml")}
    result = run_py("--pipeline", "train", env=fresh)
    assert result.returncode != 0
    assert "no MLflow experiment tracker" in result.stderr
    assert "python -m stack.register" in result.stderr


def test_default_run_checks_the_whole_stack_before_running_anything(tmp_path, cli_env, digits_dir):
    # ZenML's `default` stack: no tracker, no Evidently data validator, no model
    # deployer. All three are named at once, before ingestion starts.
    fresh = {**cli_env, "ZENML_CONFIG_PATH": str(tmp_path / "fresh-zenml")}
    result = run_py("--data-dir", str(digits_dir), env=fresh)
    assert result.returncode != 0
    for missing in (
        "no MLflow experiment tracker",
        "no Evidently data validator",
        "no model deployer",
    ):
        assert missing in result.stderr, result.stderr
    assert "python -m stack.register" in result.stderr
    assert "zenml stack set embedded" in result.stderr
    assert "Traceback" not in result.stderr
    assert "ingest" not in result.stdout and not (tmp_path / "catalog.db").exists()


def test_help_shows_examples_and_bad_combinations_are_refused(embedded_stack):
    helped = run_py("--help")
    assert helped.returncode == 0
    assert "python run.py --pipeline ingest --dry-run" in helped.stdout
    refused = run_py("--pipeline", "train", "--dry-run")
    assert refused.returncode == 2
    assert "--dry-run applies to the ingest pipeline only" in refused.stderr


def test_invalid_hyperparameters_are_refused_before_running(embedded_stack, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("parameters:\n  hyperparameters:\n    epoch: 5\n")
    result = run_py("--pipeline", "train", "--train-config", str(config))
    assert result.returncode != 0
    assert "Invalid hyper-parameters" in result.stderr and "epoch" in result.stderr
    assert "Traceback" not in result.stderr
