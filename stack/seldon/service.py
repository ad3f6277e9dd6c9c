"""The seldon-core 1.19 microservice as a ZenML local daemon service.

Process layout of one server::

    ZenML daemon (local_daemon_entrypoint, runs ``run()``)
      └── seldon-core microservice (stack.seldon.launch): its own process group
            ├── gunicorn REST workers
            ├── gRPC server process
            └── metrics server (gunicorn master + worker)

The microservice runs in a process group of its own whose id is written to
``microservice.pgid`` in the service's runtime folder, so that stopping the
service reaches every process even when one of them was re-parented. The
microservice also watches the daemon and takes its whole group down when the
daemon dies (see :mod:`stack.seldon.launch`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import Field
from zenml.enums import ServiceState
from zenml.logger import get_logger
from zenml.services import (
    HTTPEndpointHealthMonitor,
    HTTPEndpointHealthMonitorConfig,
    ServiceEndpointProtocol,
    ServiceType,
)
from zenml.services.local.local_service import (
    LocalDaemonService,
    LocalDaemonServiceConfig,
    LocalDaemonServiceStatus,
)
from zenml.services.local.local_service_endpoint import (
    LocalDaemonServiceEndpoint,
    LocalDaemonServiceEndpointConfig,
)
from zenml.services.service import BaseDeploymentService

from clearsight.api_keys import MODE_ENV as API_KEYS_ENV
from stack.seldon.launch import DEFAULT_HOST, HOST_ENV, PARENT_PID_ENV

logger = get_logger(__name__)

PREDICTION_PATH = "api/v1.0/predictions"
HEALTH_PATH = "health/ping"
MODEL_CLASS = "clearsight.seldon_model.ImageClassifier"
SOURCE_ROOT = str(Path(__file__).resolve().parents[2])
PGID_FILE = "microservice.pgid"
LAUNCHER = "stack.seldon.launch"
STOP_GRACE = 30  # seconds gunicorn gets to finish in-flight requests on a graceful stop
PID_FILE_WAIT = 15  # seconds to wait for the daemon to write its PID file
ANY_HOSTS = {"0.0.0.0", "::", ""}  # noqa: S104 - bind addresses, not connected to

# Every port another program of the platform is documented to use (README,
# *Services and ports*, plus the Prometheus ecosystem's defaults that come
# next). No endpoint port is ever chosen among them, so that a deploy cannot
# take, say, the production S3 port before `make services` starts S3. The one
# list of them: add a service's port here when it gets one.
RESERVED_PORTS: frozenset[int] = frozenset(
    {
        3000,  # Grafana (docker-compose)
        5000,  # MLflow tracking server (production stack)
        5001,  # MLflow UI on the embedded stack's store (make mlflow-ui)
        5432,  # PostgreSQL (docker-compose)
        8080,  # Airflow API server and UI
        8237,  # ZenML server and dashboard
        8501,  # Streamlit review app
        8502,  # review app metrics
        8793,  # Airflow worker log server
        8794,  # Airflow triggerer log server
        9000,  # S3 API (moto here, MinIO in docker-compose)
        9001,  # MinIO console (docker-compose)
        9090,  # Prometheus
        9091,  # Prometheus Pushgateway (default port)
        9093,  # Prometheus Alertmanager (default port)
    }
)
# Where each port of an endpoint is chosen: the first free port of its range
# that is not reserved. The gRPC and metrics ranges are dedicated (they hold no
# reserved port and do not overlap); the REST port keeps ZenML's usual start,
# 8000, and skips the reserved ports inside its range.
HTTP_PORTS = range(8000, 9000)
METRICS_PORTS = range(10000, 11000)
GRPC_PORTS = range(11000, 12000)
# The production services' URLs can move (stack.settings): their ports are reserved too.
SERVICE_URL_ENVS = (
    "CLEARSIGHT_S3_ENDPOINT",
    "CLEARSIGHT_MLFLOW_URI",
    "CLEARSIGHT_ZENML_URL",
    "CLEARSIGHT_AIRFLOW_URL",
    "CLEARSIGHT_ALERTMANAGER_URL",
    "CLEARSIGHT_PUSHGATEWAY_URL",
)


def reserved_ports() -> frozenset[int]:
    """:data:`RESERVED_PORTS` plus the ports of the service URLs set in the environment."""
    from urllib.parse import urlparse

    extra = set()
    for name in SERVICE_URL_ENVS:
        with contextlib.suppress(ValueError):
            port = urlparse(os.environ.get(name, "")).port
            if port:
                extra.add(port)
    return RESERVED_PORTS | extra


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP port can be bound on ``host`` now, by any program.

    Stricter than ZenML's ``port_available``, which binds with ``SO_REUSEPORT``
    and so reports a port as free while a gRPC server (seldon-core binds with
    ``grpc.so_reuseport``) listens on it.
    """
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError:
        return False
    return True


