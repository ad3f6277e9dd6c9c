"""Closing the loop through the real services on loopback (issue 13's "done when").

A short training run of this module's model is promoted (lenient floors), so
the version has its reference table and embedding projection. The deploy
pipeline serves it on a real seldon-core microservice (the local deployer),
its prediction log in a throw-away catalog. Thirty test digits are sent as
normal traffic, with Seldon feedback for twenty-four of them, then the same
thirty inverted. ``python run.py monitor --retrain`` judges the inverted window,
pushes its figures to the Pushgateway, which a real Prometheus scrapes with the
shipped alert rules; the drift alert reaches an SMTP sink through a real
Alertmanager (the fixtures of ``test_alerting``); the drift starts the retrain
pipeline, whose gate rejects the deliberately weak challenger.
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
from sqlalchemy import select, update
from zenml import Model
from zenml.client import Client

from clearsight import prediction_log as plog
from clearsight.catalog import CATALOG_URL_ENV, sqlite_url
from clearsight.config import TrainingParameters
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
from tests.integration.test_alerting import alerting, mailbox, webhook  # noqa: F401 - fixtures
from tests.integration.test_seldon_endpoint import b64, free_port, wait_for
from tests.unit.test_core_monitoring import CONTRACT

pytestmark = pytest.mark.integration

MODEL = "monitor-test-classifier"
IMAGES = 30
PER_REQUEST = 3
LABELLED_REQUESTS = 8  # feedback for the first 24 images
PREDICTION_LOG_ENV = "CLEARSIGHT_PREDICTION_LOG"  # tests/conftest.py switches it off
RULES = MonitorRules(min_predictions=20, min_labelled=20, max_drift_share=0.3)


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


@pytest.fixture(scope="module")
def endpoint(champion, tmp_path_factory):
    """The champion served by the deploy pipeline; its prediction log in its own catalog."""
    from pipelines import deployment_pipeline

    catalog = sqlite_url(tmp_path_factory.mktemp("served") / "catalog.db")
    previous = {name: os.environ.get(name) for name in (CATALOG_URL_ENV, PREDICTION_LOG_ENV)}
    os.environ[CATALOG_URL_ENV] = catalog  # the microservice and run.py inherit them
    os.environ[PREDICTION_LOG_ENV] = "on"
    deployer = Client().active_stack.model_deployer
    try:
        run = deployment_pipeline.with_options(
            config_path=str(ROOT / "configs" / "deploy.yaml"), parameters={"model_name": MODEL}
        )()
        step = Client().get_pipeline_run(run.id).steps["deploy_champion"]
        yield step.outputs["deployment"][0].load(), catalog
    finally:
        for service in deployer.servers_for(MODEL):
            deployer.delete_model_server(service.uuid, timeout=60, force=True)
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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


def send(url: str, images: list[bytes], batch: str) -> list[dict]:
    """POST the images three per request, as a client would; the Seldon answers."""
    answers = []
    for start in range(0, len(images), PER_REQUEST):
        body = {
            "jsonData": {"images": [b64(i) for i in images[start : start + PER_REQUEST]]},
            "meta": {"tags": {"batch": batch}},
        }
        response = requests.post(url, json=body, timeout=60)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def logged(catalog: str) -> list[dict]:
    engine = plog.connect(catalog)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(plog.PREDICTION_LOG)).all()
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def traffic(catalog: str, expected: int) -> list[dict]:
    """The logged rows that are not the smoke test's, once ``expected`` are there."""

    def rows() -> list[dict] | None:
        found = [
            r for r in logged(catalog) if not r["puid"].startswith(plog.SMOKE_TEST_PUID_PREFIX)
        ]
        return found if len(found) >= expected else None

    return wait_for(rows, 30, f"the prediction log did not reach {expected} rows")


def newest_run(pipeline: str):
    """The newest run of a pipeline (hydrated: steps, tags, metadata)."""
    runs = Client().list_pipeline_runs(pipeline_name=pipeline, sort_by="desc:created", size=1)
    return Client().get_pipeline_run(runs.items[0].id)


