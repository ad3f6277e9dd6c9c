"""Stop and delete every local Seldon prediction server: ``python -m stack.serve_stop``."""

from __future__ import annotations

from zenml.client import Client

from stack.runtime import quiet_shutdown
from stack.seldon.service import LocalSeldonDeploymentService


def main() -> None:
    """Delete the servers the active stack's local Seldon deployer knows."""
    quiet_shutdown()
    deployer = Client().active_stack.model_deployer
    if deployer is None:
        print("The active stack has no model deployer: nothing to stop.")
        return
    servers = deployer.find_model_server(service_type=LocalSeldonDeploymentService.SERVICE_TYPE)
    for server in servers:
        deployer.delete_model_server(server.uuid, force=True)
        print(f"Deleted {server.config.service_name} ({server.uuid})")
    if not servers:
        print("No local Seldon server is registered.")


if __name__ == "__main__":
    main()
