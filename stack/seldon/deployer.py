"""The local Seldon model deployer: start, stop and delete microservices."""

from __future__ import annotations

import os
import shutil
from typing import ClassVar, cast
from uuid import UUID

from zenml.client import Client
from zenml.config.global_config import GlobalConfiguration
from zenml.model_deployers import BaseModelDeployer
from zenml.model_deployers.base_model_deployer import (
    BaseModelDeployerFlavor,
    get_model_version_id_if_exists,
)
from zenml.services.service import BaseService, ServiceConfig

from stack.seldon.flavor import LocalSeldonModelDeployerConfig, LocalSeldonModelDeployerFlavor
from stack.seldon.service import LocalSeldonDeploymentConfig, LocalSeldonDeploymentService

DEFAULT_TIMEOUT = 120


class LocalSeldonModelDeployer(BaseModelDeployer):
    """Runs each deployed model as a seldon-core microservice daemon."""

    NAME: ClassVar[str] = "Local Seldon"
    FLAVOR: ClassVar[type[BaseModelDeployerFlavor]] = LocalSeldonModelDeployerFlavor

    @property
    def config(self) -> LocalSeldonModelDeployerConfig:
        """The deployer's configuration."""
        return cast(LocalSeldonModelDeployerConfig, self._config)

    @property
    def local_path(self) -> str:
        """Root folder of this deployer's services."""
        path = self.config.service_path or os.path.join(
            GlobalConfiguration().local_stores_path, str(self.id)
        )
        os.makedirs(path, exist_ok=True)
        return path

    @staticmethod
    def get_model_server_info(service_instance: BaseService) -> dict[str, str | None]:
        """What `zenml model-deployer models describe` shows."""
        service = cast(LocalSeldonDeploymentService, service_instance)
        return {
            "PREDICTION_URL": service.prediction_url,
            "HEALTH_CHECK_URL": service.endpoint.monitor.get_healthcheck_uri(service.endpoint),
            "MODEL_NAME": service.config.model_name,
            "MODEL_VERSION": service.config.model_version,
            "REGISTERED_VERSION": service.config.registered_version,
            "MODEL_DIR": service.config.model_dir,
            "SERVICE_PATH": service.status.runtime_path,
            "DAEMON_PID": str(service.status.pid),
        }

    def servers_for(self, model_name: str) -> list[LocalSeldonDeploymentService]:
        """Every server of ours for a model, whichever model version it serves.

        ``find_model_server(model_name=...)`` matches only servers linked to the
        model's *latest* version, which misses the champion after a rollback.
        """
        return [
            cast(LocalSeldonDeploymentService, service)
            for service in self.find_model_server(
                service_type=LocalSeldonDeploymentService.SERVICE_TYPE
            )
            if service.config.model_name == model_name
        ]

    def deploy_new_server(
        self, config: LocalSeldonDeploymentConfig, timeout: int = DEFAULT_TIMEOUT
    ) -> LocalSeldonDeploymentService:
        """Always start a new server (blue-green), registered in the ZenML store.

        ``BaseModelDeployer.deploy_model`` returns any existing server whose
        configuration it deems equal, and its other mode deletes the old server
        before the new one is up; a blue-green swap needs neither.
        """
        client = Client()
        config = config.model_copy(update={"host": self.config.host})
        response = client.create_service(
            config=config,
            service_type=LocalSeldonDeploymentService.SERVICE_TYPE,
            # links the server to the ZenML model version (find_model_server filters on it)
            model_version_id=get_model_version_id_if_exists(
                config.model_name, config.model_version
            ),
        )
        try:
            service = cast(
                LocalSeldonDeploymentService,
                self.perform_deploy_model(id=response.id, config=config, timeout=timeout),
            )
        except Exception:
            client.delete_service(response.id)
            raise
        client.update_service(
            id=service.uuid,
            name=service.config.service_name,
            service_source=service.model_dump().get("type"),
            admin_state=service.admin_state,
            status=service.status.model_dump(),
            endpoint=service.endpoint.model_dump() if service.endpoint else None,
            prediction_url=service.get_prediction_url(),
            health_check_url=service.get_healthcheck_url(),
        )
        return service

    def perform_deploy_model(
        self, id: UUID, config: ServiceConfig, timeout: int = DEFAULT_TIMEOUT
    ) -> BaseService:
        """Start a new microservice for the model and wait until it is healthy."""
        config = cast(LocalSeldonDeploymentConfig, config)
        config.root_runtime_path = self.local_path
        service = LocalSeldonDeploymentService(uuid=id, config=config)
        service.start(timeout=timeout)
        return service

    def perform_stop_model(
        self, service: BaseService, timeout: int = DEFAULT_TIMEOUT, force: bool = False
    ) -> BaseService:
        """Stop the microservice (gunicorn master and workers)."""
        service.stop(timeout=timeout, force=force)
        return service

    def perform_start_model(
        self, service: BaseService, timeout: int = DEFAULT_TIMEOUT
    ) -> BaseService:
        """Start a stopped microservice again."""
        service.start(timeout=timeout)
        return service

    def perform_delete_model(
        self, service: BaseService, timeout: int = DEFAULT_TIMEOUT, force: bool = False
    ) -> None:
        """Stop the microservice and remove its files."""
        service = cast(LocalSeldonDeploymentService, service)
        service.stop(timeout=timeout, force=force)
        if service.status.runtime_path and os.path.isdir(service.status.runtime_path):
            shutil.rmtree(service.status.runtime_path, ignore_errors=True)
