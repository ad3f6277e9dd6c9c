"""The local Seldon model deployer: start, stop and delete microservices."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from typing import ClassVar, cast
from uuid import UUID

from zenml.client import Client
from zenml.config.global_config import GlobalConfiguration
from zenml.logger import get_logger
from zenml.model_deployers import BaseModelDeployer
from zenml.model_deployers.base_model_deployer import (
    BaseModelDeployerFlavor,
    get_model_version_id_if_exists,
)
from zenml.services.service import BaseService, ServiceConfig

from stack.seldon import prometheus_targets
from stack.seldon.flavor import LocalSeldonModelDeployerConfig, LocalSeldonModelDeployerFlavor
from stack.seldon.service import LocalSeldonDeploymentConfig, LocalSeldonDeploymentService

logger = get_logger(__name__)

DEFAULT_TIMEOUT = 120
LOG_TAIL_LINES = 30


class ServerStartError(RuntimeError):
    """A new server did not become healthy; it was stopped and removed."""


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
            "METRICS_URL": service.metrics_url,
            "GRPC_PORT": str(service.status.grpc_port) if service.status.grpc_port else None,
            "MODEL_NAME": service.config.model_name,
            "MODEL_VERSION": service.config.model_version,
            "REGISTERED_VERSION": service.config.registered_version,
            "MODEL_DIR": service.config.model_dir,
            "WORKERS": str(service.config.workers) if service.config.workers else None,
            "API_KEYS": "required" if service.config.api_keys else "off",
            "SERVICE_PATH": service.status.runtime_path,
            "DAEMON_PID": str(service.status.pid),
            "PROMETHEUS_TARGETS": str(prometheus_targets.targets_path()),
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

    def write_prometheus_targets(
        self,
        current: Iterable[LocalSeldonDeploymentService] = (),
        exclude: Iterable[UUID] = (),
    ) -> None:
        """Rewrite the Prometheus ``file_sd`` file with every running server.

        Args:
            current: Services whose in-memory state is newer than the store's.
            exclude: Services that are going away.
        """
        try:
            services = {
                s.uuid: s
                for s in self.find_model_server(
                    service_type=LocalSeldonDeploymentService.SERVICE_TYPE
                )
            }
            services.update({s.uuid: s for s in current})
            for uuid in exclude:
                services.pop(uuid, None)
            running = [
                cast(LocalSeldonDeploymentService, s)
                for s in services.values()
                if isinstance(s, LocalSeldonDeploymentService) and s.status.pid
            ]
            path = prometheus_targets.write_targets(running)
            logger.debug("Prometheus targets (%d) written to %s", len(running), path)
        except Exception as error:  # noqa: BLE001 - monitoring must never break serving
            logger.warning("Could not write the Prometheus targets file: %s", error)

    def deploy_new_server(
        self, config: LocalSeldonDeploymentConfig, timeout: int = DEFAULT_TIMEOUT
    ) -> LocalSeldonDeploymentService:
        """Always start a new server (blue-green), registered in the ZenML store.

        ``BaseModelDeployer.deploy_model`` returns any existing server whose
        configuration it deems equal, and its other mode deletes the old server
        before the new one is up; a blue-green swap needs neither.

        With API keys required (the deployer's ``api_keys``, see
        :func:`stack.seldon.flavor.keys_required`) the platform's own client key
        is made first (:func:`stack.endpoint.ensure_platform_key`), so that the
        smoke test and the review app on this machine can call the server.

        Raises:
            ServerStartError: The server did not become healthy; its processes,
                files and store record are gone, its log kept (path in the message).
            ValueError: API keys would be off on a host beyond loopback.
        """
        from stack.endpoint import ensure_platform_key
        from stack.seldon.flavor import keys_required

        client = Client()
        api_keys = keys_required(self.config.host, self.config.api_keys)
        if api_keys:
            ensure_platform_key()
        config = config.model_copy(
            update={
                "host": self.config.host,
                "workers": config.workers or self.config.workers,
                "api_keys": api_keys,
            }
        )
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
        self.write_prometheus_targets(current=[service])
        return service

    def perform_deploy_model(
        self, id: UUID, config: ServiceConfig, timeout: int = DEFAULT_TIMEOUT
    ) -> BaseService:
        """Start a new microservice for the model and wait until it is healthy.

        A start that fails or times out leaves nothing behind: the daemon and
        the microservice's whole process group are killed and the runtime
        folder removed; its log is kept under ``<service path>/failed/``.

        Raises:
            ServerStartError: The server did not become healthy.
        """
        config = cast(LocalSeldonDeploymentConfig, config)
        config.root_runtime_path = self.local_path
        if not config.workers:
            config.workers = self.config.workers
        service = LocalSeldonDeploymentService(uuid=id, config=config)
        try:
            service.start(timeout=timeout)
            if not service.is_running:
                raise ServerStartError(
                    service.status.last_error or f"not healthy within {timeout} s"
                )
        except Exception as error:
            log = self._discard_failed(service)
            raise ServerStartError(
                f"The server for {config.model_name} v{config.registered_version or '?'} did "
                f"not start ({error}); it was stopped and removed. Log: {log}"
                + (f"\n{_tail(log)}" if log else "")
            ) from error
        return service

    def _discard_failed(self, service: LocalSeldonDeploymentService) -> str | None:
        """Kill every process of a failed server, keep its log, remove its folder."""
        with contextlib.suppress(Exception):
            service.stop(timeout=10, force=True)
        kept = None
        runtime = service.status.runtime_path
        log = service.status.log_file
        if log and os.path.exists(log):
            failed = os.path.join(self.local_path, "failed")
            os.makedirs(failed, exist_ok=True)
            kept = os.path.join(failed, f"{service.uuid}.log")
            shutil.copyfile(log, kept)
        if runtime and os.path.isdir(runtime):
            shutil.rmtree(runtime, ignore_errors=True)
        return kept

    def perform_stop_model(
        self, service: BaseService, timeout: int = DEFAULT_TIMEOUT, force: bool = False
    ) -> BaseService:
        """Stop the microservice (daemon, gunicorn master and workers, gRPC, metrics)."""
        service.stop(timeout=timeout, force=force)
        self.write_prometheus_targets(exclude=[service.uuid])
        return service

    def perform_start_model(
        self, service: BaseService, timeout: int = DEFAULT_TIMEOUT
    ) -> BaseService:
        """Start a stopped microservice again."""
        service.start(timeout=timeout)
        self.write_prometheus_targets(current=[cast(LocalSeldonDeploymentService, service)])
        return service

    def perform_delete_model(
        self, service: BaseService, timeout: int = DEFAULT_TIMEOUT, force: bool = False
    ) -> None:
        """Stop the microservice and remove its files."""
        service = cast(LocalSeldonDeploymentService, service)
        service.stop(timeout=timeout, force=force)
        self.write_prometheus_targets(exclude=[service.uuid])
        if service.status.runtime_path and os.path.isdir(service.status.runtime_path):
            shutil.rmtree(service.status.runtime_path, ignore_errors=True)


def _tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).rstrip()
    except OSError:
        return ""
