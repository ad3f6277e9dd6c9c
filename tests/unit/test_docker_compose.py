"""The docker-compose picture, checked without a Docker engine.

No Docker engine runs on the project's machines, so these tests check what
can be checked statically: the file parses (and passes the Compose CLI's own
validation when a Compose CLI is installed), every service has a pinned image
or a Dockerfile that exists, every mounted repository file exists, every
variable is in .env.example and no secret is inline, long-running services
have health checks, dependencies exist, the published ports are the port plan
and the README's, the services are wired to each other (buckets, databases,
URLs), and Prometheus' compose config passes promtool.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from tests.conftest import ROOT

DOCKER = ROOT / "stack" / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
COMPOSE_TEXT = COMPOSE_FILE.read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
ONE_SHOT = {"minio-init", "airflow-init", "mlflow-init"}
# The port plan (README "Services and ports"): host ports published per service.
PORTS = {
    "minio": {9000, 9001},
    "postgres": {5432},
    "mlflow": {5000},
    "zenml": {8237},
    "airflow-apiserver": {8080},
    "prometheus": {9090},
    "alertmanager": {9093},
    "pushgateway": {9091},
    "grafana": {3000},
    "review-app": {8501, 8502},
}
BUCKETS = {"clearsight-artifacts", "clearsight-mlflow"}
# Variables that may stay empty: created after the first start, or defaults.
OPTIONAL = {
    "ZENML_API_KEY",
    "AIRFLOW_UID",
    "CLEARSIGHT_AIRFLOW_DAGS",
    "CLEARSIGHT_ENDPOINT_URL",
    "CLEARSIGHT_ENDPOINT_API_KEY",
}
# Bind-mounted folders that compose creates at run time, not files of the repository.
# Written at run time on the host: Airflow's DAG folder, the Seldon deployer's
# Prometheus targets file.
RUNTIME_FOLDERS = {"../../.state/airflow/dags", "../../.state/zenml/clearsight"}


def _uncommented(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _references(text: str) -> list[tuple[str, str, str]]:
    """``${NAME<op>rest}`` references (not ``$${...}``, which compose passes to the shell)."""
    return re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?]?)([^}]*)\}", text)


def _env_example() -> dict[str, str]:
    lines = (DOCKER / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _interpolate_defaults(value: str) -> str:
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def _published(service: dict) -> list[tuple[str, int, int]]:
    """(address, host port, container port) for each short-syntax port."""
    out = []
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        address, host, container = parts if len(parts) == 3 else ["0.0.0.0", *parts]
        out.append((address, int(host), int(container.split("/")[0])))
    return out


def _environment(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in (SERVICES[name].get("environment") or {}).items()}


def _command(name: str) -> str:
    """A service's command as one line, whether a string or a list (``sh -c ...``)."""
    command = SERVICES[name]["command"]
    return " ".join(" ".join(command if isinstance(command, str) else command).split())


def test_the_whole_production_picture_is_there():
    expected = set(PORTS) | ONE_SHOT | {"airflow-scheduler", "airflow-dag-processor"}
    assert set(SERVICES) == expected


