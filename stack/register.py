"""Register the platform's ZenML stacks; safe to run any number of times.

Usage::

    python -m stack.register                 # register the embedded stack and activate it
    python -m stack.register production      # register the production stack and activate it
    python -m stack.register --no-activate   # register only

The embedded stack needs no server: the local orchestrator, the local artifact
store (inside ZENML_CONFIG_PATH), an MLflow experiment tracker and model
registry backed by a SQLite file in that artifact store, an Evidently data
validator, and the local Seldon model deployer (our ``local_seldon`` flavor:
the seldon-core microservice as a local daemon).

The production stack uses the services a team runs (``make services`` starts
them on loopback; docker-compose or Kubernetes elsewhere): an S3 artifact store
(MinIO in production), an MLflow tracking server and its model registry, the
Airflow orchestrator (steps as BashOperators in the project's virtualenv), the
Evidently data validator and the Seldon deployer. Endpoints come from
environment variables (:mod:`stack.settings`); credentials go into ZenML
secrets (``clearsight_s3``, ``clearsight_mlflow``) and the components refer to
them, so no secret is stored in a component's configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zenml.client import Client
from zenml.enums import StackComponentType

from stack.runtime import quiet_shutdown
from stack.settings import ProductionSettings, load_settings

logger = logging.getLogger(__name__)

EMBEDDED_STACK = "embedded"
PRODUCTION_STACK = "production"
S3_SECRET = "clearsight_s3"
MLFLOW_SECRET = "clearsight_mlflow"
SELDON_K8S = "seldon_k8s"
BASH_OPERATOR = "airflow.providers.standard.operators.bash.BashOperator"


@dataclass(frozen=True)
class ComponentSpec:
    """A stack component to register under a fixed name."""

    name: str
    flavor: str
    type: StackComponentType
    configuration: dict[str, Any] = field(default_factory=dict)


FLAVORS = (
    (
        "local_seldon",
        "stack.seldon.flavor.LocalSeldonModelDeployerFlavor",
        StackComponentType.MODEL_DEPLOYER,
    ),
)
SOURCE_ROOT = str(Path(__file__).resolve().parents[1])

EMBEDDED_COMPONENTS = (
    ComponentSpec("default", "local", StackComponentType.ORCHESTRATOR),
    ComponentSpec("default", "local", StackComponentType.ARTIFACT_STORE),
    ComponentSpec("mlflow_tracker", "mlflow", StackComponentType.EXPERIMENT_TRACKER),
    ComponentSpec("mlflow_registry", "mlflow", StackComponentType.MODEL_REGISTRY),
    ComponentSpec("evidently", "evidently", StackComponentType.DATA_VALIDATOR),
    ComponentSpec("seldon_local", "local_seldon", StackComponentType.MODEL_DEPLOYER),
)


def ensure_flavors(client: Client) -> None:
    """Register the project's own flavors (re-registering is a no-op)."""
    for name, source, component_type in FLAVORS:
        known = client.list_flavors(name=name, type=component_type.value).items
        if not known:
            client.create_flavor(source=source, component_type=component_type)
            logger.info("flavor %s registered", name)
        elif all(f.source != source for f in known):
            raise RuntimeError(
                f"Flavor {name!r} is registered from {known[0].source}, not {source}. "
                "Delete the components using it, then: zenml "
                f"{component_type.value.replace('_', '-')} flavor delete {name}; "
                "and run python -m stack.register again."
            )


def ensure_component(client: Client, spec: ComponentSpec) -> str:
    """Create the component, or bring an existing one's configuration up to date.

    Returns:
        What was done: ``created``, ``updated`` or ``unchanged``.
    """
    existing = client.list_stack_components(name=spec.name, type=spec.type.value)
    if not existing.items:
        client.create_stack_component(
            name=spec.name,
            flavor=spec.flavor,
            component_type=spec.type,
            configuration=spec.configuration,
        )
        return "created"
    component = existing.items[0]
    if component.flavor_name != spec.flavor:
        raise RuntimeError(
            f"A {spec.type.value} named {spec.name!r} exists with flavor "
            f"{component.flavor_name!r}, not {spec.flavor!r}. Rename or delete it: "
            f"zenml {spec.type.value.replace('_', '-')} delete {spec.name}"
        )
    current = component.configuration
    if any(current.get(k) != v for k, v in spec.configuration.items()):
        if any(v is None for v in spec.configuration.values()):
            # Client.update_stack_component drops null values, but some flavors
            # (ZenML's seldon) require keys that may be null: the store
            # validates and stores the whole configuration as given.
            from zenml.models import ComponentUpdate

            configuration = {**current, **spec.configuration}
            client.zen_store.update_stack_component(
                component.id, ComponentUpdate(configuration=configuration)
            )
        else:
            client.update_stack_component(spec.name, spec.type, configuration=spec.configuration)
        return "updated"
    return "unchanged"


