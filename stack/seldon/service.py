"""The seldon-core 1.19 microservice as a ZenML local daemon service."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from zenml.logger import get_logger
from zenml.services import (
    HTTPEndpointHealthMonitor,
    HTTPEndpointHealthMonitorConfig,
    ServiceEndpointProtocol,
    ServiceType,
)
from zenml.services.local.local_service import LocalDaemonService, LocalDaemonServiceConfig
from zenml.services.local.local_service_endpoint import (
    LocalDaemonServiceEndpoint,
    LocalDaemonServiceEndpointConfig,
)
from zenml.services.service import BaseDeploymentService

from stack.seldon.launch import DEFAULT_HOST, HOST_ENV

logger = get_logger(__name__)

PREDICTION_PATH = "api/v1.0/predictions"
HEALTH_PATH = "health/ping"
MODEL_CLASS = "clearsight.seldon_model.ImageClassifier"
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def microservice_command(http_port: int, grpc_port: int, metrics_port: int, workers: int = 1):
    """The seldon-core-microservice command line that serves our model class."""
    # seldon-core's own command line, through our launcher so that it binds to
    # CLEARSIGHT_SERVING_HOST (127.0.0.1 unless set) rather than 0.0.0.0.
    return [
        sys.executable,
        "-m",
        "stack.seldon.launch",
        MODEL_CLASS,
        "--service-type",
        "MODEL",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        str(metrics_port),
        "--workers",
        str(workers),
    ]


class LocalSeldonEndpoint(LocalDaemonServiceEndpoint):
    """The HTTP endpoint of a local seldon-core microservice."""

    config: LocalDaemonServiceEndpointConfig
    monitor: HTTPEndpointHealthMonitor

    @property
    def prediction_url(self) -> str | None:
        """The Seldon v1 prediction URL."""
        return f"{self.status.uri.rstrip('/')}/{PREDICTION_PATH}" if self.status.uri else None


class LocalSeldonDeploymentConfig(LocalDaemonServiceConfig):
    """What to serve, and how.

    Attributes:
        model_dir: Folder with ``model.keras`` and ``serving.json``.
        model_name: Registered model name.
        model_version: ZenML model version number being served.
        registered_version: MLflow registry version being served.
        workers: gunicorn workers of the microservice.
        grpc_port: The microservice's gRPC port (0: pick a free one).
        metrics_port: The Prometheus metrics port (0: pick a free one).
        host: The address the microservice binds to (``0.0.0.0``: every interface).
    """

    model_dir: str
    model_name: str
    model_version: str = ""
    registered_version: str = ""
    workers: int = 1
    grpc_port: int = 0
    metrics_port: int = 0
    host: str = DEFAULT_HOST


class LocalSeldonDeploymentService(LocalDaemonService, BaseDeploymentService):
    """A seldon-core microservice serving one Clearsight model version."""

    SERVICE_TYPE = ServiceType(
        name="local-seldon-deployment",
        type="model-serving",
        flavor="local_seldon",
        description="seldon-core 1.19 microservice serving a Clearsight model",
    )
    config: LocalSeldonDeploymentConfig
    endpoint: LocalSeldonEndpoint

    def __init__(self, config: LocalSeldonDeploymentConfig | dict[str, Any], **attrs: Any):
        if not isinstance(config, LocalSeldonDeploymentConfig):
            config = LocalSeldonDeploymentConfig.model_validate(config)
        if "endpoint" not in attrs:
            attrs["endpoint"] = LocalSeldonEndpoint(
                config=LocalDaemonServiceEndpointConfig(
                    protocol=ServiceEndpointProtocol.HTTP, ip_address="127.0.0.1"
                ),
                monitor=HTTPEndpointHealthMonitor(
                    config=HTTPEndpointHealthMonitorConfig(
                        healthcheck_uri_path=HEALTH_PATH, use_head_request=False
                    )
                ),
            )
        super().__init__(config=config, **attrs)

    @property
    def prediction_url(self) -> str | None:
        """Where clients send predictions."""
        return self.endpoint.prediction_url

    def _get_daemon_cmd(self) -> tuple[list[str], dict[str, str]]:
        command, env = super()._get_daemon_cmd()
        # The daemon imports this class by its module path: make the project importable.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        return command, env

    def _stop_daemon(self, force: bool = False) -> None:
        """Stop the daemon and every process the microservice started.

        seldon-core's main process starts the REST, gRPC and metrics servers as
        separate processes and does not take them all down on SIGTERM, so the
        whole process tree is signalled, then killed after a grace period.
        """
        if self.status.pid:
            _terminate_tree(self.status.pid, force=force)

    def run(self) -> None:
        """Run the seldon-core microservice as this daemon's child, until it exits.

        The daemon stays the ZenML entrypoint ZenML knows; SIGTERM (or the
        deployer's stop) takes down the microservice's whole process tree.
        """
        import signal
        import subprocess

        from zenml.utils.networking_utils import scan_for_available_port

        self.endpoint.prepare_for_start()
        port = self.endpoint.status.port
        grpc = self.config.grpc_port or scan_for_available_port(start=port + 1000, stop=port + 2000)
        metrics = self.config.metrics_port or scan_for_available_port(
            start=port + 2000, stop=port + 3000
        )
        env = {
            **os.environ,
            "CLEARSIGHT_MODEL_DIR": self.config.model_dir,
            "PYTHONPATH": os.pathsep.join(
                p for p in (SOURCE_ROOT, os.environ.get("PYTHONPATH")) if p
            ),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            HOST_ENV: self.config.host,
        }
        argv = microservice_command(port, grpc, metrics, self.config.workers)
        logger.info("Starting seldon-core microservice: %s", " ".join(argv))
        child = subprocess.Popen(argv, env=env, cwd=SOURCE_ROOT)

        def stop(signum: int, _frame: Any) -> None:
            _terminate_tree(child.pid)
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        sys.exit(child.wait())


def _terminate_tree(pid: int, force: bool = False, grace: float = 10) -> None:
    """Signal a process and all its descendants; kill what survives the grace period."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    processes = [*root.children(recursive=True), root]
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill() if force else process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
