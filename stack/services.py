"""Start, stop and check the servers the production stack needs, on loopback.

Usage::

    python -m stack.services start            # all of them, each health-checked
    python -m stack.services start s3 mlflow  # some of them
    python -m stack.services status
    python -m stack.services stop
    python -m stack.services env              # the environment the stack reads
    python -m stack.services alertmanager-config   # the rendered Alertmanager config

The servers are the real ones: moto's S3 server (no MinIO binary can be
installed here; docker-compose ships MinIO), ``mlflow server`` with a SQLite
backend and its artifacts proxied to a bucket on that S3 endpoint, behind
MLflow's own authentication (its accounts are created once it is healthy, see
:mod:`stack.mlflow_auth`), the ZenML
server (ZenML's server app over the client's own database, like ``zenml login
--local`` but asking for the ``default`` user's password; Airflow's tasks use
a service account's API key: :mod:`stack.zenml_server`), Airflow 3.3
(``airflow standalone`` from its own virtualenv), Prometheus' Alertmanager (the shipped
``stack/alertmanager/alertmanager.yml`` rendered with the alert settings:
SMTP relay, recipients, webhook) and the Pushgateway (the monitor pipeline
pushes its figures there; Prometheus scrapes them). Each writes its PID and log
under the state folder (``.state/services`` by default,
``CLEARSIGHT_SERVICES_DIR`` to move it).

Endpoints come from the same environment variables the production stack is
registered from (see :mod:`stack.settings`); the credentials are generated
once into ``credentials.env`` in the state folder (mode 0600, never in git).

Airflow keeps the DAGs ZenML writes and its database (the serialized DAGs and
rendered task fields hold the tasks' environment: no ZenML token, the DAG
generator leaves it out; the API key is in Airflow's own environment) under
``AIRFLOW_HOME``. So the services
folder and ``AIRFLOW_HOME`` are mode 0700, the servers run with umask 077 (every
file they create is 0600), and the password files are created 0600.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stack.settings import ProductionSettings, load_settings, private_dir, write_private

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
#: The shipped Alertmanager configuration, rendered by :func:`render_alertmanager_config`.
ALERTMANAGER_TEMPLATE = PROJECT_ROOT / "stack" / "alertmanager" / "alertmanager.yml"
#: Executable names: Debian's packages (prometheus-alertmanager, prometheus-pushgateway),
#: then the upstream release archives' names.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")
PUSHGATEWAY_BINARIES = ("prometheus-pushgateway", "pushgateway")


class ServiceError(RuntimeError):
    """A service could not be started or is not healthy."""


@dataclass(frozen=True)
class Service:
    """One server: how to start it, where it answers and how to tell it is healthy."""

    name: str
    description: str
    url: Callable[[ProductionSettings], str]
    health_path: str
    start_timeout: float
    healthy: Callable[[bytes], bool] = lambda _body: True


def _http_get(url: str, timeout: float = 3.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return response.read()


# What a probe of a port may raise besides a refused connection: a server that
# is not HTTP/1 (a gRPC server answers with an HTTP/2 frame: BadStatusLine).
PROBE_ERRORS = (OSError, urllib.error.URLError, ValueError, http.client.HTTPException)


def _answers(url: str, healthy: Callable[[bytes], bool]) -> bool:
    try:
        return healthy(_http_get(url))
    except PROBE_ERRORS:
        return False


AIRFLOW_PARTS = ("metadatabase", "scheduler", "dag_processor")


def airflow_unhealthy_parts(body: bytes) -> list[str]:
    """The parts of Airflow its health answer does not call healthy."""
    status = json.loads(body)
    return [p for p in AIRFLOW_PARTS if (status.get(p) or {}).get("status") != "healthy"]


def _airflow_healthy(body: bytes) -> bool:
    return not airflow_unhealthy_parts(body)


def airflow_health(airflow_url: str) -> list[str] | None:
    """None when Airflow's API server does not answer, else its parts that are not healthy."""
    try:
        return airflow_unhealthy_parts(
            _http_get(airflow_url.rstrip("/") + SERVICES["airflow"].health_path)
        )
    except (OSError, urllib.error.URLError):
        return None
    except (ValueError, http.client.HTTPException):
        return list(AIRFLOW_PARTS)  # it answered, but not with Airflow's health JSON