def ensure_stack(client: Client, name: str, components: tuple[ComponentSpec, ...]) -> str:
    """Register the stack with exactly these components; idempotent."""
    for spec in components:
        outcome = ensure_component(client, spec)
        logger.info("%s %s %s", spec.type.value, spec.name, outcome)
    wanted = {spec.type: spec.name for spec in components}
    stacks = client.list_stacks(name=name)
    if not stacks.items:
        client.create_stack(name=name, components=wanted)
        return "created"
    stack = client.get_stack(name, allow_name_prefix_match=False)
    current = {t: c[0].name for t, c in stack.components.items() if c}
    if current != wanted:
        # An empty list takes a component type off (e.g. the image builder).
        updates: dict[StackComponentType, list[str]] = {t: [] for t in current if t not in wanted}
        updates.update({t: [n] for t, n in wanted.items()})
        client.update_stack(name, component_updates=updates)
        return "updated"
    return "unchanged"


def production_components(settings: ProductionSettings) -> tuple[ComponentSpec, ...]:
    """The production stack's components, configured from the settings."""
    venv_bin = str(Path(sys.executable).parent)
    step_environment = {
        "PATH": os.pathsep.join((venv_bin, "/usr/local/bin", "/usr/bin", "/bin")),
        "ZENML_CONFIG_PATH": os.environ.get("ZENML_CONFIG_PATH", ""),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        # For ZenML's Seldon deployer (CLEARSIGHT_SELDON=kubernetes); unset: left out.
        "CLEARSIGHT_SERVING_IMAGE": os.environ.get("CLEARSIGHT_SERVING_IMAGE", ""),
        "KUBECONFIG": os.environ.get("KUBECONFIG", ""),
    }
    return (
        ComponentSpec(
            "airflow",
            "airflow",
            StackComponentType.ORCHESTRATOR,
            {
                "local": True,
                "dag_output_dir": str(settings.airflow_dags),
                "custom_dag_generator": "stack.airflow.dag_generator",
                "operator": BASH_OPERATOR,
                "operator_args": {
                    "clearsight": {
                        "python": sys.executable,
                        "cwd": SOURCE_ROOT,
                        "entrypoint_config_source": (
                            "stack.airflow.entrypoint.ProjectStepEntrypointConfiguration"
                        ),
                        "env": {k: v for k, v in step_environment.items() if v},
                    }
                },
            },
        ),
        ComponentSpec(
            "s3_store",
            "s3",
            StackComponentType.ARTIFACT_STORE,
            {
                "path": f"s3://{settings.artifact_bucket}",
                "authentication_secret": S3_SECRET,
                "client_kwargs": {
                    "endpoint_url": settings.s3_endpoint,
                    "region_name": settings.region,
                },
            },
        ),
        ComponentSpec(
            "mlflow_server",
            "mlflow",
            StackComponentType.EXPERIMENT_TRACKER,
            {
                "tracking_uri": settings.mlflow_uri,
                "tracking_username": f"{{{{{MLFLOW_SECRET}.username}}}}",
                "tracking_password": f"{{{{{MLFLOW_SECRET}.password}}}}",
            },
        ),
        ComponentSpec("mlflow_server_registry", "mlflow", StackComponentType.MODEL_REGISTRY),
        ComponentSpec("evidently", "evidently", StackComponentType.DATA_VALIDATOR),
        *model_deployer_components(settings),
    )


