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
secrets (``clearsight_s3``, ``clearsight_mlflow``: the pipelines' MLflow account
``clearsight``, which may write but is no MLflow admin, see
:mod:`stack.mlflow_auth`) and the components refer to them, so no secret is
stored in a component's configuration.
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
IMAGE_BUILDER = "docker_local"
BASH_OPERATOR = "airflow.providers.standard.operators.bash.BashOperator"
DAG_GENERATOR = "stack.airflow.dag_generator"
# CLEARSIGHT_AIRFLOW_OPERATOR -> the operator class ZenML's DAG generator imports.
CONTAINER_OPERATORS = {
    "docker": "airflow.providers.docker.operators.docker.DockerOperator",
    "kubernetes_pod": "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator",
}


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


def missing_flavors(client: Client) -> list[tuple[str, str, StackComponentType]]:
    """The project's own flavors not registered yet (one registered elsewhere: an error)."""
    missing = []
    for name, source, component_type in FLAVORS:
        known = client.list_flavors(name=name, type=component_type.value).items
        if not known:
            missing.append((name, source, component_type))
        elif all(f.source != source for f in known):
            raise RuntimeError(
                f"Flavor {name!r} is registered from {known[0].source}, not {source}. "
                "Delete the components using it, then: zenml "
                f"{component_type.value.replace('_', '-')} flavor delete {name}; "
                "and run python -m stack.register again."
            )
    return missing


def ensure_flavors(client: Client) -> None:
    """Register the project's own flavors (re-registering is a no-op)."""
    for name, source, component_type in missing_flavors(client):
        client.create_flavor(source=source, component_type=component_type)
        logger.info("flavor %s registered", name)


def _with_secret_values(value: Any, secrets: dict[str, dict[str, str]]) -> Any:
    """``{{secret.key}}`` replaced by the value about to be stored (the secret may be new)."""
    if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
        name, _, key = value[2:-2].strip().partition(".")
        if name in secrets and key in secrets[name]:
            return secrets[name][key]
    return value