def pick_port(
    ports: range,
    host: str = "127.0.0.1",
    preferred: tuple[int | None, ...] = (),
    taken: set[int] | frozenset[int] = frozenset(),
) -> int:
    """The first of ``preferred``, else of ``ports``, that is free and not reserved.

    A preferred port (configured, or used by the previous run) is kept when
    it is free and neither reserved nor in ``taken``.

    Raises:
        OSError: Every port of the range is taken or reserved.
    """
    avoid = reserved_ports() | set(taken)
    for port in (*preferred, *ports):
        if port and port not in avoid and port_free(port, host):
            return port
    raise OSError(
        f"No free TCP port in {ports.start}-{ports.stop - 1} for the seldon-core "
        f"microservice (reserved ports skipped: {sorted(avoid & set(ports))}); stop "
        f"servers you no longer need: make serve-stop"
    )


def microservice_command(http_port: int, grpc_port: int, metrics_port: int, workers: int = 1):
    """The seldon-core-microservice command line that serves our model class."""
    # seldon-core's own command line, through our launcher so that it binds to
    # CLEARSIGHT_SERVING_HOST (127.0.0.1 unless set) rather than 0.0.0.0.
    return [
        sys.executable,
        "-m",
        LAUNCHER,
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


def client_host(host: str) -> str:
    """The address clients (and the health check) use for a bind address."""
    return "127.0.0.1" if host in ANY_HOSTS else host


class LocalSeldonEndpoint(LocalDaemonServiceEndpoint):
    """The HTTP endpoint of a local seldon-core microservice."""

    config: LocalDaemonServiceEndpointConfig
    monitor: HTTPEndpointHealthMonitor

    @property
    def prediction_url(self) -> str | None:
        """The Seldon v1 prediction URL."""
        return f"{self.status.uri.rstrip('/')}/{PREDICTION_PATH}" if self.status.uri else None

    def _lookup_free_port(self) -> int:
        """The REST port: configured, else the previous one, else the first free of 8000-8999.

        As ZenML's own lookup, except that it never picks a reserved port
        (:data:`RESERVED_PORTS`) unless explicitly configured, and that it
        sees ports held with ``SO_REUSEPORT`` as taken.
        """
        host = self.config.ip_address or "127.0.0.1"
        if self.config.port:
            if port_free(self.config.port, host):
                return self.config.port
            if not self.config.allocate_port:
                raise OSError(f"TCP port {self.config.port} is not available.")
        return pick_port(HTTP_PORTS, host, preferred=(self.status.port,))


class LocalSeldonDeploymentConfig(LocalDaemonServiceConfig):
    """What to serve, and how.

    Attributes:
        model_dir: Folder with ``model.keras`` and ``serving.json``.
        model_name: Registered model name.
        model_version: ZenML model version number being served.
        registered_version: MLflow registry version being served.
        workers: gunicorn workers of the microservice (None: the deployer's setting).
        grpc_port: The microservice's gRPC port (0: pick a free one).
        metrics_port: The Prometheus metrics port (0: pick a free one).
        host: The address the microservice binds to (``0.0.0.0``: every interface).
        api_keys: Clients must send an API key (``CLEARSIGHT_API_KEYS=required``);
            required with a host beyond loopback.
    """

    model_dir: str
    model_name: str
    model_version: str = ""
    registered_version: str = ""
    workers: int | None = None
    grpc_port: int = 0
    metrics_port: int = 0
    host: str = DEFAULT_HOST
    api_keys: bool = False

    def check_exposure(self) -> None:
        """Refuse to start a server without API keys on a host beyond loopback.

        Checked when the server starts rather than when the configuration is
        read, so that a stored server of older code can still be listed and deleted.

        Raises:
            ValueError: ``api_keys`` is off and ``host`` is not a loopback address.
        """
        from clearsight.api_keys import is_loopback
        from stack.seldon.flavor import KEYS_OFF_BEYOND_LOOPBACK

        if not self.api_keys and not is_loopback(self.host):
            raise ValueError(KEYS_OFF_BEYOND_LOOPBACK.format(host=self.host))


class LocalSeldonDeploymentStatus(LocalDaemonServiceStatus):
    """The daemon's status plus the ports the microservice was started with.

    Attributes:
        grpc_port: The gRPC port in use (chosen at start).
        metrics_port: The Prometheus metrics port in use (chosen at start).
    """

    grpc_port: int | None = None
    metrics_port: int | None = None

    @property
    def pgid_file(self) -> str | None:
        """File holding the microservice's process group id."""
        return os.path.join(self.runtime_path, PGID_FILE) if self.runtime_path else None


class LocalSeldonDeploymentService(LocalDaemonService, BaseDeploymentService):
    """A seldon-core microservice serving one Clearsight model version."""

    SERVICE_TYPE = ServiceType(
        name="local-seldon-deployment",
        type="model-serving",
        flavor="local_seldon",
        description="seldon-core 1.19 microservice serving a Clearsight model",
    )
    config: LocalSeldonDeploymentConfig
    status: LocalSeldonDeploymentStatus = Field(default_factory=LocalSeldonDeploymentStatus)
    endpoint: LocalSeldonEndpoint

    def __init__(self, config: LocalSeldonDeploymentConfig | dict[str, Any], **attrs: Any):
        if not isinstance(config, LocalSeldonDeploymentConfig):
            config = LocalSeldonDeploymentConfig.model_validate(config)
        if "endpoint" not in attrs:
            attrs["endpoint"] = LocalSeldonEndpoint(
                config=LocalDaemonServiceEndpointConfig(
                    protocol=ServiceEndpointProtocol.HTTP, ip_address=client_host(config.host)
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

    @property
    def metrics_url(self) -> str | None:
        """The Prometheus metrics URL of the running microservice."""
        if not self.status.metrics_port:
            return None
        return f"http://{client_host(self.config.host)}:{self.status.metrics_port}/metrics"

    @property
    def metrics_target(self) -> str | None:
        """``host:port`` of the metrics server, as Prometheus scrapes it."""
        if not self.status.metrics_port:
            return None
        return f"{client_host(self.config.host)}:{self.status.metrics_port}"

    def _pick_ports(self) -> None:
        """Choose the gRPC and metrics ports before the daemon starts.

        Chosen here, in the process that starts the service, so that they are
        stored with the service (``models describe``, the Prometheus targets
        file). gRPC comes from :data:`GRPC_PORTS` (11000-11999), metrics from
        :data:`METRICS_PORTS` (10000-10999): ranges that hold none of the
        platform's documented ports (:data:`RESERVED_PORTS`). A configured
        port is used when free; a restart keeps the previous ports when they
        are still free and not reserved.

        Raises:
            OSError: A whole range is taken.
        """
        host = client_host(self.config.host)
        taken = {self.endpoint.status.port} - {None}
        self.status.grpc_port = pick_port(
            GRPC_PORTS, host, (self.config.grpc_port, self.status.grpc_port), taken
        )
        taken.add(self.status.grpc_port)
        self.status.metrics_port = pick_port(
            METRICS_PORTS, host, (self.config.metrics_port, self.status.metrics_port), taken
        )

    def _get_daemon_cmd(self) -> tuple[list[str], dict[str, str]]:
        self._pick_ports()  # before the parent writes the service file the daemon reads
        command, env = super()._get_daemon_cmd()
        # The daemon imports this class by its module path: make the project importable.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        return command, env

    def provision(self) -> None:
        """Start the daemon and wait until it has written its PID file.

        ZenML's daemon entrypoint returns before the daemon writes its PID
        file; waiting here lets :meth:`check_status` tell "not started yet"
        from "started and died".

        Raises:
            ValueError: The server would listen beyond loopback without API keys.
        """
        self.config.check_exposure()
        super().provision()
        deadline = time.monotonic() + PID_FILE_WAIT
        while not self.status.pid and time.monotonic() < deadline:
            time.sleep(0.1)

    def check_status(self) -> tuple[ServiceState, str]:
        """ACTIVE while the daemon runs; ERROR when it died while meant to run.

        ZenML's default reports INACTIVE for a daemon that exited, so a start
        whose model fails to load would wait for the whole timeout.
        """
        if self.status.pid:
            return ServiceState.ACTIVE, ""
        if self.admin_state == ServiceState.ACTIVE and self.status.runtime_path:
            return (
                ServiceState.ERROR,
                f"the server exited; see its log: {self.status.log_file}",
            )
        return ServiceState.INACTIVE, "service daemon is not running"

    def _stop_daemon(self, force: bool = False) -> None:
        """Stop the daemon and every process of the microservice.

        Graceful (``force=False``): SIGTERM to the daemon, which passes it to
        the microservice's process group; gunicorn finishes the requests in
        flight. Whatever is left after the grace period is killed. ``force``
        kills everything at once.
        """
        stop_processes(
            self.status.pid,
            _read_pgid(self.status.pgid_file),
            force=force,
            config_file=self.status.config_file,
        )

    def run(self) -> None:
        """Run the seldon-core microservice as this daemon's child, until it exits.

        The microservice gets a process group of its own (recorded in the
        runtime folder) and watches this daemon: if the daemon dies, the whole
        group goes with it. SIGTERM to the daemon stops the group gracefully.
        """
        import subprocess

        self.endpoint.prepare_for_start()
        port = self.endpoint.status.port
        if not (self.status.grpc_port and self.status.metrics_port):  # started by older code
            self._pick_ports()
        env = {
            **os.environ,
            "CLEARSIGHT_MODEL_DIR": self.config.model_dir,
            "PYTHONPATH": os.pathsep.join(
                p for p in (SOURCE_ROOT, os.environ.get("PYTHONPATH")) if p
            ),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            HOST_ENV: self.config.host,
            PARENT_PID_ENV: str(os.getpid()),
            API_KEYS_ENV: "required" if self.config.api_keys else "off",
            **catalog_env(api_keys=self.config.api_keys),
        }
        argv = microservice_command(
            port, self.status.grpc_port, self.status.metrics_port, self.config.workers or 1
        )
        logger.info("Starting seldon-core microservice: %s", " ".join(argv))
        child = subprocess.Popen(
            argv, env=env, cwd=SOURCE_ROOT, process_group=0, preexec_fn=_die_with_parent
        )
        if self.status.pgid_file:
            Path(self.status.pgid_file).write_text(f"{child.pid}\n")

        def stop(signum: int, _frame: Any) -> None:
            stop_group(child.pid, grace=STOP_GRACE)
            with contextlib.suppress(ChildProcessError):
                child.wait(timeout=1)
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        code = child.wait()
        stop_group(child.pid, grace=5)  # the gRPC and metrics processes may outlive it
        sys.exit(code)


def catalog_env(api_keys: bool = False) -> dict[str, str]:
    """``CLEARSIGHT_CATALOG_URL`` for the microservice: its prediction log's and API keys' catalog.

    The absolute URL :func:`clearsight.catalog.resolve_catalog_url` gives in
    this process (the variable as the deploy step or CLI had it, else the
    project's SQLite catalog), so the server logs to the catalog the pipelines
    use, and reads the keys ``python -m clearsight.api_keys`` writes, whatever
    its working folder. A URL that cannot be resolved (relative) is reported
    here and left out: the server then answers as usual and counts its log
    entries as dropped (with keys required it answers 503 until fixed).
    """
    from clearsight.catalog import CATALOG_URL_ENV, display_url, resolve_catalog_url
    from clearsight.errors import CatalogError
    from clearsight.prediction_log import log_settings

    try:
        if not api_keys and not log_settings(True, 0)[0]:  # neither log nor keys need it
            return {}
        url = resolve_catalog_url()
    except (CatalogError, ValueError) as error:
        logger.error("The endpoint's prediction log cannot be set up: %s", error)
        return {}
    logger.info("Catalog of the prediction log and API keys: %s", display_url(url))
    return {CATALOG_URL_ENV: url}


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the daemon dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _read_pgid(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def group_members(pgid: int) -> list[Any]:
    """Live processes of a microservice's process group (checked by command line)."""
    import psutil

    members = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if os.getpgid(process.pid) != pgid:
                continue
        except OSError:
            continue
        if LAUNCHER in (process.info["cmdline"] or []) or _has_marker(process):
            members.append(process)
    return members


def _has_marker(process: Any) -> bool:
    """The process inherited the environment our daemon gives the microservice."""
    try:
        return PARENT_PID_ENV in process.environ()
    except Exception:  # noqa: BLE001 - gone or not ours: not a member
        return False


def stop_group(pgid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM a microservice's process group; SIGKILL what survives ``grace`` seconds."""
    import psutil

    members = group_members(pgid)
    if not members:
        return
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=grace)
    alive = [p for p in alive if p.is_running()] + [
        p for p in group_members(pgid) if p not in alive
    ]
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def daemons_of(config_file: str) -> list[Any]:
    """Daemon processes started with this service file (also one about to exit)."""
    import psutil

    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if "--config-file" in (process.info["cmdline"] or [])
        and config_file in (process.info["cmdline"] or [])
    ]


def stop_processes(
    pid: int | None, pgid: int | None, force: bool = False, config_file: str | None = None
) -> None:
    """Stop a server: its daemon (``pid``) and microservice group (``pgid``).

    Graceful unless ``force``: the daemon passes SIGTERM on to the group and
    waits for it; what survives ``STOP_GRACE`` (plus a margin) is killed.
    ``config_file`` also finds a daemon that already removed its PID file
    on its way out.
    """
    import psutil

    processes: list[Any] = []
    if pid:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            processes = [*root.children(recursive=True), root]
    if config_file:
        for daemon in daemons_of(config_file):
            if daemon not in processes:
                with contextlib.suppress(psutil.Error):
                    processes += [*daemon.children(recursive=True), daemon]
                pid = pid or daemon.pid
    if pgid:
        processes += [p for p in group_members(pgid) if p not in processes]
    if not processes:
        return
    if force:
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(processes, timeout=10)
        return
    targets = [p for p in processes if p.pid == pid] or processes
    for process in targets:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    if pgid and not pid:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=STOP_GRACE + 10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
