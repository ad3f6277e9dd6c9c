"""The docker-compose picture and Grafana's provisioning, checked without Docker.

No Docker engine runs on the project's machines: these tests check what can
be checked statically: every service has an image or a Dockerfile that exists,
every mounted repository file exists, every variable is documented in
.env.example, every long-running service has a health check, the published
ports are those of the README, and every PromQL expression is valid (promtool)
and only uses metrics our code exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

DOCKER = ROOT / "stack" / "docker"
GRAFANA = ROOT / "stack" / "grafana"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ONE_SHOT = {"minio-init", "airflow-init"}
PORTS = {
    "minio": {9000, 9001},
    "postgres": {5432},
    "mlflow": {5000},
    "zenml": {8237},
    "airflow-apiserver": {8080},
    "prometheus": {9090},
    "grafana": {3000},
    "review-app": {8501, 8502},
}


def _variables(text: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))


def test_the_whole_production_picture_is_there():
    expected = set(PORTS) | ONE_SHOT | {"airflow-scheduler", "airflow-dag-processor"}
    assert set(SERVICES) == expected


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_pinned_image_or_an_existing_dockerfile(name):
    service = SERVICES[name]
    if "build" in service:
        build = service["build"]
        dockerfile = (DOCKER / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile.is_file(), dockerfile
        base = re.search(r"^FROM (\S+)", dockerfile.read_text(), re.M).group(1)
        assert ":" in base and not base.endswith(":latest"), base
    else:
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), image


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_repository_files_exist(name):
    for volume in SERVICES[name].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (DOCKER / source).resolve().exists(), f"{name}: {source}"


def test_every_variable_is_documented_and_no_secret_is_inline():
    text = (DOCKER / "docker-compose.yml").read_text()
    example = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert _variables(text) <= set(example), _variables(text) - set(example)
    for key, value in example.items():
        if (
            any(word in key for word in ("PASSWORD", "SECRET", "KEY"))
            and key != "AWS_ACCESS_KEY_ID"
        ):
            assert value == "", f"{key} must be empty in .env.example"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|API_KEY", key):
                assert str(value).startswith("${"), f"{name}: {key} is set inline"


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_long_running_services_have_health_checks(name):
    assert SERVICES[name].get("healthcheck", {}).get("test"), name


def test_dependencies_exist_and_wait_for_health_or_completion():
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            wanted = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule["condition"] == wanted, (name, target)


def test_published_ports_are_the_readme_ports():
    published = {
        name: {int(str(p).split(":")[0]) for p in service.get("ports", [])}
        for name, service in SERVICES.items()
        if service.get("ports")
    }
    assert published == PORTS
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Services and ports", 1)[1].split("\n## ", 1)[0]
    table_ports = {
        int(cells[2])
        for row in section.splitlines()
        if row.startswith("|") and len(cells := [c.strip() for c in row.split("|")]) > 3
        if cells[2].isdigit()
    }
    assert set().union(*PORTS.values()) <= table_ports, set().union(*PORTS.values()) - table_ports


def test_compose_config_with_the_docker_client_if_it_has_compose(tmp_path):
    docker = shutil.which("docker")
    probe = docker and subprocess.run([docker, "compose", "version"], capture_output=True)
    if not probe or probe.returncode != 0:
        pytest.skip("the docker client here has no compose plugin (no Docker on this machine)")
    env = tmp_path / ".env"
    env.write_text(
        "".join(
            f"{line.split('=')[0]}=x\n"
            for line in (DOCKER / ".env.example").read_text().splitlines()
            if "=" in line
        )
    )
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            str(DOCKER / "docker-compose.yml"),
            "--env-file",
            str(env),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_compose_prometheus_config_is_valid(tmp_path):
    shutil.copy(DOCKER / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ROOT / "stack" / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"]
        for job in yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert jobs["clearsight-ui"] == ["review-app:8502"]  # the compose service and its port


def _exported_metrics() -> set[str]:
    served = re.findall(
        r'"key": "(clearsight_\w+)"', (ROOT / "clearsight/seldon_model.py").read_text()
    )
    ui = re.findall(r'"(clearsight_ui_\w+)"', (ROOT / "ui/metrics.py").read_text())
    return set(served) | set(ui)


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboards" / "clearsight-endpoint.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus():
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/clearsight.yml").read_text())
    grafana_volumes = SERVICES["grafana"]["volumes"]
    assert "../grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana_volumes
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dashboard = json.loads((GRAFANA / "dashboards" / "clearsight-endpoint.json").read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used == {uid}


def test_every_dashboard_query_is_valid_promql_on_metrics_we_export(tmp_path):
    expressions = _dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

    exported = _exported_metrics()
    for expression in expressions:
        for name in re.findall(r"\b(clearsight_\w+)", expression):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in exported or re.sub(r"_total$", "", base) in exported, name
