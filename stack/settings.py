"""Where the production stack's services are and how to log in to them.

Everything comes from environment variables, with defaults that match
``make services`` on this machine (and the ports of the docker-compose file):

===============================  ========================================
``CLEARSIGHT_S3_ENDPOINT``       ``http://127.0.0.1:9000``
``CLEARSIGHT_MLFLOW_URI``        ``http://127.0.0.1:5000``
``CLEARSIGHT_ZENML_URL``         ``http://127.0.0.1:8237``
``CLEARSIGHT_AIRFLOW_URL``       ``http://127.0.0.1:8080``
``CLEARSIGHT_ARTIFACT_BUCKET``   ``clearsight-artifacts``
``CLEARSIGHT_MLFLOW_BUCKET``     ``clearsight-mlflow``
``AWS_ACCESS_KEY_ID`` /          generated once into the credentials
``AWS_SECRET_ACCESS_KEY``        file (below) when not set
``CLEARSIGHT_MLFLOW_PASSWORD``   MLflow's accounts (the pipelines',
``..._ADMIN_PASSWORD``,          ``admin``'s, the review app's; see
``..._READER_PASSWORD``          :mod:`stack.mlflow_auth`): generated
                                 the same way
``CLEARSIGHT_ZENML_PASSWORD``    the local ZenML server's ``default``
                                 user's password: generated the same
                                 way (:mod:`stack.zenml_server`)
``CLEARSIGHT_ZENML_API_KEY``     the API key of the ZenML service
                                 account ``clearsight-airflow`` that
                                 Airflow's tasks use: issued by the
                                 server, in the credentials file only
``CLEARSIGHT_SERVICES_DIR``      ``.state/services`` (PIDs, logs,
                                 ``credentials.env``, MLflow's DB)
``CLEARSIGHT_AIRFLOW_HOME``      ``.state/airflow`` (DAGs in ``dags/``)
``CLEARSIGHT_AIRFLOW_VENV``      ``.venv-airflow``
``CLEARSIGHT_SELDON``            ``local``: the model deployer is our
                                 ``seldon_local``; ``kubernetes``:
                                 ZenML's ``seldon`` flavor
                                 (``seldon_k8s``) on a cluster
``CLEARSIGHT_K8S_CONTEXT``       kubeconfig context of the cluster
                                 (default: the current context)
``CLEARSIGHT_K8S_NAMESPACE``     ``seldon`` (where SeldonDeployments go)
``CLEARSIGHT_SELDON_BASE_URL``   the cluster's Seldon ingress URL
                                 (required with ``kubernetes``)
``CLEARSIGHT_SELDON_SECRET``     existing Kubernetes secret with the
                                 ``RCLONE_CONFIG_S3_*`` variables
                                 (default: ZenML makes one from the
                                 artifact store's credentials)
``CLEARSIGHT_AIRFLOW_OPERATOR``  ``bash`` (default: each step a
                                 BashOperator in the project's
                                 virtualenv, no image); ``docker`` or
                                 ``kubernetes_pod``: ZenML's own DAG
                                 generator and operator, which run the
                                 steps in an image ZenML builds
``CLEARSIGHT_CONTAINER_REGISTRY``  registry URI the built step image is
                                 pushed to (required with
                                 ``kubernetes_pod``)
``CLEARSIGHT_ALERTMANAGER_URL``  ``http://127.0.0.1:9093`` (Prometheus
                                 Alertmanager's default port; the
                                 pipelines' failure hook posts here)
``CLEARSIGHT_PUSHGATEWAY_URL``   ``http://127.0.0.1:9091`` (Pushgateway's
                                 default port; the monitor pushes here)
``CLEARSIGHT_ALERT_SMTP``        ``127.0.0.1:25``: the mail relay
                                 (``host:port``) Alertmanager sends
                                 through
``CLEARSIGHT_ALERT_EMAIL_TO``    who gets the alert e-mails (commas for
                                 several; unset: no e-mail, alerts stay
                                 in Alertmanager and the webhook)
``CLEARSIGHT_ALERT_EMAIL_FROM``  ``clearsight-alerts@localhost``
``CLEARSIGHT_ALERT_SMTP_USERNAME``  SMTP login (optional; with
``CLEARSIGHT_ALERT_SMTP_PASSWORD``  ``_PASSWORD``, read from the
                                 environment only)
``CLEARSIGHT_ALERT_SMTP_REQUIRE_TLS``  ``true``/``false``; default ``false``
                                 for a loopback relay, else ``true``
                                 (STARTTLS, Alertmanager's own default)
``CLEARSIGHT_ALERT_WEBHOOK_URL``  also POST every alert there as
                                 Alertmanager's webhook JSON (optional)
===============================  ========================================

Secrets never go into the repository: they are read from the environment or
from ``credentials.env`` (mode 0600) in the services folder (mode 0700), and
the stack registration copies them into ZenML secrets.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_OPERATORS = ("bash", "docker", "kubernetes_pod")
GENERATED = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "CLEARSIGHT_AIRFLOW_PASSWORD",
    "CLEARSIGHT_MLFLOW_PASSWORD",
    # MLflow's basic auth (stack/mlflow_auth.py): its admin, the review app's read-only
    # account, and the key MLflow signs its CSRF tokens with (MLflow's own variable).
    "CLEARSIGHT_MLFLOW_ADMIN_PASSWORD",
    "CLEARSIGHT_MLFLOW_READER_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    # The local ZenML server's `default` user (stack/zenml_server.py).
    "CLEARSIGHT_ZENML_PASSWORD",
)
#: The API key of the ZenML service account Airflow's tasks use: issued by the ZenML
#: server (``python -m stack.services start``), kept in ``credentials.env``, never generated here.
ZENML_API_KEY_VARIABLE = "CLEARSIGHT_ZENML_API_KEY"
#: Generated 40 hex characters long instead of 20.
LONG_SECRETS = ("AWS_SECRET_ACCESS_KEY", "MLFLOW_FLASK_SERVER_SECRET_KEY")


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    return values


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) and make it accessible to this user only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file that is mode 0600 from its first byte (also when it existed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _credentials(path: Path) -> dict[str, str]:
    """Credentials from the environment, else from the file (created on first use)."""
    stored = _read_env_file(path)
    missing = [k for k in GENERATED if k not in stored]
    if missing:
        for key in missing:
            stored[key] = secrets.token_hex(20 if key in LONG_SECRETS else 10)
        stored.setdefault("AWS_ACCESS_KEY_ID", "clearsight")
        private_dir(path.parent)
        write_private(
            path,
            "# Generated by Clearsight for the local services; keep private.\n"
            + "".join(f"{k}={v}\n" for k, v in stored.items()),
        )
    return {k: os.environ.get(k) or stored[k] for k in GENERATED}


def credentials_path() -> Path:
    """The path of ``credentials.env``; nothing is created.

    It lives in ``CLEARSIGHT_SERVICES_DIR``, else ``<CLEARSIGHT_STATE_DIR or .state>/services``.
    """
    env = os.environ.get
    state = Path(env("CLEARSIGHT_STATE_DIR") or PROJECT_ROOT / ".state")
    return Path(env("CLEARSIGHT_SERVICES_DIR") or state / "services").resolve() / "credentials.env"


def read_credential(name: str, path: Path | None = None) -> str | None:
    """One value of ``credentials.env`` (None when the file or the value is missing)."""
    return _read_env_file(path or credentials_path()).get(name) or None


def save_credential(name: str, value: str, path: Path | None = None) -> None:
    """Set one value of ``credentials.env``, keeping the others (file 0600, folder 0700)."""
    path = path or credentials_path()
    stored = _read_env_file(path)
    stored[name] = value
    private_dir(path.parent)
    write_private(
        path,
        "# Generated by Clearsight for the local services; keep private.\n"
        + "".join(f"{k}={v}\n" for k, v in stored.items()),
    )


@dataclass(frozen=True)
class ProductionSettings:
    """Endpoints, buckets, folders and credentials of the production stack."""

    s3_endpoint: str
    mlflow_uri: str
    zenml_url: str
    airflow_url: str
    artifact_bucket: str
    mlflow_bucket: str
    aws_access_key_id: str
    aws_secret_access_key: str
    region: str
    services_dir: Path
    credentials_file: Path
    airflow_home: Path
    airflow_venv: Path
    airflow_user: str
    airflow_password: str
    airflow_log_port: int
    mlflow_username: str
    mlflow_password: str
    # MLflow's admin and the review app's read-only account (stack/mlflow_auth.py).
    mlflow_admin_password: str = field(repr=False)
    mlflow_reader_password: str = field(repr=False)
    mlflow_secret_key: str = field(repr=False)
    seldon_mode: str = "local"
    k8s_context: str | None = None
    k8s_namespace: str = "seldon"
    seldon_base_url: str = ""
    seldon_secret: str | None = None
    airflow_operator: str = "bash"
    container_registry: str = ""
    alertmanager_url: str = "http://127.0.0.1:9093"
    pushgateway_url: str = "http://127.0.0.1:9091"
    alert_smtp: str = "127.0.0.1:25"
    alert_email_to: tuple[str, ...] = ()
    alert_email_from: str = "clearsight-alerts@localhost"
    alert_smtp_username: str = ""
    alert_smtp_password: str = field(default="", repr=False)
    alert_smtp_require_tls: bool = False
    alert_webhook_url: str = ""
    #: The local ZenML server's ``default`` user's password, and the API key of the
    #: service account ``clearsight-airflow`` that Airflow's tasks use (stack/zenml_server.py).
    zenml_password: str = field(default="", repr=False)
    zenml_api_key: str = field(default="", repr=False)

    @property
    def airflow_dags(self) -> Path:
        """The folder Airflow reads DAGs from and ZenML writes them to."""
        return self.airflow_home / "dags"

    def s3_environment(self) -> dict[str, str]:
        """What boto3, s3fs and MLflow's server need to reach the S3 endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
        }

    def boto3_kwargs(self) -> dict[str, str]:
        """Keyword arguments of ``boto3.client('s3', ...)``."""
        return {
            "endpoint_url": self.s3_endpoint,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": self.aws_secret_access_key,
            "region_name": self.region,
        }

    def airflow_environment(self) -> dict[str, str]:
        """Airflow's configuration for ``airflow standalone`` on loopback."""
        from urllib.parse import urlparse

        port = str(urlparse(self.airflow_url).port or 8080)
        return {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.airflow_dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": port,
            # Must match the API port, or every task fails with "Connection refused".
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.airflow_user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                self.airflow_home / "passwords.json"
            ),
            # Pick up the DAG files ZenML writes within seconds, not minutes.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.airflow_log_port),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.airflow_log_port + 1),
            "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "86400",
            # The steps (BashOperators inherit this environment) post their failure alerts here.
            "CLEARSIGHT_ALERTMANAGER_URL": self.alertmanager_url,
            "CLEARSIGHT_PUSHGATEWAY_URL": self.pushgateway_url,
            # The tasks (steps) authenticate to ZenML with the service account's API key,
            # never with a token written into the DAG (stack/airflow/dag_generator.py).
            **({"ZENML_STORE_API_KEY": self.zenml_api_key} if self.zenml_api_key else {}),
        }

    def mlflow_reader_environment(self) -> dict[str, str]:
        """MLflow's read-only login for a process (the review app, a shell), as MLflow reads it."""
        from stack.mlflow_auth import READER_USERNAME

        return {
            "MLFLOW_TRACKING_USERNAME": READER_USERNAME,
            "MLFLOW_TRACKING_PASSWORD": self.mlflow_reader_password,
        }

    def environment(self) -> dict[str, str]:
        """The variables a shell needs to use these services by hand (MLflow: read-only)."""
        return {
            "CLEARSIGHT_S3_ENDPOINT": self.s3_endpoint,
            "CLEARSIGHT_MLFLOW_URI": self.mlflow_uri,
            "CLEARSIGHT_ZENML_URL": self.zenml_url,
            "CLEARSIGHT_AIRFLOW_URL": self.airflow_url,
            "CLEARSIGHT_ALERTMANAGER_URL": self.alertmanager_url,
            "CLEARSIGHT_PUSHGATEWAY_URL": self.pushgateway_url,
            **self.s3_environment(),
            **self.mlflow_reader_environment(),
        }


