"""Register the platform's ZenML stacks; safe to run any number of times.

Usage::

    python -m stack.register                 # register the embedded stack and activate it
    python -m stack.register --no-activate   # register only

The embedded stack needs no server: the local orchestrator, the local artifact
store (inside ZENML_CONFIG_PATH), an MLflow experiment tracker and model
registry backed by a SQLite file in that artifact store, an Evidently data
validator, and the local Seldon model deployer (our ``local_seldon`` flavor:
the seldon-core microservice as a local daemon). Later stacks (production)
are added here, their endpoints and credentials read from environment
variables or ZenML secrets.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zenml.client import Client
from zenml.enums import StackComponentType

from stack.runtime import quiet_shutdown

logger = logging.getLogger(__name__)

EMBEDDED_STACK = "embedded"


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
        client.update_stack(name, component_updates={t: [n] for t, n in wanted.items()})
        return "updated"
    return "unchanged"


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
        epilog="Example: python -m stack.register && zenml stack describe",
    )
    parser.add_argument("--no-activate", action="store_true", help="register without activating")
    args = parser.parse_args()
    quiet_shutdown()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    register_embedded(activate=not args.no_activate)


if __name__ == "__main__":
    main()