def model_deployer_components(settings: ProductionSettings) -> tuple[ComponentSpec, ...]:
    """``seldon_local``, or ZenML's Seldon Core deployer when ``CLEARSIGHT_SELDON=kubernetes``.

    ZenML's ``seldon`` deployer requires an image builder in the stack; ours
    serves a prebuilt image and the steps skip builds, so ZenML's ``local``
    image builder is registered only to satisfy that check. Nothing here
    contacts the cluster.
    """
    if settings.seldon_mode == "local":
        return (ComponentSpec("seldon_local", "local_seldon", StackComponentType.MODEL_DEPLOYER),)
    if settings.seldon_mode != "kubernetes":
        raise ValueError(
            f"CLEARSIGHT_SELDON={settings.seldon_mode!r}: use 'local' (default) or 'kubernetes'."
        )
    if not settings.seldon_base_url:
        raise ValueError(
            "CLEARSIGHT_SELDON=kubernetes needs CLEARSIGHT_SELDON_BASE_URL, the cluster's Seldon "
            "ingress (for example http://<ingress host>); see stack/kubernetes/README.md."
        )
    return (
        ComponentSpec("docker_local", "local", StackComponentType.IMAGE_BUILDER),
        ComponentSpec(
            SELDON_K8S,
            "seldon",
            StackComponentType.MODEL_DEPLOYER,
            {
                "kubernetes_context": settings.k8s_context,
                "kubernetes_namespace": settings.k8s_namespace,
                "base_url": settings.seldon_base_url.rstrip("/"),
                "secret": None,  # ZenML derives the storage secret from the artifact store
                "kubernetes_secret_name": settings.seldon_secret,
            },
        ),
    )


def ensure_secret(client: Client, name: str, values: dict[str, str]) -> str:
    """Create the ZenML secret, or update its values when they changed."""
    try:
        secret = client.get_secret(name, allow_partial_name_match=False)
    except KeyError:
        client.create_secret(name=name, values=values)
        return "created"
    if secret.secret_values != values:
        client.update_secret(name, add_or_update_values=values)
        return "updated"
    return "unchanged"


def register_production(activate: bool = True) -> None:
    """Register the production stack (services from the environment) and activate it."""
    from zenml.utils import source_utils

    settings = load_settings()
    source_utils.set_custom_source_root(SOURCE_ROOT)
    client = Client()
    ensure_flavors(client)
    ensure_secret(
        client,
        S3_SECRET,
        {
            "aws_access_key_id": settings.aws_access_key_id,
            "aws_secret_access_key": settings.aws_secret_access_key,
        },
    )
    ensure_secret(
        client,
        MLFLOW_SECRET,
        {"username": settings.mlflow_username, "password": settings.mlflow_password},
    )
    outcome = ensure_stack(client, PRODUCTION_STACK, production_components(settings))
    logger.info("Stack %s: %s", PRODUCTION_STACK, outcome)
    if activate and client.active_stack_model.name != PRODUCTION_STACK:
        client.activate_stack(PRODUCTION_STACK)
    print(f"Stack '{PRODUCTION_STACK}' {outcome}" + (" and active." if activate else "."))


def register_embedded(activate: bool = True) -> None:
    """Register the embedded default stack and optionally make it active."""
    from zenml.utils import source_utils

    # Flavor and step sources are module paths relative to the repository root,
    # whichever script or folder this is run from.
    source_utils.set_custom_source_root(SOURCE_ROOT)
    client = Client()
    ensure_flavors(client)
    outcome = ensure_stack(client, EMBEDDED_STACK, EMBEDDED_COMPONENTS)
    logger.info("Stack %s: %s", EMBEDDED_STACK, outcome)
    if activate and client.active_stack_model.name != EMBEDDED_STACK:
        client.activate_stack(EMBEDDED_STACK)
    print(f"Stack '{EMBEDDED_STACK}' {outcome}" + (" and active." if activate else "."))


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description="Register the platform's ZenML stacks (idempotent).",
        epilog="Examples: python -m stack.register && zenml stack describe\n"
        "          python -m stack.register production",
    )
    parser.add_argument(
        "stack",
        nargs="?",
        default=EMBEDDED_STACK,
        choices=(EMBEDDED_STACK, PRODUCTION_STACK),
        help="which stack (default: embedded; production needs `make services`)",
    )
    parser.add_argument("--no-activate", action="store_true", help="register without activating")
    args = parser.parse_args()
    quiet_shutdown()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.stack == PRODUCTION_STACK:
        register_production(activate=not args.no_activate)
    else:
        register_embedded(activate=not args.no_activate)


if __name__ == "__main__":
    main()