def load_settings() -> ProductionSettings:
    """Read the settings from the environment (and the generated credentials)."""
    env = os.environ.get
    state = Path(env("CLEARSIGHT_STATE_DIR") or PROJECT_ROOT / ".state")
    credentials_file = credentials_path()
    services_dir = credentials_file.parent
    creds = _credentials(credentials_file)
    smtp = (env("CLEARSIGHT_ALERT_SMTP") or "127.0.0.1:25").strip()
    return ProductionSettings(
        s3_endpoint=env("CLEARSIGHT_S3_ENDPOINT") or "http://127.0.0.1:9000",
        mlflow_uri=env("CLEARSIGHT_MLFLOW_URI") or "http://127.0.0.1:5000",
        zenml_url=env("CLEARSIGHT_ZENML_URL") or "http://127.0.0.1:8237",
        airflow_url=env("CLEARSIGHT_AIRFLOW_URL") or "http://127.0.0.1:8080",
        artifact_bucket=env("CLEARSIGHT_ARTIFACT_BUCKET") or "clearsight-artifacts",
        mlflow_bucket=env("CLEARSIGHT_MLFLOW_BUCKET") or "clearsight-mlflow",
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        region=env("AWS_DEFAULT_REGION") or "us-east-1",
        services_dir=services_dir,
        credentials_file=credentials_file,
        airflow_home=Path(env("CLEARSIGHT_AIRFLOW_HOME") or state / "airflow").resolve(),
        airflow_venv=Path(env("CLEARSIGHT_AIRFLOW_VENV") or PROJECT_ROOT / ".venv-airflow"),
        airflow_user="admin",
        airflow_password=creds["CLEARSIGHT_AIRFLOW_PASSWORD"],
        airflow_log_port=int(env("CLEARSIGHT_AIRFLOW_LOG_PORT") or 8793),
        mlflow_username="clearsight",
        mlflow_password=creds["CLEARSIGHT_MLFLOW_PASSWORD"],
        mlflow_admin_password=creds["CLEARSIGHT_MLFLOW_ADMIN_PASSWORD"],
        mlflow_reader_password=creds["CLEARSIGHT_MLFLOW_READER_PASSWORD"],
        mlflow_secret_key=creds["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        seldon_mode=(env("CLEARSIGHT_SELDON") or "local").strip().lower(),
        k8s_context=env("CLEARSIGHT_K8S_CONTEXT") or None,
        k8s_namespace=env("CLEARSIGHT_K8S_NAMESPACE") or "seldon",
        seldon_base_url=env("CLEARSIGHT_SELDON_BASE_URL") or "",
        seldon_secret=env("CLEARSIGHT_SELDON_SECRET") or None,
        airflow_operator=(env("CLEARSIGHT_AIRFLOW_OPERATOR") or "bash").strip().lower(),
        container_registry=env("CLEARSIGHT_CONTAINER_REGISTRY") or "",
        alertmanager_url=env("CLEARSIGHT_ALERTMANAGER_URL") or "http://127.0.0.1:9093",
        pushgateway_url=env("CLEARSIGHT_PUSHGATEWAY_URL") or "http://127.0.0.1:9091",
        alert_smtp=smtp,
        alert_email_to=tuple(
            a.strip() for a in (env("CLEARSIGHT_ALERT_EMAIL_TO") or "").split(",") if a.strip()
        ),
        alert_email_from=env("CLEARSIGHT_ALERT_EMAIL_FROM") or "clearsight-alerts@localhost",
        alert_smtp_username=env("CLEARSIGHT_ALERT_SMTP_USERNAME") or "",
        alert_smtp_password=env("CLEARSIGHT_ALERT_SMTP_PASSWORD") or "",
        alert_smtp_require_tls=_flag(
            "CLEARSIGHT_ALERT_SMTP_REQUIRE_TLS", default=not _is_loopback(smtp)
        ),
        alert_webhook_url=env("CLEARSIGHT_ALERT_WEBHOOK_URL") or "",
        zenml_password=creds["CLEARSIGHT_ZENML_PASSWORD"],
        zenml_api_key=read_credential(ZENML_API_KEY_VARIABLE, credentials_file) or "",
    )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def _is_loopback(host_port: str) -> bool:
    host = host_port.rsplit(":", 1)[0] if ":" in host_port else host_port
    return host.strip() in LOOPBACK_HOSTS


def _flag(name: str, default: bool) -> bool:
    """A true/false environment variable (1/0, yes/no too).

    Raises:
        ValueError: The variable holds something else; the message names it.
    """
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: use true or false")
