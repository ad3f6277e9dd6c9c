"""Alerts delivered: real Prometheus, Alertmanager and Pushgateway on loopback.

Alertmanager and the Pushgateway are started the way ``make services`` starts
them (``stack.services``), Alertmanager on the shipped configuration rendered
with the test's settings (an aiosmtpd SMTP sink, a stdlib webhook receiver)
with only its grouping waits shortened; Prometheus runs the shipped rules with
a 1 s scrape and evaluation interval. The monitor's drift figures are pushed
with prometheus_client as the monitor pipeline pushes them, and a failing
ZenML pipeline runs with the pipelines' failure hook. Both must arrive as
e-mails (and webhook posts) naming the model version and the run.
"""

from __future__ import annotations

import email
import html
import json
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import yaml
from zenml import Model, pipeline, step

from steps.alert_hooks import alert_on_failure
from tests.conftest import ROOT
from tests.integration.test_seldon_endpoint import free_port, wait_for

pytestmark = pytest.mark.integration

SHIPPED = ROOT / "stack"
MODEL = "alerting-test-model"
RUN_URL = "http://127.0.0.1:8237/projects/default/runs/4b5e7d1c-0000-4000-8000-00000000a1e7"


@step(enable_cache=False)
def broken_step() -> None:
    """Fail, as a step of a real pipeline can."""
    raise RuntimeError("planned failure of the alerting test")


@pipeline(
    name="alerting_test_failing",
    on_failure=alert_on_failure,
    model=Model(name=MODEL),
    enable_cache=False,
)
def failing_pipeline() -> None:
    """One failing step, with the pipelines' failure hook."""
    broken_step()


class Mailbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def find(self, *needles: str) -> str | None:
        """The first message whose subject and text hold every needle (HTML unescaped)."""
        for message in self.messages:
            parts = [str(message["Subject"])]
            for part in message.walk():
                if part.get_content_maintype() == "text":
                    parts.append(html.unescape(part.get_content()))
            text = "\n".join(parts)
            if all(needle in text for needle in needles):
                return text
        return None


class Webhook(BaseHTTPRequestHandler):
    """Alertmanager's webhook JSON, kept in ``server.received``."""

    def do_POST(self):  # noqa: N802 - http.server's method name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def mailbox():
    pytest.importorskip("aiosmtpd", reason="pip install -c constraints.txt -e '.[dev]'")
    from aiosmtpd.controller import Controller

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def alerting(mailbox, webhook, tmp_path_factory):
    """Alertmanager and the Pushgateway, started by stack.services; Prometheus on the rules."""
    from stack import services as services_module
    from stack.settings import load_settings

    for binary in ("prometheus", "prometheus-alertmanager", "prometheus-pushgateway"):
        assert shutil.which(binary), f"{binary} is missing: make prometheus alerting"
    folder = tmp_path_factory.mktemp("alerting")
    _, smtp_port = mailbox
    settings = replace(
        load_settings(),
        services_dir=folder / "services",
        alertmanager_url=f"http://127.0.0.1:{free_port()}",
        pushgateway_url=f"http://127.0.0.1:{free_port()}",
        alert_smtp=f"127.0.0.1:{smtp_port}",
        alert_smtp_require_tls=False,
        alert_email_to=("ml-team@example.org",),
        alert_webhook_url=f"http://127.0.0.1:{webhook.server_port}/alerts",
    )
    # The shipped configuration, with notifications after 1 s instead of 30 s.
    config = yaml.safe_load(services_module.ALERTMANAGER_TEMPLATE.read_text())
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    template = folder / "alertmanager.yml"
    template.write_text(yaml.safe_dump(config))
    shipped_template = services_module.ALERTMANAGER_TEMPLATE
    services_module.ALERTMANAGER_TEMPLATE = template
    services = services_module.Services(settings)
    prometheus = None
    try:
        services.start(["alertmanager", "pushgateway"])
        rendered = yaml.safe_load(services.alertmanager_config_file().read_text())
        assert rendered["global"]["smtp_smarthost"] == f"127.0.0.1:{smtp_port}"
        assert services.log_file("alertmanager").exists()

        prometheus_config = yaml.safe_load((SHIPPED / "prometheus" / "prometheus.yml").read_text())
        prometheus_config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        prometheus_config["rule_files"] = [str(SHIPPED / "prometheus" / "alerts.yml")]
        alertmanager_target = settings.alertmanager_url.removeprefix("http://")
        prometheus_config["alerting"]["alertmanagers"][0]["static_configs"] = [
            {"targets": [alertmanager_target]}
        ]
        (job,) = [j for j in prometheus_config["scrape_configs"] if j["job_name"] == "pushgateway"]
        job["static_configs"] = [{"targets": [settings.pushgateway_url.removeprefix("http://")]}]
        prometheus_config["scrape_configs"] = [job]  # no endpoint or review app here
        (folder / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config))
        prometheus_port = free_port()
        prometheus = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "prometheus.log", "wb"),  # noqa: SIM115 - the process holds it
        )
        wait_for(
            lambda: _healthy(f"http://127.0.0.1:{prometheus_port}/-/ready"),
            60,
            f"Prometheus did not start: {(folder / 'prometheus.log').read_text()[-2000:]}",
        )
        yield settings, prometheus_port
    finally:
        services_module.ALERTMANAGER_TEMPLATE = shipped_template
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        services.stop(["alertmanager", "pushgateway"])


