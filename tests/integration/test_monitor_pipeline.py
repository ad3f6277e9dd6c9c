"""The monitor pipeline on a real champion's logged traffic, with a real Pushgateway.

A short training run of this module's model is promoted (lenient floors), so
the version has its reference table and embedding projection. Thirty digits of
the test split are then "served": the champion's calibrated answers and
monitoring features (pixel statistics + the projected embedding, as the server
logs them) are written to a prediction log, with ground truths from feedback
and reviews. The same thirty images inverted make a shifted window in another
catalog, monitored through ``python run.py monitor``, which pushes its gauges
to a Pushgateway started on loopback.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from PIL import Image, ImageOps
from sqlalchemy import insert
from zenml import Model
from zenml.client import Client

from clearsight import prediction_log as plog
from clearsight.catalog import sqlite_url
from clearsight.config import TrainingParameters
from clearsight.features import pixel_features
from clearsight.gate import PromotionRules
from clearsight.monitoring import (
    ACCURACY,
    ALERT,
    DATA_DRIFT,
    OK,
    PUSHGATEWAY_URL_ENV,
    MonitorRules,
    wilson_interval,
)
from clearsight.names import ArtifactName
from clearsight.review import ReviewStore
from tests.conftest import ROOT
from tests.integration.test_seldon_endpoint import free_port
from tests.unit.test_core_monitoring import CONTRACT

pytestmark = pytest.mark.integration

MODEL = "monitor-test-classifier"
IMAGES = 30
RULES = MonitorRules(min_predictions=20, min_labelled=20, max_drift_share=0.3)
PUSHGATEWAY = Path("/usr/bin/prometheus-pushgateway")


@pytest.fixture(scope="module")
def champion(embedded_stack, digits_dir, tmp_path_factory) -> int:
    """A promoted version of MODEL: ingest, a short training run, the gate (lenient floors)."""
    from pipelines import ingest_pipeline, promotion_pipeline, training_pipeline

    catalog = sqlite_url(tmp_path_factory.mktemp("monitor-ingest") / "catalog.db")
    ingest_pipeline(data_dir=str(digits_dir), catalog_url=catalog)
    train = training_pipeline.with_options(
        config_path="configs/train.yaml",
        model=Model(name=MODEL),
        parameters={
            "hyperparameters": TrainingParameters(epochs=4, patience=2).model_dump(mode="json"),
            "label_review": {"enabled": False},
        },
        enable_cache=False,
    )()
    number = Client().get_pipeline_run(train.id).model_version.number
    promotion_pipeline.with_options(
        config_path="configs/promote.yaml",
        parameters={
            "model_name": MODEL,
            "challenger_version": number,
            "champion_version": None,
            "rules": PromotionRules(min_accuracy=0.3, min_macro_f1=0.3, max_ece=0.5).model_dump(
                mode="json"
            ),
        },
    )()
    registry = Client().active_stack.model_registry.mlflow_client
    assert registry.get_model_version_by_alias(MODEL, "champion").tags["zenml_model_version"] == (
        str(number)
    )
    return number


def served(number: int, images: list[bytes]) -> list[dict]:
    """The champion's answers and logged features for ``images``, as the endpoint makes them."""
    from clearsight.models import embedding_model
    from clearsight.preprocess import preprocess_batch

    version = Model(name=MODEL, version=number)
    model = version.get_artifact(ArtifactName.MODEL).load()
    dataset = version.get_artifact(ArtifactName.DATASET).load()
    projection = version.get_artifact(ArtifactName.EMBEDDING_PROJECTION).load()
    batch = preprocess_batch(images, int(model.input_shape[1]), dataset.decoding)
    probabilities = model.predict(batch, verbose=0)
    embedded = projection.project_rows(embedding_model(model).predict(batch, verbose=0))
    answers = []
    for data, p, embedding in zip(images, probabilities, embedded, strict=True):
        features = pixel_features(data, dataset.decoding, int(model.input_shape[1])) | embedding
        answers.append(
            {
                "label": dataset.classes[int(p.argmax())],
                "confidence": float(p.max()),
                "uncertain": bool(p.max() < 0.5),
                "features": {k: float(v) for k, v in features.items()},
            }
        )
    return answers


