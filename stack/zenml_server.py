"""The local ZenML server with a password, and the API key Airflow's tasks use.

ZenML 0.98's ``zenml login --local`` starts its server without authentication
(the local daemon forces ``NO_AUTH``): whoever reaches the port is the
``default`` user. ``python -m stack.services start zenml`` (``make services``,
``make dashboard``) starts the same server, ``uvicorn`` over the client's own
SQLite database as the daemon does, with ZenML's password authentication:

- the ``default`` user's password is ``CLEARSIGHT_ZENML_PASSWORD`` from
  ``credentials.env``. ``ZENML_DEFAULT_USER_PASSWORD`` only applies when a
  server activates a database for the first time, and here the client made
  the database first (``make setup``, with an empty password), so the password
  is set in the database before each start when it does not match (a database
  made by ``zenml login --local`` or by older code included);
- the client logs in with it; ZenML keeps the login in ``credentials.yaml`` in
  ``ZENML_CONFIG_PATH``, made 0600;
- Airflow's tasks authenticate as the service account ``clearsight-airflow``
  with its API key ``airflow``, kept in ``credentials.env`` as
  ``CLEARSIGHT_ZENML_API_KEY`` and given to Airflow as ``ZENML_STORE_API_KEY``;
  a stored key the server refuses (deactivated, deleted, rotated) is replaced
  by a new one. The DAG generator keeps every ZenML token out of the DAG files.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = "clearsight-airflow"
API_KEY_NAME = "airflow"
DEFAULT_USER = "default"
#: The server application ZenML's local daemon runs.
SERVER_APP = "zenml.zen_server.zen_server_api:app"
LOGIN_PATH = "/api/v1/login"
INFO_PATH = "/api/v1/info"
#: How the refusal of a ZenML credential reads in a step's log: ZenML's exception.
REFUSED_MARKERS = ("CredentialsNotValid",)


class ZenMLServerError(RuntimeError):
    """The ZenML server or its accounts are not as the stack needs them."""


def rotate_hint() -> str:
    """What to do when the server refuses the API key of Airflow's tasks."""
    return (
        "Fix: make services (it issues a new key for service account "
        f"{SERVICE_ACCOUNT} into credentials.env and restarts Airflow with it); "
        f"check the account: zenml service-account api-key {SERVICE_ACCOUNT} list"
    )


def _post_form(url: str, fields: dict[str, str], timeout: float = 10.0) -> int:
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310 - configured URL
    try:
        with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310
            return 200
    except urllib.error.HTTPError as error:
        return error.code