SERVICES: dict[str, Service] = {
    "s3": Service("s3", "S3 API (moto server)", lambda s: s.s3_endpoint, "/", 30),
    # MLflow's first start creates its database: ~40 s on a busy 2-core machine.
    "mlflow": Service("mlflow", "MLflow tracking server", lambda s: s.mlflow_uri, "/health", 180),
    "zenml": Service("zenml", "ZenML server", lambda s: s.zenml_url, "/health", 90),
    "airflow": Service(
        "airflow",
        "Airflow API server + UI",
        lambda s: s.airflow_url,
        "/api/v2/monitor/health",
        240,
        _airflow_healthy,
    ),
    "alertmanager": Service(
        "alertmanager", "Prometheus Alertmanager", lambda s: s.alertmanager_url, "/-/healthy", 30
    ),
    "pushgateway": Service(
        "pushgateway", "Prometheus Pushgateway", lambda s: s.pushgateway_url, "/-/healthy", 30
    ),
}
ORDER = ("s3", "mlflow", "zenml", "airflow", "alertmanager", "pushgateway")
#: Width of the name column in what start, stop and status print.
NAME_WIDTH = max(len(name) for name in ORDER)


def render_alertmanager_config(
    settings: ProductionSettings, template: Path = ALERTMANAGER_TEMPLATE
) -> str:
    """The shipped Alertmanager configuration with the alert settings filled in.

    Sets ``global.smtp_*`` from ``CLEARSIGHT_ALERT_SMTP``, ``..._EMAIL_FROM``,
    ``..._SMTP_REQUIRE_TLS``, ``..._SMTP_USERNAME`` / ``..._PASSWORD``; the
    receiver's e-mail ``to`` from ``CLEARSIGHT_ALERT_EMAIL_TO`` (no recipient:
    no ``email_configs``) and its webhook from ``CLEARSIGHT_ALERT_WEBHOOK_URL``
    (unset: no ``webhook_configs``). Every other line of the template (routes,
    grouping, the e-mail subject) is kept as shipped.

    Args:
        settings: The production settings (:func:`stack.settings.load_settings`).
        template: The configuration to start from.

    Returns:
        The YAML text to give Alertmanager's ``--config.file``; it can hold the
        SMTP password, so write it with :func:`stack.settings.write_private`.

    Raises:
        ValueError: The template has no receiver with ``email_configs`` and
            ``webhook_configs`` to fill in.
    """
    import yaml

    config = yaml.safe_load(template.read_text())
    smtp = config.setdefault("global", {})
    smtp["smtp_smarthost"] = settings.alert_smtp
    smtp["smtp_from"] = settings.alert_email_from
    smtp["smtp_require_tls"] = settings.alert_smtp_require_tls
    if settings.alert_smtp_username:
        smtp["smtp_auth_username"] = settings.alert_smtp_username
        smtp["smtp_auth_password"] = settings.alert_smtp_password
    receivers = [
        r for r in config.get("receivers", []) if "email_configs" in r and "webhook_configs" in r
    ]
    if not receivers:
        raise ValueError(f"{template}: no receiver with email_configs and webhook_configs")
    for receiver in receivers:
        if settings.alert_email_to:
            for email in receiver["email_configs"]:
                email["to"] = ", ".join(settings.alert_email_to)
        else:
            del receiver["email_configs"]
        if settings.alert_webhook_url:
            for webhook in receiver["webhook_configs"]:
                webhook["url"] = settings.alert_webhook_url
        else:
            del receiver["webhook_configs"]
    header = (
        f"# Rendered from {template} by python -m stack.services with the CLEARSIGHT_ALERT_*\n"
        "# settings (stack/settings.py). Edit those, not this file: it is rewritten on start.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, width=1000)


def _executable(names: tuple[str, ...], what: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise ServiceError(
        f"{what} is not installed (none of {', '.join(names)} is on PATH). Fix: make alerting "
        "(installs Debian's prometheus-alertmanager and prometheus-pushgateway)"
    )


def _port(url: str) -> int:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port_holder(port: int) -> str:
    """Who listens on a local TCP port, for messages ("" when it cannot be told)."""
    try:
        import psutil

        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                if not connection.pid:
                    return ""
                process = psutil.Process(connection.pid)
                command = " ".join(process.cmdline()) or process.name()
                if "stack.seldon.launch" in command or "seldon-core-microservice" in command:
                    return f"a Clearsight prediction endpoint (pid {process.pid})"
                return f"pid {process.pid}: {command[:120]}"
    except Exception:  # noqa: BLE001 - best effort: no permission, process gone
        return ""
    return ""


def port_taken_message(port: int, description: str) -> str:
    """The error for a service whose port another program holds: who, and the fix."""
    holder = port_holder(port)
    fix = "Stop it, or choose another port: see python -m stack.services env"
    if holder.startswith("a Clearsight prediction endpoint"):
        fix = (
            "Endpoints started by older code took this port for gRPC: stop them with "
            "make serve-stop (the next deploy picks ports that avoid it), then run "
            "make services again"
        )
    return (
        f"Port {port} for the {description} is taken by another program"
        + (f" ({holder})" if holder else "")
        + f". {fix}"
    )


class Services:
    """Manage the local servers of the production stack."""

    def __init__(self, settings: ProductionSettings | None = None) -> None:
        """Read the settings (environment variables, generated credentials)."""
        self.settings = settings or load_settings()
        self.state = private_dir(self.settings.services_dir)

    # -- bookkeeping -------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.state / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        """Where a service's output goes."""
        return self.state / f"{name}.log"

    def _pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def health_url(self, name: str) -> str:
        """The URL whose answer tells the service is healthy."""
        service = SERVICES[name]
        return service.url(self.settings).rstrip("/") + service.health_path

    def is_healthy(self, name: str) -> bool:
        """Whether the service answers its health check now."""
        return _answers(self.health_url(name), SERVICES[name].healthy)

    # -- start -------------------------------------------------------------
    def start(self, names: list[str]) -> None:
        """Start the services that are not running and wait until each is healthy."""
        for name in names:
            service = SERVICES[name]
            url = service.url(self.settings)
            self._before_start(name)
            if self.is_healthy(name):
                if name == "alertmanager":
                    self._reload_alertmanager()
                if name == "mlflow":
                    self.mlflow_accounts()
                if name == "zenml":
                    self._zenml_login()
                print(f"  {name:{NAME_WIDTH}} already running   {url}")
                continue
            started = time.perf_counter()
            if name == "zenml":
                self._start_zenml()
            else:
                port = _port(url)
                if _port_taken(port) and self._pid(name) is None:
                    raise ServiceError(port_taken_message(port, service.description))
                if self._pid(name) is None:
                    self._spawn(name, *self._command(name))
            self._wait_healthy(name)
            if name == "s3":
                self._create_buckets()
            if name == "mlflow":
                self.mlflow_accounts()
            if name == "zenml":
                self._zenml_login()
            print(f"  {name:{NAME_WIDTH}} started in {time.perf_counter() - started:4.1f} s  {url}")

    def _command(self, name: str) -> tuple[list[str], dict[str, str]]:
        s = self.settings
        env = dict(os.environ)
        if name == "s3":
            return [
                str(VENV_BIN / "moto_server"),
                "-H",
                "127.0.0.1",
                "-p",
                str(_port(s.s3_endpoint)),
            ], env
        if name == "mlflow":
            mlflow_dir = private_dir(self.state / "mlflow")
            env.update(s.s3_environment())
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self._write_mlflow_auth_config())
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = s.mlflow_secret_key
            for variable in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
                env.pop(variable, None)  # they would win over the config file
            return [
                str(VENV_BIN / "mlflow"),
                "server",
                # MLflow's own authentication: users, passwords and permissions
                # (stack/mlflow_auth.py); only /health answers without a login.
                "--app-name",
                "basic-auth",
                "--host",
                "127.0.0.1",
                "--port",
                str(_port(s.mlflow_uri)),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{mlflow_dir / 'mlflow.db'}",
                "--artifacts-destination",
                f"s3://{s.mlflow_bucket}",
            ], env
        if name == "airflow":
            airflow = s.airflow_venv / "bin" / "airflow"
            if not airflow.exists():
                raise ServiceError(
                    f"Airflow is not installed in {s.airflow_venv}. Fix: make airflow-venv"
                )
            env.update(s.airflow_environment())
            # `airflow standalone` starts its components as `airflow ...` from PATH.
            env["PATH"] = f"{airflow.parent}{os.pathsep}{env.get('PATH', '')}"
            # airflow.db and the task logs carry the tasks' environment; Airflow's own
            # environment carries the ZenML service account's API key.
            private_dir(s.airflow_home)
            private_dir(s.airflow_dags)
            _tighten(s.airflow_home)
            write_private(
                s.airflow_home / "passwords.json",
                json.dumps({s.airflow_user: s.airflow_password}),
            )
            write_private(self._airflow_key_stamp(), _fingerprint(s.zenml_api_key))
            return [str(airflow), "standalone"], env
        if name == "alertmanager":
            binary = _executable(ALERTMANAGER_BINARIES, "Prometheus Alertmanager")
            folder = private_dir(self.state / "alertmanager")
            config = self._write_alertmanager_config()
            return [
                binary,
                f"--config.file={config}",
                f"--storage.path={private_dir(folder / 'data')}",
                f"--web.listen-address=127.0.0.1:{_port(s.alertmanager_url)}",
                f"--web.external-url={s.alertmanager_url}",
                # One Alertmanager, no cluster: no gossip port (it would take 9094).
                "--cluster.listen-address=",
            ], env
        if name == "pushgateway":
            binary = _executable(PUSHGATEWAY_BINARIES, "Prometheus Pushgateway")
            folder = private_dir(self.state / "pushgateway")
            return [
                binary,
                f"--web.listen-address=127.0.0.1:{_port(s.pushgateway_url)}",
                # The monitor's last pushed figures (and its last-run time, which the
                # "no monitor run for too long" rule reads) survive a restart.
                f"--persistence.file={folder / 'metrics.store'}",
                "--persistence.interval=1m",
            ], env
        raise ValueError(name)

    def mlflow_auth_config_file(self) -> Path:
        """MLflow's basic-auth config (mode 0600: it holds the admin's first password)."""
        return self.state / "mlflow" / "basic_auth.ini"

    def _write_mlflow_auth_config(self) -> Path:
        from stack.mlflow_auth import ADMIN_USERNAME, Account, render_auth_config

        path = self.mlflow_auth_config_file()
        private_dir(path.parent)
        users = f"sqlite:///{path.parent / 'basic_auth.db'}"
        admin = Account(ADMIN_USERNAME, self.settings.mlflow_admin_password)
        write_private(path, render_auth_config(users, admin))
        return path

    def mlflow_accounts(self) -> dict[str, str]:
        """Create or check MLflow's writer and read-only accounts (see :mod:`stack.mlflow_auth`).

        Raises:
            ServiceError: MLflow runs without authentication or refuses a password.
        """
        from stack.mlflow_auth import (
            ADMIN_USERNAME,
            PASSWORD_SETTINGS,
            READER_USERNAME,
            Account,
            MlflowAuthError,
            ensure_accounts,
        )

        s = self.settings
        where = f" in {s.credentials_file} or the environment"
        try:
            return ensure_accounts(
                s.mlflow_uri,
                Account(
                    ADMIN_USERNAME, s.mlflow_admin_password, PASSWORD_SETTINGS["admin"] + where
                ),
                Account(s.mlflow_username, s.mlflow_password, PASSWORD_SETTINGS["writer"] + where),
                Account(
                    READER_USERNAME, s.mlflow_reader_password, PASSWORD_SETTINGS["reader"] + where
                ),
            )
        except MlflowAuthError as error:
            raise ServiceError(str(error)) from None

    def alertmanager_config_file(self) -> Path:
        """Where the rendered Alertmanager configuration is written (mode 0600)."""
        return self.state / "alertmanager" / "alertmanager.yml"

    def _write_alertmanager_config(self) -> Path:
        path = self.alertmanager_config_file()
        private_dir(path.parent)
        write_private(path, render_alertmanager_config(self.settings, ALERTMANAGER_TEMPLATE))
        return path

    def _reload_alertmanager(self) -> None:
        """Apply changed alert settings to our running Alertmanager (``POST /-/reload``)."""
        if self._pid("alertmanager") is None:
            return  # not ours: leave its configuration alone
        self._write_alertmanager_config()
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.settings.alertmanager_url.rstrip("/") + "/-/reload", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=5):  # noqa: S310
                pass
        except urllib.error.HTTPError as error:
            raise ServiceError(
                f"Alertmanager refused the re-rendered {self.alertmanager_config_file()}: "
                f"{error.read().decode(errors='replace')[:500]}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise ServiceError(
                f"Alertmanager at {self.settings.alertmanager_url} did not take the reload: "
                f"{error}. Restart it: python -m stack.services stop alertmanager, then start"
            ) from None

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        fd = os.open(self.log_file(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        log = os.fdopen(fd, "ab")
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.state,
            start_new_session=True,
            umask=0o077,  # what the servers write (airflow.db, logs, MLflow's DB) stays private
        )
        log.close()  # the child has its own copy
        write_private(self._pid_file(name), str(process.pid))

    # -- the ZenML server and the API key of Airflow's tasks (stack/zenml_server.py) --------
    def _before_start(self, name: str) -> None:
        """What a service needs first, whether it runs already or not."""
        if name == "zenml":
            self._replace_open_zenml_server()
        elif name == "airflow":
            self._ensure_airflow_api_key()

    def _replace_open_zenml_server(self) -> None:
        """Stop a ``zenml login --local`` server (no password) on our port, made by older code."""
        from stack.zenml_server import requires_login

        url = self.settings.zenml_url
        if requires_login(url) is not False:
            return  # down, or asks for a login
        if self._pid("zenml") is None:
            subprocess.run(  # noqa: S603 - fixed argv
                [str(VENV_BIN / "zenml"), "logout", "--local"], capture_output=True, check=False
            )
        if requires_login(url) is False:
            raise ServiceError(
                f"The ZenML server at {url} lets anyone in without a password (started by "
                "zenml login --local from another ZenML config?). Stop it, or choose another "
                "port with CLEARSIGHT_ZENML_URL"
            )
        print(f"  {'zenml':{NAME_WIDTH}} stopped the local server without a password")

    def _start_zenml(self) -> None:
        """Start the ZenML server over the client's database, its default user's password set."""
        from stack.zenml_server import ensure_default_password, server_command

        port = _port(self.settings.zenml_url)
        if self._pid("zenml") is not None:
            return
        if _port_taken(port):
            raise ServiceError(port_taken_message(port, SERVICES["zenml"].description))
        outcome = ensure_default_password(self.settings.zenml_password)
        if outcome != "unchanged":
            print(f"  {'zenml':{NAME_WIDTH}} password of user default {outcome} (credentials.env)")
        self._spawn("zenml", *server_command("127.0.0.1", port, private_dir(self.state / "zenml")))

    def _zenml_login(self) -> None:
        """Log the client in to our ZenML server as ``default`` (a server not ours: left alone)."""
        from stack.zenml_server import DEFAULT_USER, ZenMLServerError, login

        if self._pid("zenml") is None:
            return
        try:
            login(self.settings.zenml_url, DEFAULT_USER, self.settings.zenml_password)
        except ZenMLServerError as error:
            raise ServiceError(str(error)) from None

    def _airflow_key_stamp(self) -> Path:
        """Which API key (a digest) the running Airflow was given."""
        return self.state / "airflow.zenml-key"

    def _ensure_airflow_api_key(self) -> None:
        """The service account's API key in credentials.env; Airflow restarted on a new one.

        Raises:
            ServiceError: The ZenML server does not answer, or refuses what is needed.
        """
        from dataclasses import replace

        from stack import zenml_server
        from stack.settings import ZENML_API_KEY_VARIABLE, save_credential

        s = self.settings
        asks = zenml_server.requires_login(s.zenml_url)
        if asks is None:
            raise ServiceError(
                f"Airflow's tasks run their steps against the ZenML server {s.zenml_url}, which "
                "does not answer. Start it first: python -m stack.services start zenml"
            )
        if not asks:
            return  # a server without authentication needs no key
        try:
            key, outcome = zenml_server.ensure_airflow_api_key(s.zenml_url, s.zenml_api_key)
        except (zenml_server.ZenMLServerError, KeyError, RuntimeError) as error:
            raise ServiceError(f"The API key of Airflow's tasks: {error}") from None
        if key != s.zenml_api_key:
            save_credential(ZENML_API_KEY_VARIABLE, key, s.credentials_file)
            self.settings = replace(s, zenml_api_key=key)
        if outcome != "unchanged":
            print(
                f"  {'zenml':{NAME_WIDTH}} API key of service account "
                f"{zenml_server.SERVICE_ACCOUNT} {outcome} ({s.credentials_file})"
            )
        pid = self._pid("airflow")
        stamp = self._airflow_key_stamp()
        started_with = stamp.read_text().strip() if stamp.exists() else None
        if pid is not None and started_with != _fingerprint(key):
            print(f"  {'airflow':{NAME_WIDTH}} restarting: its tasks get the new ZenML API key")
            _terminate_group(pid)
            self._pid_file("airflow").unlink(missing_ok=True)

    def _stop_zenml(self) -> bool:
        """Stop our ZenML server (or an older password-less one); the client back on its database.

        The stack that was active stays active (if the database has it). A
        server that is not ours is left running. Returns whether one was stopped.
        """
        from stack.zenml_server import logout, requires_login

        pid = self._pid("zenml")
        url = self.settings.zenml_url
        if pid is None and requires_login(url) is not False:
            self._pid_file("zenml").unlink(missing_ok=True)
            return False
        python = str(VENV_BIN / "python")
        active = (
            subprocess.run(  # noqa: S603
                [
                    python,
                    "-c",
                    "from zenml.client import Client; print(Client().active_stack_model.name)",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            .stdout.strip()
            .splitlines()
        )
        if pid is not None:
            _terminate_group(pid)
            self._pid_file("zenml").unlink(missing_ok=True)
            logout(url)
        else:  # a `zenml login --local` server made by older code
            subprocess.run(  # noqa: S603
                [str(VENV_BIN / "zenml"), "logout", "--local"], capture_output=True, check=False
            )
        if active:
            subprocess.run(  # noqa: S603
                [str(VENV_BIN / "zenml"), "stack", "set", active[-1]],
                capture_output=True,
                check=False,
            )
        return True

    def _wait_healthy(self, name: str) -> None:
        service = SERVICES[name]
        deadline = time.monotonic() + service.start_timeout
        while time.monotonic() < deadline:
            if self.is_healthy(name):
                return
            if self._pid(name) is None:
                break
            time.sleep(1)
        tail = ""
        if self.log_file(name).exists():
            tail = self.log_file(name).read_text(errors="replace")[-3000:]
        raise ServiceError(
            f"The {service.description} did not become healthy at {self.health_url(name)} "
            f"within {service.start_timeout:.0f} s. Its log ({self.log_file(name)}) ends:\n"
            f"{tail}"
        )

    def _create_buckets(self) -> None:
        import boto3

        s3 = boto3.client("s3", **self.settings.boto3_kwargs())
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in (self.settings.artifact_bucket, self.settings.mlflow_bucket):
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)

    # -- stop --------------------------------------------------------------
    def stop(self, names: list[str]) -> None:
        """Stop the services (their whole process groups); a stopped one is skipped."""
        for name in reversed(names):
            if name == "zenml":
                if self._stop_zenml():
                    print(f"  {name:{NAME_WIDTH}} stopped")
                continue
            pid = self._pid(name)
            if pid is None:
                self._pid_file(name).unlink(missing_ok=True)
                continue
            _terminate_group(pid)
            self._pid_file(name).unlink(missing_ok=True)
            print(f"  {name:{NAME_WIDTH}} stopped")

    def status(self) -> dict[str, bool]:
        """Health of every service."""
        return {name: self.is_healthy(name) for name in ORDER}


def _tighten(folder: Path) -> None:
    """Take group and other access off the files directly in ``folder``.

    For a home made before the servers ran with umask 077 (``airflow.db`` was
    0644); the folder itself is 0700 already.
    """
    for path in folder.iterdir():
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o077:
                os.chmod(path, path.stat().st_mode & 0o700)


def _fingerprint(secret: str) -> str:
    """A short digest of a secret, to tell whether it changed without storing it again."""
    import hashlib

    return hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else ""


def _terminate_group(pid: int, grace: float = 20.0) -> None:
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        # A server started by this process (tests) stays a zombie in its group until reaped.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def _names(values: list[str]) -> list[str]:
    unknown = sorted(set(values) - set(ORDER))
    if unknown:
        raise SystemExit(f"Unknown service(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    return [name for name in ORDER if name in values] if values else list(ORDER)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m stack.services",
        description="The real servers of the production stack, on loopback.",
        epilog=(
            "Examples:\n  python -m stack.services start\n"
            "  python -m stack.services start s3 mlflow\n"
            "  python -m stack.services status\n  python -m stack.services stop"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("start", "stop", "status", "env", "alertmanager-config"))
    parser.add_argument("names", nargs="*", help=f"some of: {' '.join(ORDER)} (default: all)")
    args = parser.parse_args(argv)
    services = Services()
    names = _names(args.names)
    try:
        if args.action == "start":
            services.start(names)
            _print_urls(services)
        elif args.action == "stop":
            services.stop(names)
        elif args.action == "status":
            for name, healthy in services.status().items():
                state = "healthy" if healthy else "down"
                url = SERVICES[name].url(services.settings)
                print(f"  {name:{NAME_WIDTH}} {state:8} {url}")
            return 0 if all(services.status()[n] for n in names) else 1
        elif args.action == "alertmanager-config":
            print(render_alertmanager_config(services.settings), end="")
        else:
            for key, value in services.settings.environment().items():
                print(f"export {key}={shlex.quote(value)}")
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _print_urls(services: Services) -> None:
    s = services.settings
    print(
        "\nAirflow UI      "
        f"{s.airflow_url}  (user {s.airflow_user}, password in {s.credentials_file})\n"
        f"MLflow UI       {s.mlflow_uri}  (user clearsight-reader or admin, passwords "
        f"CLEARSIGHT_MLFLOW_READER_PASSWORD / _ADMIN_PASSWORD in {s.credentials_file})\n"
        f"ZenML dashboard {s.zenml_url}  (user default, password in {s.credentials_file})\n"
        f"S3 endpoint     {s.s3_endpoint}  buckets {s.artifact_bucket}, {s.mlflow_bucket}\n"
        f"Alertmanager    {s.alertmanager_url}  e-mail: "
        + (
            f"{', '.join(s.alert_email_to)} via {s.alert_smtp}"
            if s.alert_email_to
            else "none (set CLEARSIGHT_ALERT_EMAIL_TO and CLEARSIGHT_ALERT_SMTP)"
        )
        + f", webhook: {s.alert_webhook_url or 'none (CLEARSIGHT_ALERT_WEBHOOK_URL)'}\n"
        f"Pushgateway     {s.pushgateway_url}\n"
        "Next: python -m stack.register production   (make services runs it)\n"
        "      zenml stack set production && python run.py"
    )


if __name__ == "__main__":
    raise SystemExit(main())