def _dockerfile(service: dict):
    build = service["build"]
    context = (DOCKER / build["context"]).resolve()
    return context, context / build["dockerfile"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_pinned_image_or_an_existing_dockerfile(name):
    service = SERVICES[name]
    image = service["image"]  # also the tag a build produces
    assert ":" in image and not image.endswith(":latest"), image
    if "build" in service:
        context, dockerfile = _dockerfile(service)
        assert dockerfile.is_file(), dockerfile
        text = dockerfile.read_text()
        base = re.search(r"^FROM (\S+)", text, re.M).group(1)
        assert ":" in base and not base.endswith(":latest"), base
        # Every file a COPY takes from the build context exists there.
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
            for source in line.split()[:-1]:
                assert (context / source).exists(), f"{dockerfile.name}: COPY {source}"


def test_images_match_the_versions_the_project_pins():
    pins = dict(
        re.findall(
            r'"([\w-]+)(?:\[[\w,]+\])?==([\w.]+)"',
            (ROOT / "pyproject.toml").read_text(),
        )
    )
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"] == "clearsight"
    assert SERVICES["zenml"]["image"] == f"zenmldocker/zenml-server:{pins['zenml']}"
    mlflow_base = re.search(r"^FROM (\S+)", (DOCKER / "mlflow.Dockerfile").read_text(), re.M)
    assert mlflow_base.group(1) == f"ghcr.io/mlflow/mlflow:v{pins['mlflow']}"
    airflow_pin = re.search(
        r"^apache-airflow==(\S+)$", (ROOT / "stack/airflow/constraints.txt").read_text(), re.M
    ).group(1)
    airflow_dockerfile = (DOCKER / "airflow.Dockerfile").read_text()
    assert f"FROM apache/airflow:{airflow_pin}\n" in airflow_dockerfile
    assert f'"apache-airflow=={airflow_pin}"' in airflow_dockerfile  # pip may not move it


def test_the_review_app_image_installs_the_project_and_runs_the_ui():
    context, dockerfile = _dockerfile(SERVICES["review-app"])
    text = dockerfile.read_text()
    assert context == ROOT
    assert re.search(r"pip install [^\n]*-c constraints\.txt \.", text)
    command = yaml.safe_load(re.search(r"^CMD (\[.*?\])\s*$", text, re.M | re.S).group(1))
    assert command[:3] == ["streamlit", "run", "ui/main.py"]
    assert command[command.index("--server.port") + 1] == "8501"
    assert command[command.index("--server.address") + 1] == "0.0.0.0"
    assert (ROOT / "ui" / "main.py").is_file()
    # The build context is the repository: local state, venvs and secrets stay out.
    ignored = (DOCKER / "app.Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".state", ".env", ".git"} <= set(ignored)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_repository_files_exist_and_named_volumes_are_declared(name):
    declared = set(COMPOSE.get("volumes") or {})
    for volume in SERVICES[name].get("volumes", []):
        source = _interpolate_defaults(volume).split(":")[0]
        if source.startswith("."):
            if source not in RUNTIME_FOLDERS:
                assert (DOCKER / source).resolve().exists(), f"{name}: {source}"
        elif not source.startswith("/"):
            assert source in declared, f"{name}: volume {source} is not declared"


def test_every_declared_volume_is_used():
    used = {v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", []) if ":" in v}
    assert set(COMPOSE["volumes"]) <= used


def test_every_variable_is_in_env_example_and_no_secret_is_inline():
    example = _env_example()
    references = _references(_uncommented(COMPOSE_TEXT))
    assert {name for name, _, _ in references} <= set(example)
    for name, operator, _ in references:
        if name not in OPTIONAL:
            assert operator == ":?", f"${{{name}}} must be required (`:?`) in compose"
    for key, value in example.items():
        if re.search(r"PASSWORD|SECRET|KEY$", key) and key != "AWS_ACCESS_KEY_ID":
            assert value == "", f"{key} must be empty in .env.example"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    secret = re.compile(r"(PASSWORD|SECRET|_KEY|_KEY_ID)$")
    for name in SERVICES:
        for key, value in _environment(name).items():
            if secret.search(key):
                assert re.fullmatch(r"\$\{\w+:[?-][^}]*\}", value), f"{name}: {key} is inline"
    # Passwords inside URLs and commands come from variables too.
    for url in re.findall(r"\w+(?:\+\w+)?://[^\s\"']+@", _uncommented(COMPOSE_TEXT)):
        assert re.match(r"\w+(?:\+\w+)?://\$\{\w+:\?[^}]*\}:\$\{\w+:\?[^}]*\}@", url), url


@pytest.mark.parametrize("name", sorted(set(SERVICES) - ONE_SHOT))
def test_long_running_services_have_health_checks(name):
    check = SERVICES[name].get("healthcheck", {})
    assert check.get("test") and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert check.get("interval") and check.get("retries"), name


@pytest.mark.parametrize("name", sorted(ONE_SHOT))
def test_one_shot_services_are_not_restarted(name):
    assert SERVICES[name].get("restart") == "no"


def test_dependencies_exist_and_wait_for_health_or_completion():
    for name, service in SERVICES.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            wanted = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule["condition"] == wanted, (name, target)
    # What must be up first, is.
    assert set(SERVICES["mlflow"]["depends_on"]) >= {"postgres", "minio-init"}
    assert set(SERVICES["airflow-init"]["depends_on"]) == {"postgres"}
    for airflow in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"):
        assert "airflow-init" in SERVICES[airflow]["depends_on"]


def test_published_ports_are_the_port_plan_on_loopback():
    published = {
        name: {host for _, host, _ in _published(service)}
        for name, service in SERVICES.items()
        if service.get("ports")
    }
    assert published == PORTS
    for name, service in SERVICES.items():
        for address, host, _ in _published(service):
            assert address == "127.0.0.1", f"{name}: {host} is published beyond loopback"


def _readme_ports() -> set[int]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Services and ports", 1)[1].split("\n## ", 1)[0]
    ports = set()
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if row.lstrip().startswith("|") and len(cells) >= 3 and re.fullmatch(r"\d+", cells[1]):
            ports.add(int(cells[1]))
    return ports


def test_every_published_port_is_in_the_readme_table():
    wanted = set().union(*PORTS.values())
    assert wanted - _readme_ports() == set()


def test_the_services_are_wired_to_each_other():
    init_sql = (DOCKER / "postgres" / "init.sql").read_text()
    databases = set(re.findall(r"CREATE DATABASE (\w+);", init_sql))
    assert {"mlflow", "airflow"} <= databases
    mounts = dict(v.split(":")[:2] for v in SERVICES["postgres"]["volumes"])
    assert mounts["./postgres/init.sql"].startswith("/docker-entrypoint-initdb.d/")

    # Every PostgreSQL URL names the postgres service and a database the init script creates.
    for database in re.findall(
        r"postgres(?:ql)?(?:\+\w+)?://\S+@postgres:5432/(\w+)", COMPOSE_TEXT
    ):
        assert database in databases

    made = re.search(r"mc mb --ignore-existing ([^\n\"]+)", SERVICES["minio-init"]["entrypoint"])
    assert {f"clearsight/{b}" for b in BUCKETS} <= set(made.group(1).split())

    mlflow = _command("mlflow")
    assert "--backend-store-uri postgresql://" in mlflow
    assert "--artifacts-destination s3://clearsight-mlflow" in mlflow
    assert _environment("mlflow")["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # MLflow >= 3.5 answers 403 to Host headers outside localhost/private IPs: the
    # other containers call it by its service name.
    allowed = re.search(r"--allowed-hosts (\S+)", mlflow).group(1).split(",")
    assert {"mlflow:5000", "localhost:5000", "127.0.0.1:5000"} <= set(allowed)

    airflow = _environment("airflow-apiserver")
    assert airflow["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert airflow["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://airflow-apiserver:8080/execution/"
    )

    zenml = _environment("zenml")
    assert "ZENML_STORE_URL" not in zenml  # SQLite on the volume (no MySQL service)
    assert any(v.endswith(":/zenml") for v in SERVICES["zenml"]["volumes"])
    assert zenml["ZENML_SERVER_AUTO_ACTIVATE"] == "true"  # else no admin user is created

    # The review app reaches the other services by name on their container ports.
    app = _environment("review-app")
    for key in ("ZENML_STORE_URL", "CLEARSIGHT_MLFLOW_URI", "CLEARSIGHT_S3_ENDPOINT"):
        host, port = re.fullmatch(r"http://([\w-]+):(\d+)", app[key]).groups()
        assert host in SERVICES, key
        assert int(port) in {c for _, _, c in _published(SERVICES[host])}, key
    assert app["CLEARSIGHT_UI_METRICS_PORT"] == "8502"


def _compose_cli():
    """A Compose CLI that validates without an engine: the v2 plugin, else Debian's v1."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"], COMPOSE_TEXT
    if shutil.which("docker-compose"):
        # v1 (Debian's docker-compose 1.29) predates the top-level `name`.
        return ["docker-compose"], re.sub(r"^name: .*\n", "", COMPOSE_TEXT, flags=re.M)
    return None, None


def test_compose_cli_validates_the_file_and_requires_the_secrets(tmp_path):
    cli, text = _compose_cli()
    if cli is None:
        pytest.skip(
            "no Compose CLI here (the docker client has no compose plugin and Debian's "
            "docker-compose is not installed); `config` needs no engine when one is"
        )
    compose = DOCKER / f".compose-check-{tmp_path.name}.yml"  # relative paths resolve from here
    compose.write_text(text)
    try:
        required = sorted({n for n, op, _ in _references(_uncommented(text)) if op == ":?"})
        full, empty = tmp_path / "full.env", tmp_path / "empty.env"
        full.write_text("".join(f"{name}=x\n" for name in required))
        empty.write_text("")

        def config(env):
            return subprocess.run(
                [*cli, "-f", str(compose), "--env-file", str(env), "config", "-q"],
                capture_output=True,
                text=True,
                timeout=60,
            )

        result = config(full)
        assert result.returncode == 0, result.stdout + result.stderr
        result = config(empty)
        assert result.returncode != 0 and "set it in .env" in result.stdout + result.stderr
    finally:
        compose.unlink()


def test_compose_prometheus_config_is_valid_and_scrapes_our_services(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make prometheus` installs Debian's prometheus package"
    prometheus = SERVICES["prometheus"]
    mounts = {
        target: source
        for source, target in (v.split(":")[:2] for v in prometheus["volumes"])
        if source.startswith(".")
    }
    config_path = next(
        c.split("=", 1)[1] for c in prometheus["command"] if c.startswith("--config.file=")
    )
    config = yaml.safe_load((DOCKER / mounts[config_path]).read_text())
    # Lay the mounted files out as the container sees them, then let promtool load them all.
    for target, source in mounts.items():
        if source not in RUNTIME_FOLDERS:
            shutil.copy(DOCKER / source, tmp_path / posixpath.basename(target))
    for rule_file in config["rule_files"]:
        assert posixpath.join(posixpath.dirname(config_path), rule_file) in mounts, rule_file
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / posixpath.basename(config_path))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr

    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    # The review app by its service name and metrics port.
    assert jobs["clearsight-ui"]["static_configs"][0]["targets"] == [
        f"review-app:{_environment('review-app')['CLEARSIGHT_UI_METRICS_PORT']}"
    ]
    # The prediction endpoint: the deployer's targets file, mounted from where the
    # deployer writes it (the same default as stack/prometheus/prometheus.yml) ...
    endpoint = jobs["clearsight-endpoint"]
    (targets_file,) = endpoint["file_sd_configs"][0]["files"]
    folder = posixpath.dirname(targets_file)
    assert mounts[folder] == "../../.state/zenml/clearsight"
    assert posixpath.basename(targets_file) == "prometheus-targets.json"
    # ... with its loopback addresses rewritten to the Docker host, reachable by name.
    (relabel,) = endpoint["relabel_configs"]
    assert relabel["target_label"] == "__address__"
    for address in ("127.0.0.1:10001", "localhost:10001", "0.0.0.0:10001"):
        assert re.fullmatch(relabel["regex"], address), address
        rewritten = re.sub(relabel["regex"], relabel["replacement"].replace("$1", r"\1"), address)
        assert rewritten == "host.docker.internal:10001"
    assert not re.fullmatch(relabel["regex"], "10.1.2.3:10001")
    assert "host.docker.internal:host-gateway" in prometheus["extra_hosts"]
    # The alert rules are the same file the rest of the project tests.
    assert mounts["/etc/prometheus/alerts.yml"] == "../prometheus/alerts.yml"
    # Alerts go to the Alertmanager service; the monitor's pushed figures are
    # scraped from the Pushgateway service, with the labels they were pushed with.
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert 9093 in {c for _, _, c in _published(SERVICES["alertmanager"])}
    pushgateway = jobs["pushgateway"]
    assert pushgateway["honor_labels"] is True
    assert pushgateway["static_configs"][0]["targets"] == ["pushgateway:9091"]
    assert 9091 in {c for _, _, c in _published(SERVICES["pushgateway"])}


def test_compose_alertmanager_runs_the_shipped_config_which_amtool_accepts():
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: `make alerting` installs Debian's prometheus-alertmanager"
    alertmanager = SERVICES["alertmanager"]
    mounts = dict(v.split(":")[:2] for v in alertmanager["volumes"])
    config = next(
        c.split("=", 1)[1] for c in alertmanager["command"] if c.startswith("--config.file=")
    )
    assert mounts["../alertmanager/alertmanager.yml"] == config
    assert "--cluster.listen-address=" in alertmanager["command"]  # no gossip port
    result = subprocess.run(
        [amtool, "check-config", str(DOCKER / "../alertmanager/alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The monitor's figures survive a restart of the Pushgateway.
    command = SERVICES["pushgateway"]["command"]
    store = next(c.split("=", 1)[1] for c in command if c.startswith("--persistence.file="))
    volume = {t: s for s, t in (v.split(":")[:2] for v in SERVICES["pushgateway"]["volumes"])}
    assert posixpath.dirname(store) in volume


def test_the_review_app_metrics_listen_where_prometheus_scrapes(monkeypatch):
    # Prometheus scrapes review-app:8502 from another container: the app's
    # metrics server must listen beyond loopback there (it defaults to 127.0.0.1).
    from ui import config as ui_config

    environment = _environment("review-app")
    assert environment[ui_config.METRICS_ADDRESS_ENV] == "0.0.0.0"
    assert int(environment[ui_config.METRICS_PORT_ENV]) == 8502
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    loaded = ui_config.load_config()
    assert (loaded.metrics_address, loaded.metrics_port) == ("0.0.0.0", 8502)
    monkeypatch.delenv(ui_config.METRICS_ADDRESS_ENV)
    assert ui_config.load_config().metrics_address == "127.0.0.1"


def test_mlflow_runs_its_own_authentication_and_every_client_has_an_account():
    from stack.mlflow_auth import ADMIN_USERNAME, PASSWORD_SETTINGS, READER_USERNAME

    mlflow, env = _command("mlflow"), _environment("mlflow")
    assert "exec mlflow server --app-name basic-auth " in mlflow
    # The auth config is written from the environment (no file with a password in
    # the repository), where MLflow reads it, before the server starts.
    assert mlflow.startswith("/bin/sh -c umask 077 && ")
    assert 'mlflow_auth.py config "$$MLFLOW_AUTH_CONFIG_PATH" && exec mlflow' in mlflow
    assert env["MLFLOW_AUTH_CONFIG_PATH"].startswith("/tmp/")
    assert env["MLFLOW_AUTH_DATABASE_URI"].endswith("@postgres:5432/mlflow_auth")
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == ADMIN_USERNAME
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith(f"${{{PASSWORD_SETTINGS['admin']}:?")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${MLFLOW_FLASK_SERVER_SECRET_KEY:?")
    # The image carries the script that writes the config and creates the accounts.
    context, dockerfile = _dockerfile(SERVICES["mlflow"])
    assert "COPY mlflow_auth.py /opt/clearsight/mlflow_auth.py" in dockerfile.read_text()
    assert (context / "mlflow_auth.py").samefile(ROOT / "stack" / "mlflow_auth.py")
    assert "Flask-WTF" in dockerfile.read_text()  # MLflow's [auth] extra
    ignore = (DOCKER / "mlflow.Dockerfile.dockerignore").read_text().split()
    assert {"*", "!mlflow_auth.py"} <= set(ignore)  # only that file goes into the build

    # mlflow-init creates the accounts once MLflow is healthy, with the same image.
    init = SERVICES["mlflow-init"]
    assert (
        init["build"] == SERVICES["mlflow"]["build"]
        and init["image"] == SERVICES["mlflow"]["image"]
    )
    assert init["command"][-2:] == ["/opt/clearsight/mlflow_auth.py", "accounts"]
    assert init["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    init_env = _environment("mlflow-init")
    assert init_env["CLEARSIGHT_MLFLOW_URI"] == "http://mlflow:5000"
    for name, setting in (
        ("MLFLOW_AUTH_ADMIN_PASSWORD", PASSWORD_SETTINGS["admin"]),
        (PASSWORD_SETTINGS["writer"], PASSWORD_SETTINGS["writer"]),
        (PASSWORD_SETTINGS["reader"], PASSWORD_SETTINGS["reader"]),
    ):
        assert init_env[name].startswith(f"${{{setting}:?"), name
    # The review app reads with the read-only account, after it exists.
    app = _environment("review-app")
    assert app["MLFLOW_TRACKING_USERNAME"] == READER_USERNAME
    assert app["MLFLOW_TRACKING_PASSWORD"].startswith(f"${{{PASSWORD_SETTINGS['reader']}:?")
    assert SERVICES["review-app"]["depends_on"]["mlflow-init"] == {
        "condition": "service_completed_successfully"
    }