def write_log(url: str, number: int, answers: list[dict], at: datetime) -> None:
    rows = [
        {
            "created_at": at,
            "puid": f"req-{i // 3}",
            "item": i % 3,
            "model_name": MODEL,
            "model_version": str(number),
            "registered_version": "1",
            "input_kind": "images",
            "image_sha256": None,
            "pixel_sha256": None,
            "label": answer["label"],
            "confidence": answer["confidence"],
            "uncertain": answer["uncertain"],
            "top_k": [],
            "tags": None,
            "features": answer["features"],
        }
        for i, answer in enumerate(answers)
    ]
    engine = plog.connect(url)
    with engine.begin() as connection:
        connection.execute(insert(plog.PREDICTION_LOG), rows)
    engine.dispose()


@pytest.fixture(scope="module")
def test_images(digits_dir) -> tuple[list[bytes], list[str]]:
    files = sorted((digits_dir / "test").rglob("*.png"))
    rng = np.random.default_rng(7)
    chosen = [files[i] for i in sorted(rng.choice(len(files), IMAGES, replace=False))]
    return [f.read_bytes() for f in chosen], [f.parent.name for f in chosen]


def invert(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        ImageOps.invert(image.convert("RGB")).save(buffer, format="PNG")
        return buffer.getvalue()


@pytest.fixture()
def pushgateway(tmp_path):
    if not PUSHGATEWAY.exists():
        pytest.skip(
            "prometheus-pushgateway is not installed: apt-get install prometheus-pushgateway"
        )
    port = free_port()
    process = subprocess.Popen(
        [str(PUSHGATEWAY), f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "pushgateway.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "pushgateway.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def newest_run(pipeline: str):
    """The newest run of a pipeline (hydrated: steps, tags, metadata)."""
    runs = Client().list_pipeline_runs(pipeline_name=pipeline, sort_by="desc:created", size=1)
    return Client().get_pipeline_run(runs.items[0].id)


def monitor_result(run):
    return run.steps["monitoring_decision"].outputs[ArtifactName.MONITOR_RESULT][0].load()


def test_monitor_judges_a_normal_and_a_shifted_window_and_the_drift_triggers_a_gated_retrain(
    champion, test_images, tmp_path, pushgateway, digits_dir
):
    from pipelines import monitoring_pipeline

    images, truths = test_images
    now = datetime.now(UTC)
    answers = served(champion, images)

    # 1. The normal window, with ground truths: feedback for 16 images, reviews for
    # 8 (one review overrides an older, wrong feedback), 6 without a truth.
    normal = sqlite_url(tmp_path / "normal.db")
    write_log(normal, champion, answers, now - timedelta(hours=2))
    given = {i: truths[i] for i in range(24)}
    rows = [
        {
            "puid": f"req-{i // 3}",
            "item": i % 3,
            "label": label,
            "created_at": now,
            "source": "feedback" if i < 16 else "review",
            "recorded_by": None,
        }
        for i, label in given.items()
    ]
    wrong = "0" if truths[20] != "0" else "1"
    rows.append(
        {
            "puid": f"req-{20 // 3}",
            "item": 20 % 3,
            "label": wrong,
            "source": "feedback",
            "created_at": now - timedelta(hours=1),
            "recorded_by": None,
        }
    )
    engine = plog.connect(normal)
    with engine.begin() as connection:
        connection.execute(insert(plog.GROUND_TRUTHS), rows)
    engine.dispose()
    correct = sum(answers[i]["label"] == label for i, label in given.items())

    run = monitoring_pipeline.with_options(
        parameters={
            "model_name": MODEL,
            "catalog_url": normal,
            "rules": RULES.model_dump(mode="json"),
        },
    )()
    run = Client().get_pipeline_run(run.id)
    calm = monitor_result(run)
    assert calm.model_version == str(champion)
    assert calm.figures.predictions == IMAGES and calm.figures.without_features == 0
    assert calm.figures.labelled == 24
    assert calm.figures.labelled_by_source == {"feedback": 16, "review": 8}
    assert calm.figures.correct == correct
    assert calm.figures.accuracy == pytest.approx(correct / 24)
    assert calm.figures.accuracy_ci == pytest.approx(wilson_interval(correct, 24))
    assert calm.drift.drift_share <= RULES.max_drift_share, calm.drift.drifted_columns
    assert calm.check(DATA_DRIFT).status == OK
    assert calm.check(ACCURACY).status in (OK, ALERT)  # decided: 24 >= min_labelled
    assert not any(r.startswith("drift share") for r in calm.retrain_reasons)
    # The Evidently reports and the summary are the run's visualizations.
    for step in ("data_drift_report", "prediction_drift_report"):
        assert run.steps[step].outputs["report_html"][0].visualizations, step
    summary = run.steps["monitoring_decision"].outputs[ArtifactName.MONITOR_SUMMARY][0]
    assert "Monitor: monitor-test-classifier" in summary.load()
    recorded = Client().get_model_version(MODEL, champion).run_metadata["monitoring"]
    assert recorded["production_accuracy"] == pytest.approx(correct / 24)
    assert recorded["labelled"] == 24 and recorded["checks"][DATA_DRIFT] == OK
    assert recorded["run_id"] == str(run.id)

    # 2. The shifted window (the same images inverted), through run.py, pushed.
    shifted = sqlite_url(tmp_path / "shifted.db")
    write_log(shifted, champion, served(champion, [invert(i) for i in images]), now)
    train = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text())
    train["model"]["name"] = MODEL
    # The retrain the monitor triggers: a deliberately weak challenger (one epoch).
    train["parameters"]["hyperparameters"].update(epochs=1, patience=1)
    train["parameters"]["label_review"]["enabled"] = False
    # New labelled data since the champion: the digits plus ten inverted training
    # digits under their labels (what reviewers would add after such a drift).
    grown = tmp_path / "digits-and-reviewed"
    shutil.copytree(digits_dir, grown)
    for path in sorted((digits_dir / "train").rglob("*.png"))[:10]:
        (grown / "train" / path.parent.name / f"inverted-{path.name}").write_bytes(
            invert(path.read_bytes())
        )
    ingest = yaml.safe_load((ROOT / "configs" / "ingest.yaml").read_text())
    ingest["parameters"]["data_dir"] = str(grown)
    (tmp_path / "ingest.yaml").write_text(yaml.safe_dump(ingest))
    ingest["parameters"]["data_dir"] = str(digits_dir)
    (tmp_path / "ingest-unchanged.yaml").write_text(yaml.safe_dump(ingest))
    config = yaml.safe_load((ROOT / "configs" / "monitor.yaml").read_text())
    config["parameters"]["rules"] = RULES.model_dump(mode="json")
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    (tmp_path / "monitor.yaml").write_text(yaml.safe_dump(config))

    def monitor_and_retrain(ingest_config: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "run.py",
                "--train-config",
                str(tmp_path / "train.yaml"),
                "--ingest-config",
                str(tmp_path / ingest_config),
                "monitor",
                "--monitor-config",
                str(tmp_path / "monitor.yaml"),
                "--window-hours",
                "6",
                "--retrain",
                "--actor",
                "monitor-test",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "CLEARSIGHT_CATALOG_URL": shifted,
                PUSHGATEWAY_URL_ENV: pushgateway,
            },
            capture_output=True,
            text=True,
            timeout=600,
        )

    command = monitor_and_retrain("ingest.yaml")
    out = command.stdout
    assert command.returncode == 0, out[-3000:] + command.stderr[-3000:]
    last = newest_run("monitor")
    moved = monitor_result(last)
    assert moved.window_hours == 6
    assert moved.drift.drift_share > RULES.max_drift_share, moved.drift.drifted_columns
    assert "brightness" in moved.drift.drifted_columns
    assert moved.check(DATA_DRIFT).status == ALERT
    assert moved.retrain_reasons[0].startswith(f"drift share {moved.drift.drift_share:.2f} > 0.3")
    assert moved.figures.labelled == 0 and moved.check(ACCURACY).detail.startswith("0 labelled")
    assert re.search(rf"predictions\s+{IMAGES} \(0 without features\)", out), out
    assert f"share {moved.drift.drift_share:.2f}" in out and "[ALERT]" in out
    assert "retrain         recommended" in out and "dashboard       " in out

    metrics = requests.get(f"{pushgateway}/metrics", timeout=10).text
    pushed = {
        line.split("{")[0]
        for line in metrics.splitlines()
        if line.startswith("clearsight_monitor_")
    }
    absent = {  # no label in the shifted window: accuracy figures and decisions are left out
        "clearsight_monitor_production_accuracy",
        "clearsight_monitor_production_accuracy_ci_lower",
        "clearsight_monitor_production_accuracy_ci_upper",
        "clearsight_monitor_class_recall",
        "clearsight_monitor_accuracy_below_floor",
        "clearsight_monitor_critical_recall_below_floor",
    }
    assert pushed == set(CONTRACT) - absent
    drift = [line for line in metrics.splitlines() if line.startswith("clearsight_monitor_drift_d")]
    assert len(drift) == 1 and drift[0].endswith(" 1"), drift
    assert f'model_name="{MODEL}"' in drift[0] and f'model_version="{champion}"' in drift[0]
    assert f'run_id="{last.id}"' in metrics

    # 3. The drift triggered the retrain chain: ingest, train, the gate; the weak
    # challenger is rejected, so nothing is deployed and the champion stays.
    assert "The monitor asks for retraining" in out, out[-3000:]
    chain = {}
    for pipeline in ("ingest", "train", "promote"):
        newest = newest_run(pipeline)
        assert "retrain:monitor" in {tag.name for tag in newest.tags}, pipeline
        assert newest.run_metadata["retrain_trigger"] == "monitor"
        assert newest.run_metadata["retrain_reasons"] == moved.retrain_reasons
        chain[pipeline] = newest
    decision = (
        Client()
        .get_pipeline_run(chain["promote"].id)
        .steps["promotion_gate"]
        .outputs[ArtifactName.PROMOTION_DECISION][0]
        .load()
    )
    assert not decision.promote and decision.challenger.version > champion
    assert "rejected (production unchanged)" in out
    assert "deployment      none: the gate rejected the challenger" in out
    registry = Client().active_stack.model_registry.mlflow_client
    served_now = registry.get_model_version_by_alias(MODEL, "champion")
    assert served_now.tags["zenml_model_version"] == str(champion)
    train_run = Client().get_pipeline_run(chain["train"].id)
    registered = train_run.steps["register_model"].outputs[ArtifactName.REGISTERED_MODEL][0].load()
    tags = registry.get_run(registered["mlflow_run_id"]).data.tags
    assert tags["clearsight.retrain_trigger"] == "monitor"
    assert tags["clearsight.retrain_reason"] == "; ".join(moved.retrain_reasons)
    audit = ReviewStore(shifted).audit_log()
    assert audit[0]["action"] == "retrain" and audit[0]["outcome"] == "rejected"
    assert audit[0]["actor"] == "monitor-test" and audit[0]["target"] == MODEL
    assert audit[0]["details"]["reasons"] == moved.retrain_reasons
    assert set(audit[0]["details"]["runs"]) == {"monitor", "ingest", "train", "promote"}

    # 4. The same drift again with nothing new to learn from (the champion's own
    # dataset): the chain stops after ingest and says what to do instead.
    again = monitor_and_retrain("ingest-unchanged.yaml")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "retrain         skipped: the ingested dataset is the one the champion" in again.stdout
    audit = ReviewStore(shifted).audit_log()
    assert audit[0]["action"] == "retrain" and audit[0]["outcome"] == "skipped"
    assert set(audit[0]["details"]["runs"]) == {"monitor", "ingest"}


# The dashboard a newcomer opens: the local ZenML server on the store the test above
# filled, past its account form, showing the runs and the monitor's drift report.

from tests.ui.test_ui_browser import CHROMEDRIVER, CHROMIUM, browser, wait_for_text  # noqa: E402, F401

ACCOUNT_FORM = "Add your account details"


@pytest.fixture()
def local_dashboard(tmp_path):
    """``zenml login --local`` on a free port for the tests' ZenML config; logged out after.

    The login points the config's store at the server; the config file is put back
    as it was, so later tests (and their subprocesses) use the database directly.
    """
    config = Path(os.environ["ZENML_CONFIG_PATH"]) / "config.yaml"
    saved = config.read_bytes()
    zenml = str(Path(sys.executable).parent / "zenml")
    env = {**os.environ, "ZENML_AUTO_OPEN_DASHBOARD": "false"}
    port = free_port()
    login = subprocess.run(
        [zenml, "login", "--local", "--port", str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        assert login.returncode == 0, login.stdout[-3000:] + login.stderr[-3000:]
        yield f"http://127.0.0.1:{port}"
    finally:
        logout = subprocess.run(
            [zenml, "logout", "--local"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        config.write_bytes(saved)
        assert logout.returncode == 0, logout.stdout[-2000:] + logout.stderr[-2000:]


def dashboard_shot(driver, folder: Path, name: str) -> Path:
    """A screenshot under the test's own folder (never docs/)."""
    import base64

    path = folder / f"{name}.png"
    path.write_bytes(base64.b64decode(driver.get_screenshot_as_base64()))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    return path


def wait_for_element(driver, css: str = "", xpath: str = "", timeout: float = 90):
    """The last element matching ``css`` (or ``xpath``) once it is displayed."""
    from selenium.webdriver.common.by import By

    by, selector = (By.XPATH, xpath) if xpath else (By.CSS_SELECTOR, css)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = driver.find_elements(by, selector)
        if found and found[-1].is_displayed():
            return found[-1]
        time.sleep(0.3)
    pytest.fail(f"{selector} never appeared on {driver.current_url}")


def sign_in_if_asked(driver) -> None:
    """The local server has no sign-in; a server with one: user ``default``, empty password."""
    from selenium.webdriver.common.by import By

    if "/login" not in driver.current_url:
        return
    wait_for_element(driver, "input[name='username']").send_keys("default")
    driver.find_element(By.CSS_SELECTOR, "button[type='submit']").click()
    deadline = time.monotonic() + 60
    while "/login" in driver.current_url:
        assert time.monotonic() < deadline, driver.find_element(By.TAG_NAME, "body").text
        time.sleep(0.3)


def test_the_dashboard_opens_past_the_account_form_on_the_runs_and_the_monitor_drift_report(
    request, tmp_path, local_dashboard
):
    from selenium.webdriver.common.by import By

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium and chromedriver are needed for the dashboard test: make chromium")
    monitor = Client().list_pipeline_runs(pipeline_name="monitor", sort_by="desc:created", size=1)
    assert monitor.items, "no monitor run in the tests' ZenML store (the test above makes them)"
    run = monitor.items[0]
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # What make dashboard runs after the login; idempotent.
    onboard = [sys.executable, "-m", "stack.dashboard", "onboard"]
    first = subprocess.run(onboard, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"Dashboard {local_dashboard}: account form filled in for user 'default'" in first.stdout
    assert "e-mail updates declined" in first.stdout
    assert f"Runs: {local_dashboard}/projects/default/runs" in first.stdout
    again = subprocess.run(onboard, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "past the account form already" in again.stdout, again

    driver = request.getfixturevalue("browser")
    # 1. The first page a newcomer opens: the dashboard, not the account form.
    driver.get(local_dashboard)
    sign_in_if_asked(driver)
    wait_for_text(driver, "Welcome back")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "/survey" not in driver.current_url and ACCOUNT_FORM not in body, body[:2000]
    assert "receive news" not in body  # no newsletter box
    dashboard_shot(driver, shots, "1-first-page")

    # 2. The runs, the monitor's among them.
    driver.get(f"{local_dashboard}/projects/default/runs")
    wait_for_text(driver, run.name)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert ACCOUNT_FORM not in body and "monitor" in body and "promote" in body
    dashboard_shot(driver, shots, "2-runs")

    # 3. The latest monitor run's page: its DAG with the data-drift step.
    driver.get(f"{local_dashboard}/projects/default/runs/{run.id}")
    wait_for_text(driver, "data_drift_report")
    report = wait_for_element(
        driver, '.react-flow__node[data-id="data_drift_report/outputs/step_output/report_html"]'
    )
    dashboard_shot(driver, shots, "3-monitor-run")

    # 4. The step's Evidently report, on its Visualization tab.
    report.click()
    wait_for_text(driver, "Producer Step")
    # The artifact sheet's tab (the last one: the first is the run page's own).
    wait_for_element(driver, xpath="//*[@role='tab'][normalize-space(.)='Visualization']").click()
    # The sheet asks before it loads HTML ("may contain harmful code").
    wait_for_element(driver, xpath="//button[normalize-space(.)='Load Preview']").click()
    frame = wait_for_element(driver, "iframe[srcdoc]", timeout=120)
    html = frame.get_attribute("srcdoc")
    assert "evidently" in html.lower() and "brightness" in html, html[:500]
    dashboard_shot(driver, shots, "4-drift-report-in-dashboard")

    # ZenML 0.98 draws HTML visualizations in an iframe sandboxed without scripts, and
    # Evidently draws its report with JavaScript: the same HTML as a page of its own
    # (what the sheet's Download gives) shows the report.
    page = tmp_path / "data_drift_report.html"
    page.write_text(html)
    driver.get(page.as_uri())
    wait_for_text(driver, "Dataset Drift")
    wait_for_text(driver, "Share of Drifted Columns")
    dashboard_shot(driver, shots, "5-drift-report")
