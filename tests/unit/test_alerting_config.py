"""Alerting, checked with Prometheus' and Alertmanager's own tools, without servers.

The rules pass ``promtool test rules`` (tests/prometheus/alerts_test.yml: input
series in, expected alerts with their labels and annotations out); the shipped
and rendered Alertmanager configurations pass ``amtool check-config``; the
alert posting of ``clearsight.alerts`` and the failure hook fail loudly or
quietly where they should. The end-to-end delivery (Prometheus, Alertmanager,
Pushgateway, an SMTP sink) is tests/integration/test_alerting.py.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from dataclasses import replace

import pytest
import yaml

from tests.conftest import ROOT

PROMETHEUS = ROOT / "stack" / "prometheus"
ALERTMANAGER_YML = ROOT / "stack" / "alertmanager" / "alertmanager.yml"
MONITOR_ALERTS = {
    "ClearsightDriftDetected",
    "ClearsightPredictionDriftDetected",
    "ClearsightProductionAccuracyBelowFloor",
    "ClearsightCriticalClassRecallBelowFloor",
    "ClearsightMonitorOverdue",
    "ClearsightMonitorMissing",
}
ENDPOINT_ALERTS = {"ClearsightRejectedShareHigh", "ClearsightServerErrorRateHigh"}


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: `make prometheus alerting` installs Debian's packages"
    return found


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_rules_pass_promtool_check_and_unit_tests():
    _run(_tool("promtool"), "check", "rules", str(PROMETHEUS / "alerts.yml"))
    out = _run(_tool("promtool"), "test", "rules", str(ROOT / "tests/prometheus/alerts_test.yml"))
    assert "SUCCESS" in out
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert names >= MONITOR_ALERTS | ENDPOINT_ALERTS
    # Every new rule has a unit test.
    tests = (ROOT / "tests/prometheus/alerts_test.yml").read_text()
    for name in MONITOR_ALERTS | ENDPOINT_ALERTS:
        assert f"alertname: {name}\n" in tests, name


def test_the_rule_unit_tests_can_fail(tmp_path):
    # The same tests against rules whose drift alert lost its run link must fail.
    rules = (PROMETHEUS / "alerts.yml").read_text()
    broken = rules.replace("group_left (run_id, run_url)", "group_left ()", 1)
    assert broken != rules
    (tmp_path / "alerts.yml").write_text(broken)
    tests = (ROOT / "tests/prometheus/alerts_test.yml").read_text()
    tests = tests.replace("../../stack/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    (tmp_path / "alerts_test.yml").write_text(tests)
    result = subprocess.run(
        [_tool("promtool"), "test", "rules", str(tmp_path / "alerts_test.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "ClearsightDriftDetected" in result.stdout + result.stderr


def test_shipped_prometheus_config_sends_alerts_and_scrapes_the_pushgateway():
    _run(_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["127.0.0.1:9091"]


def _settings(tmp_path, **changes):
    from stack.settings import load_settings

    return replace(load_settings(), **changes)


@pytest.fixture()
def services_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARSIGHT_SERVICES_DIR", str(tmp_path / "services"))
    for name in (
        "CLEARSIGHT_ALERT_SMTP",
        "CLEARSIGHT_ALERT_EMAIL_TO",
        "CLEARSIGHT_ALERT_SMTP_REQUIRE_TLS",
        "CLEARSIGHT_ALERT_WEBHOOK_URL",
        "CLEARSIGHT_ALERTMANAGER_URL",
        "CLEARSIGHT_PUSHGATEWAY_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_shipped_and_rendered_alertmanager_configs_pass_amtool(services_env, monkeypatch):
    from stack.services import render_alertmanager_config
    from stack.settings import load_settings

    amtool = _tool("amtool")
    _run(amtool, "check-config", str(ALERTMANAGER_YML))

    monkeypatch.setenv("CLEARSIGHT_ALERT_SMTP", "smtp.example.org:587")
    monkeypatch.setenv("CLEARSIGHT_ALERT_EMAIL_TO", "ml@example.org, oncall@example.org")
    monkeypatch.setenv("CLEARSIGHT_ALERT_SMTP_USERNAME", "clearsight")
    monkeypatch.setenv("CLEARSIGHT_ALERT_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("CLEARSIGHT_ALERT_WEBHOOK_URL", "https://hooks.example.org/alerts")
    full = render_alertmanager_config(load_settings())
    (services_env / "full.yml").write_text(full)
    _run(amtool, "check-config", str(services_env / "full.yml"))
    config = yaml.safe_load(full)
    assert config["global"]["smtp_smarthost"] == "smtp.example.org:587"
    assert config["global"]["smtp_require_tls"] is True  # not a loopback relay
    assert config["global"]["smtp_auth_password"] == "s3cret"
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    assert receiver["email_configs"][0]["to"] == "ml@example.org, oncall@example.org"
    assert receiver["webhook_configs"][0]["url"] == "https://hooks.example.org/alerts"
    assert "{{ .CommonLabels.alertname }}" in receiver["email_configs"][0]["headers"]["Subject"]

    for name in ("EMAIL_TO", "SMTP_USERNAME", "SMTP_PASSWORD", "WEBHOOK_URL", "SMTP"):
        monkeypatch.delenv(f"CLEARSIGHT_ALERT_{name}")
    bare = render_alertmanager_config(load_settings())
    (services_env / "bare.yml").write_text(bare)
    _run(amtool, "check-config", str(services_env / "bare.yml"))
    config = yaml.safe_load(bare)
    (receiver,) = config["receivers"]
    assert "email_configs" not in receiver and "webhook_configs" not in receiver
    assert config["global"]["smtp_smarthost"] == "127.0.0.1:25"
    assert config["global"]["smtp_require_tls"] is False  # loopback relay
    assert "smtp_auth_password" not in config["global"]


def test_alert_settings_reject_a_bad_tls_flag(services_env, monkeypatch):
    from stack.settings import load_settings

    monkeypatch.setenv("CLEARSIGHT_ALERT_SMTP_REQUIRE_TLS", "maybe")
    with pytest.raises(ValueError, match="CLEARSIGHT_ALERT_SMTP_REQUIRE_TLS"):
        load_settings()
    monkeypatch.setenv("CLEARSIGHT_ALERT_SMTP_REQUIRE_TLS", "yes")
    assert load_settings().alert_smtp_require_tls is True


def test_services_know_alertmanager_and_pushgateway_on_reserved_ports(services_env):
    from stack.seldon.service import RESERVED_PORTS, SERVICE_URL_ENVS
    from stack.services import ORDER, SERVICES, Services

    services = Services()
    assert {"alertmanager", "pushgateway"} <= set(ORDER)
    assert services.health_url("alertmanager") == "http://127.0.0.1:9093/-/healthy"
    assert services.health_url("pushgateway") == "http://127.0.0.1:9091/-/healthy"
    assert {9093, 9091} <= RESERVED_PORTS
    assert {"CLEARSIGHT_ALERTMANAGER_URL", "CLEARSIGHT_PUSHGATEWAY_URL"} <= set(SERVICE_URL_ENVS)
    environment = services.settings.environment()
    assert environment["CLEARSIGHT_ALERTMANAGER_URL"] == "http://127.0.0.1:9093"
    # Airflow's tasks (BashOperators inherit its environment) post failure alerts there.
    assert services.settings.airflow_environment()["CLEARSIGHT_ALERTMANAGER_URL"] == (
        "http://127.0.0.1:9093"
    )
    assert SERVICES["alertmanager"].health_path == SERVICES["pushgateway"].health_path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_posting_to_a_down_alertmanager_says_what_to_do():
    from clearsight.alerts import AlertDeliveryError, pipeline_failure_alert, post_alerts

    alert = pipeline_failure_alert("train", "ValueError: boom", "run-1", run_id="run-1")
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(AlertDeliveryError, match="unreachable") as error:
        post_alerts(url, [alert], timeout=2)
    assert url in str(error.value) and "make services" in str(error.value)
    with pytest.raises(ValueError, match="CLEARSIGHT_ALERTMANAGER_URL"):
        post_alerts("127.0.0.1:9093", [alert])


def test_failure_alert_labels_and_annotations():
    from clearsight.alerts import MAX_ANNOTATION_CHARS, build_alert, pipeline_failure_alert

    alert = pipeline_failure_alert(
        "promote",
        "x" * 10_000,
        "http://127.0.0.1:8237/projects/default/runs/abc",
        model_name="image-classifier",
        model_version=7,
        run_id="abc",
        step="promotion_gate",
    )
    assert alert["labels"] == {
        "alertname": "ClearsightPipelineFailed",
        "pipeline": "promote",
        "model_name": "image-classifier",
        "model_version": "7",
        "run_id": "abc",
        "severity": "critical",
    }
    assert alert["annotations"]["summary"] == "Pipeline promote failed in step promotion_gate"
    assert len(alert["annotations"]["description"]) == MAX_ANNOTATION_CHARS
    assert alert["generatorURL"] == alert["annotations"]["run_url"]
    # No model known, no dashboard: the run id is the link, no generatorURL.
    bare = pipeline_failure_alert("ingest", "boom", "abc")
    assert "model_name" not in bare["labels"] and "generatorURL" not in bare
    with pytest.raises(ValueError, match="severity"):
        pipeline_failure_alert("ingest", "boom", "abc", severity="page")
    with pytest.raises(ValueError, match="alertname"):
        build_alert("X", {"alertname": "Y"}, {})


def test_failure_hook_never_raises_and_logs_why(monkeypatch, caplog):
    from steps.alert_hooks import alert_on_failure

    caplog.set_level(logging.INFO, logger="steps.alert_hooks")
    monkeypatch.delenv("CLEARSIGHT_ALERTMANAGER_URL", raising=False)
    alert_on_failure(RuntimeError("disk full"))  # outside a step, no URL: logged only
    assert "No alert sent: set CLEARSIGHT_ALERTMANAGER_URL" in caplog.text
    assert "disk full" in caplog.text

    caplog.clear()
    monkeypatch.setenv("CLEARSIGHT_ALERTMANAGER_URL", f"http://127.0.0.1:{_closed_port()}")
    alert_on_failure(RuntimeError("disk full"))  # unreachable: logged, not raised
    assert "the alert was not sent" in caplog.text and "unreachable" in caplog.text
