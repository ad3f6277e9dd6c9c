"""Stop and delete every local Seldon prediction server: ``python -m stack.serve_stop``."""

from __future__ import annotations

from typing import Any

from zenml.client import Client
from zenml.enums import StackComponentType
from zenml.stack import StackComponent

from stack.runtime import quiet_shutdown
from stack.seldon.flavor import FLAVOR_NAME
from stack.seldon.service import LocalSeldonDeploymentService


def local_deployer() -> Any:
    """The active stack's local Seldon deployer, else any registered one (or None)."""
    client = Client()
    deployer = client.active_stack.model_deployer
    if deployer is not None and deployer.flavor == FLAVOR_NAME:
        return deployer
    components = client.list_stack_components(
        type=StackComponentType.MODEL_DEPLOYER.value, flavor=FLAVOR_NAME
    ).items
    return StackComponent.from_model(components[0]) if components else None


def main() -> None:
    """Delete every server the local Seldon deployer knows, whichever stack is active."""
    quiet_shutdown()
    deployer = local_deployer()
    if deployer is None:
        print("No local Seldon model deployer is registered: nothing to stop.")
        return
    servers = deployer.find_model_server(service_type=LocalSeldonDeploymentService.SERVICE_TYPE)
    for server in servers:
        deployer.delete_model_server(server.uuid, force=True)
        print(f"Deleted {server.config.service_name} ({server.uuid})")
    if not servers:
        print("No local Seldon server is registered.")


if __name__ == "__main__":
    main()
