"""Grafana's provisioning and dashboards (endpoint, model health), checked without Grafana.

Every query of every provisioned dashboard (panels and template variables)
must be valid PromQL (promtool parses it) and may only read series that
something we run exports: our model wrapper (through seldon-core's
custom-metrics mechanism, exposed here by seldon-core's own code), the review
app, seldon-core itself, the monitor pipeline (through the Pushgateway), or
Prometheus (`up`).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

GRAFANA = ROOT / "stack" / "grafana"
DASHBOARDS = {
    path.name: json.loads(path.read_text())
    for path in sorted((GRAFANA / "dashboards").glob("*.json"))
}
DASHBOARD = DASHBOARDS["clearsight-endpoint.json"]
MODEL_HEALTH = DASHBOARDS["clearsight-model-health.json"]
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning/dashboards/clearsight.yml").read_text())
COMPOSE = yaml.safe_load((ROOT / "stack/docker/docker-compose.yml").read_text())["services"]

# seldon-core's executor (Go; in front of the model in a SeldonDeployment) exports
# these histograms: executor/api/metric/constants.go, ServerRequestsMetricName and
# ClientRequestsMetricName, labels deployment_name, predictor_name, service, method, code.
# Not in the Python package, so listed here.
SELDON_EXECUTOR_HISTOGRAMS = (
    "seldon_api_executor_server_requests_seconds",
    "seldon_api_executor_client_requests_seconds",
)
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def metric_names(expression: str) -> set[str]:
    """The series names a PromQL expression selects (not functions, labels or keywords)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expression)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def test_metric_name_extraction_sees_series_not_functions_or_labels():
    expression = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x", code=~"4.."}[5m])))'
        " / on (job) group_left sum without (instance) (b_total offset 1h) > bool 0.5"
    )
    assert metric_names(expression) == {"a_bucket", "b_total"}
    assert metric_names('up{job="clearsight-endpoint"} == 0') == {"up"}


def _wrapper_metrics() -> list[dict]:
    """The custom metrics our Seldon wrapper returns, read from its source (type, key, tags)."""
    tree = ast.parse((ROOT / "clearsight" / "seldon_model.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if {"type", "key", "value"} <= set(keys):
                fields = dict(zip(keys, node.values, strict=False))
                found.append(
                    {
                        "type": fields["type"].value,
                        "key": fields["key"].value,
                        "value": 1,
                        "tags": {"label": "x"} if "tags" in fields else {},
                    }
                )
    return found


def _seldon_exposition(metrics: list[dict]) -> set[str]:
    """Series names as seldon-core's own SeldonMetrics exposes the given custom metrics."""
    from seldon_core.metrics import FEEDBACK_KEY, FEEDBACK_REWARD_KEY, SeldonMetrics

    collector = SeldonMetrics()
    try:
        feedback = [{"type": "COUNTER", "key": k, "value": 1} for k in (FEEDBACK_KEY,)]
        feedback.append({"type": "COUNTER", "key": FEEDBACK_REWARD_KEY, "value": 1})
        collector.update(metrics + feedback, "predict")
        text, _ = collector.generate_metrics()
    finally:
        collector._manager.shutdown()
    return {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1].isalpha()}


SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _ui_exposition() -> set[str]:
    """The review app's series, by family (a labelled family has no sample until used)."""
    from ui.metrics import REGISTRY

    return {
        family.name + suffix for family in REGISTRY.collect() for suffix in SUFFIXES[family.type]
    }


def _monitor_gauges() -> set[str]:
    """The monitor pipeline's gauges (its metric contract), pushed through the Pushgateway."""
    from clearsight.monitoring import METRICS

    return set(METRICS)


@pytest.fixture(scope="module")
def exported() -> set[str]:
    executor = {
        f"{name}_{suffix}"
        for name in SELDON_EXECUTOR_HISTOGRAMS
        for suffix in ("bucket", "sum", "count")
    }
    return (
        _seldon_exposition(_wrapper_metrics())
        | _ui_exposition()
        | executor
        | _monitor_gauges()
        | PROMETHEUS_OWN
    )


def test_the_wrapper_metrics_are_found_in_its_source(exported):
    keys = {m["key"] for m in _wrapper_metrics()}
    assert keys == {
        "clearsight_requests_total",
        "clearsight_request_latency",
        "clearsight_model_version",
        "clearsight_predictions_total",
        "clearsight_confidence",
        "clearsight_uncertain_total",
        "clearsight_rejected_total",
        "clearsight_prediction_log_dropped_total",
        "clearsight_feedback_total",
    }
    # As seldon-core exposes them: TIMERs become histograms.
    assert {"clearsight_request_latency_bucket", "clearsight_confidence_bucket"} <= exported
    assert "clearsight_request_latency" not in exported


def _variable_selectors(dashboard: dict) -> list[str]:
    """The series selectors of the template variables' ``label_values(selector, label)``."""
    selectors = []
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
        assert match, f"{variable['name']}: {query!r} is not label_values(selector, label)"
        selectors.append(match.group(1))
    return selectors


def _expressions(dashboard: dict | None = None) -> list[str]:
    """The panels' queries of one dashboard (default: every provisioned one) and its variables'."""
    boards = [dashboard] if dashboard is not None else list(DASHBOARDS.values())
    return [
        expression
        for board in boards
        for expression in [t["expr"] for p in board["panels"] for t in p["targets"]]
        + _variable_selectors(board)
    ]


def test_both_dashboards_are_provisioned():
    assert set(DASHBOARDS) == {"clearsight-endpoint.json", "clearsight-model-health.json"}
    uids = [board["uid"] for board in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))