def server_info(url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The server's ``/api/v1/info`` (its auth scheme, ...); None when it does not answer."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + INFO_PATH, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def requires_login(url: str) -> bool | None:
    """Whether the server asks for credentials (None: it does not answer)."""
    info = server_info(url)
    if info is None:
        return None
    return info.get("auth_scheme") != "NO_AUTH"


def password_accepted(url: str, username: str, password: str) -> bool:
    """Whether the server lets ``username`` log in with ``password``."""
    fields = {"grant_type": "password", "username": username, "password": password}
    status = _post_form(url.rstrip("/") + LOGIN_PATH, fields)
    if status not in (200, 401, 403):
        raise ZenMLServerError(f"The ZenML server {url} answered a login with HTTP {status}")
    return status == 200


def api_key_accepted(url: str, key: str) -> bool:
    """Whether the server accepts ``key`` as a service account's API key."""
    if not key:
        return False
    fields = {"grant_type": "zenml-api-key", "password": key}
    status = _post_form(url.rstrip("/") + LOGIN_PATH, fields)
    if status not in (200, 401, 403):
        raise ZenMLServerError(f"The ZenML server {url} answered a key login with HTTP {status}")
    return status == 200


def local_database() -> tuple[str, str]:
    """The client's own SQLite database URL and local stores folder (``ZENML_CONFIG_PATH``)."""
    from zenml.config.global_config import GlobalConfiguration

    config = GlobalConfiguration()
    return str(config.get_default_store().url), str(config.local_stores_path)


def server_command(host: str, port: int, config_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The command and environment of the ZenML server over the client's database.

    What ZenML's local daemon sets, but for the authentication: the default,
    ``OAUTH2_PASSWORD_BEARER`` (user name and password, API keys, tokens).
    """
    database, local_stores = local_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_STORE_")}
    env.update(
        {
            "ZENML_SERVER": "true",
            "ZENML_SERVER_ALLOW_LOCAL_FILE_ACCESS": "true",  # the embedded stack's artifacts
            "ZENML_CONFIG_PATH": str(config_dir),  # the server's own, as the daemon's
            "ZENML_LOCAL_STORES_PATH": local_stores,
            "ZENML_STORE_URL": database,
            "ZENML_SERVER_AUTH_SCHEME": "OAUTH2_PASSWORD_BEARER",
            "ZENML_SERVER_AUTO_ACTIVATE": "true",
            "ZENML_ANALYTICS_OPT_IN": "false",
        }
    )
    argv = [
        str(Path(sys.executable).parent / "python"),
        "-m",
        "uvicorn",
        SERVER_APP,
        "--host",
        host,
        "--port",
        str(port),
        "--no-server-header",
        "--log-level",
        "warning",
    ]
    return argv, env


def ensure_default_password(password: str) -> str:
    """Give the ``default`` user of the client's database ``password``; idempotent.

    Returns:
        ``set`` or ``unchanged``.
    """
    from zenml.models import UserUpdate
    from zenml.models.v2.misc.user_auth import UserAuthModel
    from zenml.zen_stores.sql_zen_store import SqlZenStore, SqlZenStoreConfiguration

    database, _ = local_database()
    # Initialising creates (and migrates) the database and its default user, as the client does.
    store = SqlZenStore(config=SqlZenStoreConfiguration(url=database))
    user = store.get_auth_user(DEFAULT_USER)
    if user.password is not None and UserAuthModel.verify_password(password, user):
        return "unchanged"
    store.update_user(user.id, UserUpdate(password=password))
    return "set"


def login(url: str, username: str, password: str) -> str:
    """Connect the client to the server with ``username`` and ``password`` (kept 0600).

    Returns:
        ``logged in``, or ``unchanged`` when the client was connected so already.
    """
    from zenml.config.global_config import GlobalConfiguration
    from zenml.exceptions import CredentialsNotValid
    from zenml.login.credentials_store import get_credentials_store
    from zenml.zen_stores.rest_zen_store import RestZenStoreConfiguration

    url = url.rstrip("/")
    refused = ZenMLServerError(
        f"The ZenML server {url} refused user {username!r} with the password "
        "CLEARSIGHT_ZENML_PASSWORD of credentials.env. Changed elsewhere (the dashboard)? "
        "python -m stack.services stop zenml && make services sets it back"
    )
    if not password_accepted(url, username, password):
        raise refused
    config = GlobalConfiguration()
    current = str(getattr(config.store_configuration, "url", "") or "").rstrip("/")
    stored = get_credentials_store().get_password(url)
    if not config.uses_local_store and current == url and stored == (username, password):
        return "unchanged"
    previous = os.umask(0o077)
    try:
        config.set_store(RestZenStoreConfiguration(url=url, username=username, password=password))
    except CredentialsNotValid:
        raise refused from None
    finally:
        os.umask(previous)
    credentials = Path(config.config_directory) / "credentials.yaml"
    if credentials.exists():
        os.chmod(credentials, 0o600)
    return "logged in"


def logout(url: str) -> bool:
    """Point the client back at its own database if it is connected to ``url``."""
    from zenml.config.global_config import GlobalConfiguration

    config = GlobalConfiguration()
    current = str(getattr(config.store_configuration, "url", "") or "").rstrip("/")
    if config.uses_local_store or current != url.rstrip("/"):
        return False
    config.set_default_store()
    return True


def ensure_airflow_api_key(url: str, stored: str) -> tuple[str, str]:
    """The API key of service account ``clearsight-airflow``: ``stored`` if accepted, else new.

    The service account is created when missing. A stored key the server
    refuses (deactivated, deleted or rotated) is replaced: the key named
    ``airflow`` is deleted and made again, and its new value returned.

    Returns:
        The key and what was done: ``unchanged``, ``created`` or ``replaced``.

    Raises:
        ZenMLServerError: The service account is deactivated (an operator's
            decision, not undone here).
    """
    from zenml.client import Client

    client = Client()
    try:
        account = client.get_service_account(SERVICE_ACCOUNT, allow_name_prefix_match=False)
    except KeyError:
        account = client.create_service_account(
            name=SERVICE_ACCOUNT,
            description="Clearsight: Airflow's tasks (steps) of the production stack",
        )
    if not account.active:
        raise ZenMLServerError(
            f"The ZenML service account {SERVICE_ACCOUNT} is deactivated, so Airflow's tasks "
            f"cannot run steps. Reactivate it: zenml service-account update {SERVICE_ACCOUNT} "
            "--active true"
        )
    if stored and api_key_accepted(url, stored):
        return stored, "unchanged"
    existing = client.list_api_keys(SERVICE_ACCOUNT, name=API_KEY_NAME).items
    if existing:
        client.delete_api_key(SERVICE_ACCOUNT, API_KEY_NAME)
    key = client.create_api_key(
        SERVICE_ACCOUNT,
        name=API_KEY_NAME,
        description="Airflow's tasks (ZENML_STORE_API_KEY); issued by make services",
    ).key
    if not key:
        raise ZenMLServerError(f"ZenML returned no value for the new API key of {SERVICE_ACCOUNT}")
    return key, "replaced" if existing or stored else "created"


def refused_in_log(log: str) -> bool:
    """Whether a task's log shows ZenML refusing its credentials."""
    return any(marker in log for marker in REFUSED_MARKERS)
