"""The production stack's registration: the Airflow operator choice and checks before writing.

Runs against the throw-away ZenML store of the unit tests; nothing is started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from zenml.client import Client
from zenml.enums import StackComponentType

from stack.register import (
    BASH_OPERATOR,
    CONTAINER_OPERATORS,
    DAG_GENERATOR,
    ComponentSpec,
    production_components,
    register_production,
    validate_components,
)
from stack.settings import ProductionSettings, load_settings


def settings(**overrides) -> ProductionSettings:
    values = {name: "" for name in ProductionSettings.__dataclass_fields__}
    values.update(
        s3_endpoint="http://127.0.0.1:9000",
        mlflow_uri="http://127.0.0.1:5000",
        artifact_bucket="clearsight-artifacts",
        region="us-east-1",
        airflow_home=Path("/tmp/clearsight-airflow-home"),
        seldon_mode="local",
        k8s_context=None,
        k8s_namespace="seldon",
        seldon_secret=None,
        airflow_operator="bash",
    )
    return ProductionSettings(**{**values, **overrides})


def by_type(specs: tuple[ComponentSpec, ...]) -> dict[str, ComponentSpec]:
    return {spec.type.value: spec for spec in specs}


def test_the_bash_operator_is_the_default_and_needs_no_image():
    specs = by_type(production_components(settings()))
    orchestrator = specs["orchestrator"].configuration
    assert orchestrator["operator"] == BASH_OPERATOR
    assert orchestrator["custom_dag_generator"] == DAG_GENERATOR
    assert orchestrator["operator_args"]["clearsight"]["cwd"]
    assert "image_builder" not in specs and "container_registry" not in specs
    assert load_settings().airflow_operator in {"bash", "docker", "kubernetes_pod"}


@pytest.mark.parametrize("operator", ["docker", "kubernetes_pod"])
def test_a_container_operator_uses_zenmls_generator_and_an_image(operator):
    specs = by_type(
        production_components(
            settings(airflow_operator=operator, container_registry="registry.example/ml")
        )
    )
    orchestrator = specs["orchestrator"].configuration
    assert orchestrator["operator"] == CONTAINER_OPERATORS[operator]
    assert orchestrator["custom_dag_generator"] is None and orchestrator["operator_args"] == {}
    assert (specs["image_builder"].name, specs["image_builder"].flavor) == ("docker_local", "local")
    assert specs["container_registry"].configuration == {"uri": "registry.example/ml"}
    # ZenML's flavors accept every component as configured.
    secrets = {"clearsight_mlflow": {"username": "u", "password": "p"}}
    validate_components(Client(), tuple(specs.values()), secrets)


def test_operator_settings_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="CLEARSIGHT_CONTAINER_REGISTRY"):
        production_components(settings(airflow_operator="kubernetes_pod"))
    with pytest.raises(ValueError, match="'bash' .*'docker' or 'kubernetes_pod'"):
        production_components(settings(airflow_operator="podman"))
    # Docker without a registry: the image stays on the machine that runs Airflow.
    docker = by_type(production_components(settings(airflow_operator="docker")))
    assert "container_registry" not in docker and "image_builder" in docker
    # With the Seldon Kubernetes deployer the image builder is registered once.
    both = production_components(
        settings(
            airflow_operator="docker", seldon_mode="kubernetes", seldon_base_url="http://x.example"
        )
    )
    assert [s.name for s in both if s.type == StackComponentType.IMAGE_BUILDER] == ["docker_local"]


def test_a_bad_component_is_refused_before_anything_is_written():
    client = Client()
    before = {c.name for c in client.list_stack_components(size=1000).items}
    bad = ComponentSpec(
        "clearsight_bad_airflow",
        "airflow",
        StackComponentType.ORCHESTRATOR,
        {"local": True, "no_such_option": 1},
    )
    with pytest.raises(ValueError, match="clearsight_bad_airflow"):
        validate_components(client, (bad,))
    with pytest.raises(RuntimeError, match="no orchestrator flavor 'nonesuch'"):
        validate_components(
            client, (ComponentSpec("x", "nonesuch", StackComponentType.ORCHESTRATOR),)
        )
    assert {c.name for c in client.list_stack_components(size=1000).items} == before


def test_an_invalid_production_config_writes_no_secret_and_no_component(monkeypatch, tmp_path):
    monkeypatch.setenv("CLEARSIGHT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CLEARSIGHT_SERVICES_DIR", raising=False)
    monkeypatch.setenv("CLEARSIGHT_SELDON", "kubernetes")
    monkeypatch.delenv("CLEARSIGHT_SELDON_BASE_URL", raising=False)
    client = Client()
    secrets = {s.name for s in client.list_secrets(size=1000).items}
    components = {c.name for c in client.list_stack_components(size=1000).items}
    with pytest.raises(ValueError, match="CLEARSIGHT_SELDON_BASE_URL"):
        register_production(activate=False)
    assert {s.name for s in client.list_secrets(size=1000).items} == secrets
    assert {c.name for c in client.list_stack_components(size=1000).items} == components


def test_the_dag_generator_writes_no_zenml_credential_and_airflow_gets_the_api_key():
    from stack.airflow.dag_generator import TaskConfiguration, bash_task_arguments

    task = TaskConfiguration(
        id="scan_images",
        zenml_step_name="scan_images",
        upstream_steps=[],
        docker_image="clearsight-project-venv",
        command=["python", "-m", "zenml.entrypoints.entrypoint"],
        arguments=["--step_name", "scan_images"],
        environment={
            "ZENML_STORE_URL": "http://127.0.0.1:8237",
            "ZENML_STORE_API_TOKEN": "eyJ-a-workload-token",
            "DISABLE_CREDENTIALS_DISK_CACHING": "true",
        },
        operator_source=BASH_OPERATOR,
    )
    assert "eyJ-a-workload-token" not in task.model_dump_json()  # what config.json holds
    environment = bash_task_arguments(task)["env"]
    assert environment["ZENML_STORE_URL"] == "http://127.0.0.1:8237"
    assert "ZENML_STORE_API_TOKEN" not in environment
    assert environment["DISABLE_CREDENTIALS_DISK_CACHING"] == "true"  # the client's login stays
    airflow = {"airflow_url": "http://127.0.0.1:8080", "airflow_log_port": 8793}
    with_key = settings(zenml_api_key="ZENKEY_x", **airflow).airflow_environment()
    assert with_key["ZENML_STORE_API_KEY"] == "ZENKEY_x"
    assert "ZENML_STORE_API_KEY" not in settings(**airflow).airflow_environment()