def test_every_query_reads_only_series_we_export(exported):
    for expression in _expressions():
        unknown = metric_names(expression) - exported
        assert not unknown, f"{expression}: {sorted(unknown)} is exported by nothing we run"


def test_the_dashboard_shows_what_operators_need():
    uses = "\n".join(_expressions(DASHBOARD))
    wanted = {
        "request rate": r"rate\(clearsight_requests_total\[",
        "latency p50": r"histogram_quantile\(0\.5, .*clearsight_request_latency_bucket",
        "latency p99": r"histogram_quantile\(0\.99, .*clearsight_request_latency_bucket",
        "4xx": r'seldon_api_executor_server_requests_seconds_count\{[^}]*code=~"4\.\."',
        # The local deployer has no executor: its own rejection counter stands in.
        "4xx, local": r'\) or sum\(rate\(clearsight_rejected_total\{method="predict"\}',
        "5xx": r'seldon_api_executor_server_requests_seconds_count\{[^}]*code=~"5\.\."',
        "predictions per label": r"sum by \(label\) \(rate\(clearsight_predictions_total",
        "confidence histogram": r"clearsight_confidence_bucket",
        "uncertain share": r"clearsight_uncertain_total.*\n?.*/ .*clearsight_predictions_total",
        "serving model version": r"clearsight_model_version",
    }
    missing = [what for what, pattern in wanted.items() if not re.search(pattern, uses)]
    assert not missing, missing


def test_the_model_health_dashboard_shows_the_monitor_and_the_endpoint():
    uses = "\n".join(_expressions(MODEL_HEALTH))
    version = r'\{model_name="\$model_name", model_version="\$model_version"\}'
    wanted = {
        "drift share": rf"clearsight_monitor_drift_share{version}",
        "production accuracy": rf"clearsight_monitor_production_accuracy{version}",
        "its interval": rf"_ci_lower{version}[\s\S]*_ci_upper{version}",
        "labelled count": rf"clearsight_monitor_labelled{version}",
        "uncertain share": rf"clearsight_monitor_uncertain_share{version}",
        "predicted share per label": r"max by \(label\) \(clearsight_monitor_predicted_share",
        "endpoint predictions": r"sum by \(label\) \(rate\(clearsight_predictions_total",
        "latency": r"histogram_quantile\(0\.99, .*clearsight_request_latency_bucket",
        "rejected requests": r"sum by \(reason\) \(rate\(clearsight_rejected_total",
        "versions to choose from": r"^clearsight_monitor_run_info\{model_name=\"\$model_name\"\}$",
    }
    missing = [w for w, pattern in wanted.items() if not re.search(pattern, uses, re.MULTILINE)]
    assert not missing, missing
    # The band: the upper bound fills down to the lower one, both named by their legends.
    (band,) = [p for p in MODEL_HEALTH["panels"] if "confidence interval" in p["title"]]
    legends = {t["legendFormat"] for t in band["targets"]}
    fill = {
        o["matcher"]["options"]: prop["value"]
        for o in band["fieldConfig"]["overrides"]
        for prop in o["properties"]
        if prop["id"] == "custom.fillBelowTo"
    }
    assert fill == {"CI upper": "CI lower"} and {"CI upper", "CI lower", "labelled"} <= legends
    names = [v["name"] for v in MODEL_HEALTH["templating"]["list"]]
    assert names == ["model_name", "model_version"]


def test_every_query_is_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make prometheus` installs Debian's prometheus package"
    rules = [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(_expressions())]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(tmp_path):
    """The check above would catch a typo: promtool really parses the expressions."""
    path = tmp_path / "rules.yml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{"record": "r", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True)
    assert result.returncode != 0


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_are_well_formed_and_use_the_provisioned_datasource(name):
    dashboard = DASHBOARDS[name]
    (datasource,) = DATASOURCES["datasources"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for variable in dashboard.get("templating", {}).get("list", []):
        assert variable["datasource"]["uid"] == datasource["uid"], variable["name"]
    cells = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    assert dashboard["uid"] and dashboard["title"]


def test_provisioning_matches_the_compose_file():
    (datasource,) = DATASOURCES["datasources"]
    assert DATASOURCES["apiVersion"] == 1 and PROVIDERS["apiVersion"] == 1
    assert datasource["type"] == "prometheus"
    host, port = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"]).groups()
    assert host in COMPOSE
    assert any(str(p).endswith(f":{port}") for p in COMPOSE[host]["ports"])
    listen = [c for c in COMPOSE[host].get("command", []) if "web.listen-address" in c]
    assert listen in ([], [f"--web.listen-address=:{port}"])  # Prometheus' default is :9090
    assert port == "9090" or listen

    mounts = dict(v.split(":")[:2] for v in COMPOSE["grafana"]["volumes"])
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = PROVIDERS["providers"]
    assert provider["type"] == "file"
    assert mounts["../grafana/dashboards"] == provider["options"]["path"]
    # What Grafana reads from those folders exists in the repository.
    for folder in ("datasources", "dashboards"):
        assert list((GRAFANA / "provisioning" / folder).glob("*.yml")), folder
    assert list((GRAFANA / "dashboards").glob("*.json"))
