"""MLflow's own authentication (``mlflow server --app-name basic-auth``) and its three accounts.

=====================  ===================================================================
``admin``              MLflow creates it from the auth config the first time its users
                       database is created; manages users and permissions.
``clearsight``         the pipelines (the ZenML experiment tracker and model registry,
                       credentials in the ZenML secret ``clearsight_mlflow``): ``EDIT`` on
                       every experiment and registered model, so it logs runs, registers
                       versions and moves the ``champion`` alias.
``clearsight-reader``  the review app: reads everything (``default_permission = READ``),
                       changes nothing it did not create (moving an alias: 403).
=====================  ===================================================================

Every request without a valid login gets 401; only ``/health`` and the static
files are open. With workspaces off (MLflow's default) any signed-in account
may create experiments and registered models of its own, and MLflow makes it
their manager: the read-only account is read-only on everything else.

Usage::

    python -m stack.mlflow_auth config PATH     # write the auth config (from the environment)
    python -m stack.mlflow_auth accounts        # create / check the accounts (waits for MLflow)
    python -m stack.mlflow_auth rotate reader   # new password for an account (admin, writer,
                                                # reader), written into credentials.env
    python -m stack.mlflow_auth ui-env          # the read-only login as shell exports
                                                # (make ui evaluates it)

``config`` and ``accounts`` need only the standard library, so the MLflow image
(``stack/docker/mlflow.Dockerfile``) runs this file as it is, for docker-compose
and Kubernetes; they read ``CLEARSIGHT_MLFLOW_URI``, ``MLFLOW_AUTH_DATABASE_URI``,
``MLFLOW_AUTH_ADMIN_USERNAME`` / ``MLFLOW_AUTH_ADMIN_PASSWORD`` (MLflow's own
variables), ``CLEARSIGHT_MLFLOW_PASSWORD`` (the pipelines') and
``CLEARSIGHT_MLFLOW_READER_PASSWORD``. ``make services`` does the same through
:mod:`stack.services` with the passwords of ``credentials.env``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

ADMIN_USERNAME = "admin"
WRITER_USERNAME = "clearsight"
READER_USERNAME = "clearsight-reader"
#: What every signed-in account may do where it has no grant of its own.
DEFAULT_PERMISSION = "READ"
#: The pipelines' grants: every experiment and registered model, present and future.
WRITER_GRANTS = (("experiment", "*", "EDIT"), ("registered_model", "*", "EDIT"))
#: Seconds a checked login is cached by a server worker: MLflow hashes the password
#: (PBKDF2) on every request otherwise, about 0.5 s each here. A password changed
#: through the API takes effect at once on the worker that changed it, on the others
#: within this time.
AUTH_CACHE_TTL_SECONDS = 60
AUTHORIZATION_FUNCTION = "mlflow.server.auth:authenticate_request_basic_auth"
#: The settings (environment variables, keys of credentials.env) holding each password.
PASSWORD_SETTINGS = {
    "admin": "CLEARSIGHT_MLFLOW_ADMIN_PASSWORD",
    "writer": "CLEARSIGHT_MLFLOW_PASSWORD",
    "reader": "CLEARSIGHT_MLFLOW_READER_PASSWORD",
}
USERS = "/api/2.0/mlflow/users"
GRANTS = "/api/3.0/mlflow/users/permissions"


class MlflowAuthError(RuntimeError):
    """The accounts cannot be set up or checked; the message says why and what to do."""


@dataclass(frozen=True)
class Account:
    """An MLflow login and the setting its password comes from (named in errors)."""

    username: str
    password: str = field(repr=False)
    setting: str = ""


def render_auth_config(
    database_uri: str,
    admin: Account | None = None,
    cache_ttl_seconds: int = AUTH_CACHE_TTL_SECONDS,
) -> str:
    """The ini file ``MLFLOW_AUTH_CONFIG_PATH`` names (write it mode 0600: it may hold passwords).

    Args:
        database_uri: Where MLflow keeps the users and permissions (SQLAlchemy URI).
        admin: The admin account; without it, ``admin`` and no password: MLflow then
            reads ``MLFLOW_AUTH_ADMIN_PASSWORD`` from its environment (that variable and
            ``MLFLOW_AUTH_ADMIN_USERNAME`` win over the file). Either way the password
            is used only when the users database is created.
        cache_ttl_seconds: ``auth_cache_ttl_seconds`` (0: hash every request's password).

    Raises:
        ValueError: A value spans lines.
    """
    values = {
        "default_permission": DEFAULT_PERMISSION,
        "database_uri": database_uri,
        "authorization_function": AUTHORIZATION_FUNCTION,
        "grant_default_workspace_access": "false",
        "auth_cache_ttl_seconds": str(cache_ttl_seconds),
    }
    values["admin_username"] = admin.username if admin else ADMIN_USERNAME
    if admin is not None:
        values["admin_password"] = admin.password
    lines = [
        "# MLflow basic-auth config written by stack/mlflow_auth.py; keep private.",
        "[mlflow]",
    ]
    for key, value in values.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"{key} of the MLflow auth config spans lines")
        # configparser interpolates %(name)s: a literal % (URL-encoded passwords) is %%.
        lines.append(f"{key} = {value.replace('%', '%%')}")
    return "\n".join(lines) + "\n"


def _call(
    uri: str,
    method: str,
    path: str,
    account: Account | None,
    body: dict | None = None,
    params: dict | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict]:
    """One REST call; the HTTP status and the JSON answer (``{}`` when there is none)."""
    url = uri.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    request = urllib.request.Request(url, method=method)  # noqa: S310 - the configured server
    if account is not None:
        token = base64.b64encode(f"{account.username}:{account.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=timeout) as response:  # noqa: S310
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise MlflowAuthError(f"The MLflow server {uri} cannot be reached: {error}") from None
    try:
        answer = json.loads(text) if text else {}
    except ValueError:
        answer = {"message": text.decode(errors="replace")[:300]}
    return status, answer if isinstance(answer, dict) else {}


def can_log_in(uri: str, account: Account) -> bool:
    """Whether MLflow accepts the account's password."""
    status, answer = _call(uri, "GET", f"{USERS}/current", account)
    if status in (200, 401):
        return status == 200
    raise MlflowAuthError(f"MLflow at {uri} answered {status} to a login check: {answer}")


def _refused(uri: str, account: Account, admin: bool = False) -> MlflowAuthError:
    where = f" ({account.setting})" if account.setting else ""
    fix = "" if admin else ", or give the account a new one: python -m stack.mlflow_auth rotate"
    return MlflowAuthError(
        f"MLflow at {uri} refuses the password of '{account.username}'{where}: it is not the "
        "one in MLflow's users database (stored when the account was created, changed only "
        "by MLflow's update_user_password; the admin's is taken from the auth config only "
        f"when that database is created). Put the current password into that setting{fix}"
    )


def ensure_accounts(uri: str, admin: Account, writer: Account, reader: Account) -> dict[str, str]:
    """Create the writer and the reader if missing, grant the writer's permissions, check logins.

    Safe to run any number of times. Passwords are never changed here: an
    account whose password differs from the configured one is an error.

    Returns:
        What was done per username: ``created`` or ``unchanged`` (``granted ...`` appended).

    Raises:
        MlflowAuthError: The server runs without authentication, refuses a password,
            or refuses a change.
    """
    status, _ = _call(
        uri, "GET", "/api/2.0/mlflow/experiments/search", None, params={"max_results": 1}
    )
    if status != 401:
        raise MlflowAuthError(
            f"MLflow at {uri} answers a request without credentials with {status}, not 401: it "
            "runs without authentication (started by an older Clearsight, or by hand). Restart it "
            "with --app-name basic-auth: python -m stack.services stop mlflow; make services"
        )
    if not can_log_in(uri, admin):
        raise _refused(uri, admin, admin=True)
    done: dict[str, str] = {}
    for account in (writer, reader):
        status, answer = _call(
            uri, "GET", f"{USERS}/get", admin, params={"username": account.username}
        )
        if status == 404:
            status, answer = _call(
                uri,
                "POST",
                f"{USERS}/create",
                admin,
                {"username": account.username, "password": account.password},
            )
            if status != 200:
                raise MlflowAuthError(
                    f"MLflow refused to create '{account.username}' ({status}): "
                    f"{answer.get('message', answer)}"
                )
            done[account.username] = "created"
        elif status == 200:
            if not can_log_in(uri, account):
                raise _refused(uri, account)
            done[account.username] = "unchanged"
        else:
            raise MlflowAuthError(
                f"MLflow answered {status} for user '{account.username}': {answer}"
            )
    granted = _ensure_grants(uri, admin, writer.username, WRITER_GRANTS)
    if granted:
        done[writer.username] += ", granted " + ", ".join(granted)
    return done


def _ensure_grants(
    uri: str, admin: Account, username: str, wanted: tuple[tuple[str, str, str], ...]
) -> list[str]:
    status, answer = _call(uri, "GET", f"{GRANTS}/list", admin, params={"username": username})
    if status != 200:
        raise MlflowAuthError(
            f"MLflow answered {status} listing the grants of '{username}': {answer}"
        )
    held = {
        (p["resource_type"], p["resource_pattern"]): p["permission"]
        for p in answer.get("permissions", [])
    }
    granted = []
    for resource_type, pattern, permission in wanted:
        current = held.get((resource_type, pattern))
        if current == permission:
            continue
        key = {"username": username, "resource_type": resource_type, "resource_id": pattern}
        if current is not None:
            _call(uri, "POST", f"{GRANTS}/revoke", admin, key)
        status, answer = _call(
            uri, "POST", f"{GRANTS}/grant", admin, {**key, "permission": permission}
        )
        if status != 200:
            raise MlflowAuthError(
                f"MLflow refused to grant {permission} on {resource_type} {pattern} to "
                f"'{username}' ({status}): {answer.get('message', answer)}"
            )
        granted.append(f"{permission} on {resource_type} {pattern}")
    return granted


def update_password(uri: str, admin: Account, username: str, password: str) -> None:
    """Set an account's password with MLflow's ``update_user_password`` (as the admin).

    Raises:
        MlflowAuthError: MLflow refused (a wrong admin password, a password under 12 characters).
    """
    body = {"username": username, "password": password}
    if username == admin.username:  # MLflow asks for the current password to change one's own
        body["current_password"] = admin.password
    status, answer = _call(uri, "PATCH", f"{USERS}/update-password", admin, body)
    if status == 401:
        raise _refused(uri, admin, admin=True)
    if status != 200:
        raise MlflowAuthError(
            f"MLflow refused the new password of '{username}' ({status}): "
            f"{answer.get('message', answer)}"
        )


def wait_until_healthy(uri: str, timeout: float = 300.0) -> None:
    """Wait until MLflow's ``/health`` answers (a Kubernetes Job may start before the server)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):  # noqa: S310
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise MlflowAuthError(
                    f"MLflow at {uri} did not answer /health in {timeout:.0f} s"
                ) from None
            time.sleep(2)


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name) or default
    if not value:
        raise MlflowAuthError(f"{name} is not set")
    return value


def accounts_from_environment() -> tuple[Account, Account, Account]:
    """The admin, the writer and the reader from the environment (docker-compose, Kubernetes)."""
    admin = Account(
        _env("MLFLOW_AUTH_ADMIN_USERNAME", ADMIN_USERNAME),
        _env("MLFLOW_AUTH_ADMIN_PASSWORD"),
        "MLFLOW_AUTH_ADMIN_PASSWORD",
    )
    writer = Account(
        WRITER_USERNAME, _env(PASSWORD_SETTINGS["writer"]), PASSWORD_SETTINGS["writer"]
    )
    reader = Account(
        READER_USERNAME, _env(PASSWORD_SETTINGS["reader"]), PASSWORD_SETTINGS["reader"]
    )
    return admin, writer, reader


def rotate(role: str) -> str:
    """A new password for one account of the local services, stored in ``credentials.env``.

    Returns:
        What to do next so every user of the account has the new password.

    Raises:
        MlflowAuthError: The password is set by an environment variable, or MLflow refused.
    """
    import secrets

    from stack.settings import load_settings, save_credential

    setting = PASSWORD_SETTINGS[role]
    if os.environ.get(setting):
        raise MlflowAuthError(
            f"{setting} is set in the environment: set the new password with MLflow's "
            "update_user_password, then change the variable"
        )
    settings = load_settings()
    admin = Account(ADMIN_USERNAME, settings.mlflow_admin_password, PASSWORD_SETTINGS["admin"])
    username = {"admin": ADMIN_USERNAME, "writer": WRITER_USERNAME, "reader": READER_USERNAME}[role]
    password = secrets.token_hex(16)
    update_password(settings.mlflow_uri, admin, username, password)
    save_credential(setting, password, settings.credentials_file)
    return {
        "admin": "Nothing else uses it.",
        "writer": "Next: python -m stack.register production (it updates the ZenML secret).",
        "reader": "Next: restart the review app (make ui).",
    }[role]


def reader_exports() -> str:
    """``export`` lines with the read-only login, for ``make ui``; "" before ``make services``.

    Nothing is generated: without ``credentials.env`` (the embedded stack only) and
    without ``CLEARSIGHT_MLFLOW_READER_PASSWORD``, the app needs no MLflow login.
    An ``MLFLOW_TRACKING_USERNAME`` already set is left as it is.
    """
    import shlex

    from stack.settings import read_credential

    setting = PASSWORD_SETTINGS["reader"]
    password = os.environ.get(setting) or read_credential(setting)
    if not password or os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return ""
    return (
        f"export MLFLOW_TRACKING_USERNAME={READER_USERNAME}\n"
        f"export MLFLOW_TRACKING_PASSWORD={shlex.quote(password)}\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m stack.mlflow_auth",
        description="MLflow's basic-auth config and its accounts (stack/mlflow_auth.py).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    config = commands.add_parser("config", help="write the auth config (MLFLOW_AUTH_DATABASE_URI)")
    config.add_argument("path")
    commands.add_parser("accounts", help="create / check the accounts (CLEARSIGHT_MLFLOW_URI)")
    rotation = commands.add_parser("rotate", help="a new password, into credentials.env")
    rotation.add_argument("role", choices=sorted(PASSWORD_SETTINGS))
    commands.add_parser("ui-env", help="the read-only login as shell exports (make ui)")
    args = parser.parse_args(argv)
    try:
        if args.command == "config":
            fd = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(render_auth_config(_env("MLFLOW_AUTH_DATABASE_URI")))
        elif args.command == "accounts":
            uri = _env("CLEARSIGHT_MLFLOW_URI")
            wait_until_healthy(uri)
            for username, outcome in ensure_accounts(uri, *accounts_from_environment()).items():
                print(f"{username}: {outcome}")
        elif args.command == "ui-env":
            print(reader_exports(), end="")
        else:
            print(f"New password of the {args.role} account stored. {rotate(args.role)}")
    except MlflowAuthError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