def _healthy(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_pushed_drift_reaches_the_team_by_mail_and_webhook(alerting, mailbox, webhook):
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    settings, prometheus_port = alerting
    box, _ = mailbox
    version = "5"
    registry = CollectorRegistry()
    labels = {"model_name": MODEL, "model_version": version}

    def gauge(name: str, value: float, **extra: str) -> None:
        metric = Gauge(name, name, [*labels, *extra], registry=registry)
        metric.labels(**labels, **extra).set(value)

    # The monitor's contract (issue 13): what a run that found input drift pushes.
    gauge("clearsight_monitor_run_info", 1, run_id="a1e7", run_url=RUN_URL)
    gauge("clearsight_monitor_last_run_timestamp_seconds", time.time())
    gauge("clearsight_monitor_max_age_seconds", 86_400)
    gauge("clearsight_monitor_window_predictions", 480)
    gauge("clearsight_monitor_drift_share", 0.5)
    gauge("clearsight_monitor_drift_detected", 1)
    gauge("clearsight_monitor_prediction_drift_detected", 0)
    push_to_gateway(
        settings.pushgateway_url.removeprefix("http://"),
        job="clearsight_monitor",
        grouping_key={"model_name": MODEL},
        registry=registry,
    )

    text = wait_for(
        lambda: box.find("ClearsightDriftDetected", f"version {version}", RUN_URL),
        90,
        "no drift e-mail arrived; Prometheus alerts: "
        + requests.get(f"http://127.0.0.1:{prometheus_port}/api/v1/alerts", timeout=5).text,
    )
    assert "50% of the feature columns drifted" in text
    posted = wait_for(
        lambda: [
            a
            for body in webhook.received
            for a in body["alerts"]
            if a["labels"]["alertname"] == "ClearsightDriftDetected"
        ],
        30,
        "the webhook got no drift alert",
    )
    assert posted[0]["labels"]["model_version"] == version
    assert posted[0]["annotations"]["run_url"] == RUN_URL
    # Nothing else about this model: no prediction drift, not overdue.
    assert not box.find("ClearsightPredictionDriftDetected", MODEL)
    assert not box.find("ClearsightMonitorOverdue", MODEL)


def test_a_failed_pipeline_reaches_the_team_and_keeps_its_own_error(
    alerting, mailbox, webhook, monkeypatch
):
    from zenml.client import Client
    from zenml.utils import source_utils

    settings, _ = alerting
    box, _ = mailbox
    source_utils.set_custom_source_root(str(ROOT))
    monkeypatch.setenv("CLEARSIGHT_ALERTMANAGER_URL", settings.alertmanager_url)

    with pytest.raises(RuntimeError, match="failure in step.*broken_step"):
        failing_pipeline()
    run = Client().get_pipeline("alerting_test_failing").last_run
    # The run reports the step's own exception: the hook, which posted, masked nothing.
    failed = run.steps["broken_step"]
    assert failed.status.value == "failed"
    assert "planned failure of the alerting test" in failed.exception_info.message
    link = str(run.id)  # no ZenML server here: the run id stands in for the dashboard link

    text = wait_for(
        lambda: box.find("ClearsightPipelineFailed", "alerting_test_failing", link),
        60,
        "no pipeline-failure e-mail arrived",
    )
    assert "planned failure of the alerting test" in text
    posted = wait_for(
        lambda: [
            a
            for body in webhook.received
            for a in body["alerts"]
            if a["labels"].get("run_id") == link
        ],
        30,
        "the webhook got no pipeline-failure alert",
    )
    labels = posted[0]["labels"]
    assert labels["pipeline"] == "alerting_test_failing"
    assert labels["model_name"] == MODEL and labels["model_version"]
    assert labels["severity"] == "critical"
    assert posted[0]["annotations"]["step"] == "broken_step"