def monitor_result(run):
    return run.steps["monitoring_decision"].outputs[ArtifactName.MONITOR_RESULT][0].load()


def test_shifted_traffic_is_detected_alerted_by_mail_and_retrains_through_the_gate(
    champion,
    endpoint,
    test_images,
    tmp_path,
    alerting,  # noqa: F811 - the imported fixture
    mailbox,  # noqa: F811 - the imported fixture
    digits_dir,
):
    from pipelines import monitoring_pipeline

    deployment, catalog = endpoint
    url = deployment["prediction_url"]
    feedback_url = url.replace("/predictions", "/feedback")
    settings, prometheus_port = alerting
    box, _ = mailbox
    images, truths = test_images

    # 1. Normal traffic; Seldon feedback (the true labels) for the first 24 images.
    normal = send(url, images, "normal")
    answers = [p for response in normal for p in response["jsonData"]["predictions"]]
    for r, response in enumerate(normal[:LABELLED_REQUESTS]):
        labels = truths[r * PER_REQUEST : (r + 1) * PER_REQUEST]
        sent = requests.post(
            feedback_url,
            json={"response": response, "truth": {"data": {"ndarray": [[t] for t in labels]}}},
            timeout=30,
        )
        assert sent.status_code == 200, sent.text
    labelled = LABELLED_REQUESTS * PER_REQUEST
    correct = sum(answers[i]["label"] == truths[i] for i in range(labelled))
    traffic(catalog, IMAGES)
    # It becomes yesterday's traffic (the smoke test's answer too), so that one
    # monitor window holds it and the next one the shifted traffic only.
    engine = plog.connect(catalog)
    with engine.begin() as connection:
        for row in logged(catalog):
            connection.execute(
                update(plog.PREDICTION_LOG)
                .where(plog.PREDICTION_LOG.c.id == row["id"])
                .values(created_at=row["created_at"] - timedelta(hours=20))
            )
    engine.dispose()

    run = monitoring_pipeline.with_options(
        parameters={
            "model_name": MODEL,
            "catalog_url": catalog,
            "rules": RULES.model_copy(update={"window_hours": 6}).model_dump(mode="json"),
            "end": (datetime.now(UTC) - timedelta(hours=16)).isoformat(),
        },
    )()
    run = Client().get_pipeline_run(run.id)
    calm = monitor_result(run)
    assert calm.model_version == str(champion)
    # Every request, and not the deploy pipeline's smoke test.
    assert calm.figures.predictions == IMAGES and calm.figures.without_features == 0
    assert calm.figures.labelled == labelled
    assert calm.figures.labelled_by_source == {"feedback": labelled}
    assert calm.figures.correct == correct
    assert calm.figures.accuracy == pytest.approx(correct / labelled)
    assert calm.figures.accuracy_ci == pytest.approx(wilson_interval(correct, labelled))
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
    assert recorded["production_accuracy"] == pytest.approx(correct / labelled)
    assert recorded["labelled"] == labelled and recorded["checks"][DATA_DRIFT] == OK
    assert recorded["run_id"] == str(run.id)

    # 2. Shifted traffic (the same digits inverted), judged through run.py and pushed.
    shifted = send(url, [invert(i) for i in images], "shifted")
    traffic(catalog, 2 * IMAGES)
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
            env={**os.environ, PUSHGATEWAY_URL_ENV: settings.pushgateway_url},
            capture_output=True,
            text=True,
            timeout=900,
        )

    command = monitor_and_retrain("ingest.yaml")
    out = command.stdout
    assert command.returncode == 0, out[-3000:] + command.stderr[-3000:]
    monitor_run = newest_run("monitor")
    moved = monitor_result(monitor_run)
    assert moved.window_hours == 6
    assert moved.figures.predictions == IMAGES  # yesterday's traffic is outside the window
    assert moved.drift.drift_share > RULES.max_drift_share, moved.drift.drifted_columns
    assert "brightness" in moved.drift.drifted_columns
    assert moved.check(DATA_DRIFT).status == ALERT
    assert moved.retrain_reasons[0].startswith(f"drift share {moved.drift.drift_share:.2f} > 0.3")
    assert moved.figures.labelled == 0 and moved.check(ACCURACY).detail.startswith("0 labelled")
    assert re.search(rf"predictions\s+{IMAGES} \(0 without features\)", out), out
    assert f"share {moved.drift.drift_share:.2f}" in out and "[ALERT]" in out
    assert "retrain         recommended" in out and "dashboard       " in out

    # 3. The drift alert arrives as a mail naming the model version and the monitor run.
    text = wait_for(
        lambda: box.find(
            "ClearsightDriftDetected", MODEL, f"version {champion}", str(monitor_run.id)
        ),
        120,
        "no drift e-mail arrived; Prometheus alerts: "
        + requests.get(f"http://127.0.0.1:{prometheus_port}/api/v1/alerts", timeout=5).text,
    )
    assert "of the feature columns drifted" in text, text
    metrics = requests.get(f"{settings.pushgateway_url}/metrics", timeout=10).text
    pushed = {
        line.split("{")[0]
        for line in metrics.splitlines()
        if line.startswith("clearsight_monitor_") and f'model_name="{MODEL}"' in line
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

    # 4. The drift started the retrain pipeline: ingest, train, the gate; the weak
    # challenger is rejected, so the champion stays and keeps serving.
    assert "The monitor asks for retraining" in out, out[-3000:]
    chain = newest_run("retrain")
    assert {"retrain:monitor", "actor:monitor-test"} <= {tag.name for tag in chain.tags}
    assert chain.run_metadata["retrain_trigger"] == "monitor"
    assert chain.run_metadata["retrain_reasons"] == moved.retrain_reasons
    decision = chain.steps["promotion_gate"].outputs[ArtifactName.PROMOTION_DECISION][0].load()
    assert not decision.promote and decision.challenger.version > champion
    assert decision.champion.version == champion
    assert chain.model_version.number == decision.challenger.version
    assert "rejected (production unchanged)" in out
    assert "deployment      unchanged: the gate rejected the challenger" in out
    registry = Client().active_stack.model_registry.mlflow_client
    served_now = registry.get_model_version_by_alias(MODEL, "champion")
    assert served_now.tags["zenml_model_version"] == str(champion)
    redeployed = chain.steps["deploy_champion"].outputs["deployment"][0].load()
    assert not redeployed["changed"] and redeployed["prediction_url"] == url
    registered = chain.steps["register_model"].outputs[ArtifactName.REGISTERED_MODEL][0].load()
    tags = registry.get_run(registered["mlflow_run_id"]).data.tags
    assert tags["clearsight.retrain_trigger"] == "monitor"
    assert tags["clearsight.retrain_reason"] == "; ".join(moved.retrain_reasons)
    audit = ReviewStore(catalog).audit_log()
    assert audit[0]["action"] == "retrain" and audit[0]["outcome"] == "rejected"
    assert audit[0]["actor"] == "monitor-test" and audit[0]["target"] == MODEL
    assert audit[0]["details"]["reasons"] == moved.retrain_reasons
    assert audit[0]["details"]["runs"] == {
        "monitor": str(monitor_run.id),
        "retrain": str(chain.id),
    }

    # 5. The prediction log holds every request, with the version that answered it.
    rows = traffic(catalog, 2 * IMAGES)
    sent = {r["meta"]["puid"] for r in normal + shifted}
    assert {row["puid"] for row in rows} == sent and len(rows) == 2 * IMAGES
    assert {(row["model_name"], row["model_version"]) for row in rows} == {(MODEL, str(champion))}

    # 6. The same drift again with nothing new to learn from (the champion's own
    # dataset): the chain stops after its ingest and says what to do instead.
    again = monitor_and_retrain("ingest-unchanged.yaml")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "retrain         skipped: the ingested dataset is the one the champion" in again.stdout
    audit = ReviewStore(catalog).audit_log()
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