def validate_components(
    client: Client,
    specs: tuple[ComponentSpec, ...],
    secrets: dict[str, dict[str, str]] | None = None,
) -> None:
    """Check every component against its flavor before anything is written.

    ``secrets`` are the ZenML secrets the registration is about to write: a
    reference to one of them is checked with its value.

    Raises:
        ValueError: A configuration the flavor refuses.
        RuntimeError: An unknown flavor, or a component of that name with another flavor.
    """
    from zenml.stack.flavor import Flavor
    from zenml.stack.utils import validate_stack_component_config
    from zenml.utils import source_utils

    unregistered = {(name, kind): source for name, source, kind in missing_flavors(client)}
    for spec in specs:
        kind = spec.type.value.replace("_", "-")
        existing = client.list_stack_components(name=spec.name, type=spec.type.value).items
        if existing and existing[0].flavor_name != spec.flavor:
            raise RuntimeError(
                f"A {spec.type.value} named {spec.name!r} exists with flavor "
                f"{existing[0].flavor_name!r}, not {spec.flavor!r}. Rename or delete it: "
                f"zenml {kind} delete {spec.name}"
            )
        # Keys left null are taken off, as the update does.
        configuration = {
            k: _with_secret_values(v, secrets or {})
            for k, v in spec.configuration.items()
            if v is not None
        }
        try:
            if (spec.flavor, spec.type) in unregistered:
                flavor: Flavor = source_utils.load(unregistered[(spec.flavor, spec.type)])()
                flavor.config_class(**configuration)
                continue
            flavor_model = client.get_flavor_by_name_and_type(spec.flavor, spec.type)
        except KeyError:
            raise RuntimeError(
                f"ZenML knows no {kind} flavor {spec.flavor!r} (for {spec.name!r}). "
                f"Check: zenml {kind} flavor list"
            ) from None
        except ValueError as error:
            raise ValueError(
                f"The {spec.type.value} {spec.name!r} ({spec.flavor}) is misconfigured: {error}"
            ) from None
        try:
            validate_stack_component_config(
                configuration,
                flavor_model,
                spec.type,
                existing_config=existing[0].configuration if existing else None,
            )
        except ValueError as error:
            raise ValueError(
                f"The {spec.type.value} {spec.name!r} ({spec.flavor}) is misconfigured: {error}"
            ) from None


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
    specs = (
        *airflow_components(settings, {k: v for k, v in step_environment.items() if v}),
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
    unique: dict[tuple[StackComponentType, str], ComponentSpec] = {}
    for spec in specs:  # the image builder may be asked for twice
        unique.setdefault((spec.type, spec.name), spec)
    return tuple(unique.values())


def airflow_components(
    settings: ProductionSettings, step_environment: dict[str, str]
) -> tuple[ComponentSpec, ...]:
    """The Airflow orchestrator (and what its operator needs), per ``CLEARSIGHT_AIRFLOW_OPERATOR``.

    ``bash`` (default): our DAG generator, each step a BashOperator in the
    project's virtualenv, no image. ``docker`` / ``kubernetes_pod``: ZenML's own
    generator and operator; ZenML builds the steps' image with the ``local``
    image builder (Docker) and pushes it to ``CLEARSIGHT_CONTAINER_REGISTRY``
    (required for pods, which pull it from there).
    """
    base = {"local": True, "dag_output_dir": str(settings.airflow_dags)}
    operator = settings.airflow_operator or "bash"
    if operator == "bash":
        orchestrator = {
            **base,
            "custom_dag_generator": DAG_GENERATOR,
            "operator": BASH_OPERATOR,
            "operator_args": {
                "clearsight": {
                    "python": sys.executable,
                    "cwd": SOURCE_ROOT,
                    "entrypoint_config_source": (
                        "stack.airflow.entrypoint.ProjectStepEntrypointConfiguration"
                    ),
                    "env": step_environment,
                }
            },
        }
        return (ComponentSpec("airflow", "airflow", StackComponentType.ORCHESTRATOR, orchestrator),)
    if operator not in CONTAINER_OPERATORS:
        raise ValueError(
            f"CLEARSIGHT_AIRFLOW_OPERATOR={operator!r}: use 'bash' (default), "
            "'docker' or 'kubernetes_pod'."
        )
    if operator == "kubernetes_pod" and not settings.container_registry:
        raise ValueError(
            "CLEARSIGHT_AIRFLOW_OPERATOR=kubernetes_pod needs CLEARSIGHT_CONTAINER_REGISTRY, the "
            "registry the pods pull the step image from (for example registry.example.com/ml)."
        )
    orchestrator = {
        **base,
        "custom_dag_generator": None,  # ZenML's own generator
        "operator": CONTAINER_OPERATORS[operator],
        "operator_args": {},
    }
    specs = [
        ComponentSpec("airflow", "airflow", StackComponentType.ORCHESTRATOR, orchestrator),
        ComponentSpec(IMAGE_BUILDER, "local", StackComponentType.IMAGE_BUILDER),
    ]
    if settings.container_registry:
        specs.append(
            ComponentSpec(
                "registry",
                "default",
                StackComponentType.CONTAINER_REGISTRY,
                {"uri": settings.container_registry},
            )
        )
    return tuple(specs)


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
        ComponentSpec(IMAGE_BUILDER, "local", StackComponentType.IMAGE_BUILDER),
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
    """Register the production stack (services from the environment) and activate it.

    Every component is built and checked against its flavor first; only then
    are flavors, secrets, components and the stack written. A configuration
    error leaves ZenML as it was.

    Raises:
        ValueError: A setting or a component configuration is invalid.
        RuntimeError: A flavor or component conflicts with one already registered.
    """
    from zenml.utils import source_utils

    settings = load_settings()
    source_utils.set_custom_source_root(SOURCE_ROOT)
    components = production_components(settings)
    secrets = {
        S3_SECRET: {
            "aws_access_key_id": settings.aws_access_key_id,
            "aws_secret_access_key": settings.aws_secret_access_key,
        },
        MLFLOW_SECRET: {"username": settings.mlflow_username, "password": settings.mlflow_password},
    }
    client = Client()
    validate_components(client, components, secrets)
    ensure_flavors(client)
    for name, values in secrets.items():
        logger.info("secret %s %s", name, ensure_secret(client, name, values))
    outcome = ensure_stack(client, PRODUCTION_STACK, components)
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
    validate_components(client, EMBEDDED_COMPONENTS)
    ensure_flavors(client)
    outcome = ensure_stack(client, EMBEDDED_STACK, EMBEDDED_COMPONENTS)
    logger.info("Stack %s: %s", EMBEDDED_STACK, outcome)
    if activate and client.active_stack_model.name != EMBEDDED_STACK:
        client.activate_stack(EMBEDDED_STACK)
    print(f"Stack '{EMBEDDED_STACK}' {outcome}" + (" and active." if activate else "."))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; 1 (with the reason, no traceback) when nothing could be done."""
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
    args = parser.parse_args(argv)
    quiet_shutdown()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from stack.preflight import zenml_server_problem

    server = zenml_server_problem()
    if server:
        print(f"error: nothing was registered. {server}", file=sys.stderr)
        return 1
    try:
        if args.stack == PRODUCTION_STACK:
            register_production(activate=not args.no_activate)
        else:
            register_embedded(activate=not args.no_activate)
    except (ValueError, RuntimeError) as error:
        print(f"error: stack '{args.stack}' not registered: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
