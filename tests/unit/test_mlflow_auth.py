"""MLflow's basic-auth config and the accounts' credentials, without a server.

The server side (401 without a login, 403 for the read-only account moving an
alias) runs against the real MLflow server in
``tests/integration/test_production_stack.py``.
"""

from __future__ import annotations

import pytest

from stack import mlflow_auth
from stack.mlflow_auth import Account, render_auth_config


@pytest.fixture()
def services_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLEARSIGHT_SERVICES_DIR", str(tmp_path / "services"))
    for name in (
        *mlflow_auth.PASSWORD_SETTINGS.values(),
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "services"


def _read_by_mlflow(path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    return read_auth_config()


def test_mlflow_reads_the_rendered_config_as_written(tmp_path, monkeypatch, services_dir):
    path = tmp_path / "basic_auth.ini"
    users = "postgresql://mlflow:p%40ss@postgres:5432/mlflow_auth"  # % survives configparser
    path.write_text(render_auth_config(users, Account("admin", "s3cret%value-1")))
    config = _read_by_mlflow(path, monkeypatch)
    assert config.default_permission == "READ"  # every signed-in account reads, no more
    assert config.database_uri == users
    assert (config.admin_username, config.admin_password) == ("admin", "s3cret%value-1")
    assert config.authorization_function == mlflow_auth.AUTHORIZATION_FUNCTION
    assert config.auth_cache_ttl_seconds == mlflow_auth.AUTH_CACHE_TTL_SECONDS > 0
    assert config.grant_default_workspace_access is False
    with pytest.raises(ValueError, match="spans lines"):
        render_auth_config("sqlite:///x.db\nadmin_password = injected")


def test_the_config_command_writes_a_private_file_without_the_admin(
    tmp_path, monkeypatch, services_dir
):
    # docker-compose and Kubernetes: the admin comes from MLflow's own variables.
    path = tmp_path / "basic_auth.ini"
    monkeypatch.setenv("MLFLOW_AUTH_DATABASE_URI", "sqlite:////data/basic_auth.db")
    assert mlflow_auth.main(["config", str(path)]) == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert "admin_password" not in path.read_text()
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "from-the-secret-1")
    config = _read_by_mlflow(path, monkeypatch)
    assert (config.admin_username, config.admin_password) == ("admin", "from-the-secret-1")
    monkeypatch.delenv("MLFLOW_AUTH_DATABASE_URI")
    assert mlflow_auth.main(["config", str(path)]) == 1  # named, no traceback


def test_the_accounts_passwords_are_generated_once_and_kept_private(services_dir):
    from stack.settings import load_settings

    settings = load_settings()
    passwords = (
        settings.mlflow_admin_password,
        settings.mlflow_password,
        settings.mlflow_reader_password,
    )
    assert len(set(passwords)) == 3 and all(len(p) >= 12 for p in passwords)  # MLflow's minimum
    assert len(settings.mlflow_secret_key) >= 32
    stored = (services_dir / "credentials.env").read_text()
    assert all(f"{key}=" in stored for key in mlflow_auth.PASSWORD_SETTINGS.values())
    assert oct((services_dir / "credentials.env").stat().st_mode & 0o777) == "0o600"
    assert load_settings().mlflow_reader_password == settings.mlflow_reader_password
    assert settings.mlflow_admin_password not in repr(settings)
    # The review app and a shell read with the read-only account.
    assert settings.environment()["MLFLOW_TRACKING_USERNAME"] == mlflow_auth.READER_USERNAME
    assert settings.mlflow_reader_environment()["MLFLOW_TRACKING_PASSWORD"] == passwords[2]


def test_the_local_server_starts_with_basic_auth_and_its_config(services_dir, monkeypatch):
    from stack.services import Services

    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "a-stale-value-1")  # must not win
    services = Services()
    argv, env = services._command("mlflow")
    assert argv[argv.index("--app-name") + 1] == "basic-auth"
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD")
    config = _read_by_mlflow(env["MLFLOW_AUTH_CONFIG_PATH"], monkeypatch)
    assert config.admin_password == services.settings.mlflow_admin_password
    assert config.database_uri.endswith(str(services_dir / "mlflow" / "basic_auth.db"))
    assert oct(services.mlflow_auth_config_file().stat().st_mode & 0o777) == "0o600"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == services.settings.mlflow_secret_key


def test_a_password_is_never_changed_by_the_account_check(monkeypatch):
    calls = []

    def answer(uri, method, path, account, body=None, params=None, timeout=30.0):
        calls.append((method, path))
        if account is None:
            return 401, {}
        if path.endswith("/users/current"):
            return (200, {}) if account.password.startswith("right") else (401, {})
        if path.endswith("/users/get"):
            return 200, {"user": {"username": params["username"]}}
        return 200, {"permissions": []}

    monkeypatch.setattr(mlflow_auth, "_call", answer)
    admin = Account("admin", "right-admin-1")
    reader = Account("clearsight-reader", "wrong-reader-1", "CLEARSIGHT_MLFLOW_READER_PASSWORD")
    with pytest.raises(mlflow_auth.MlflowAuthError, match="CLEARSIGHT_MLFLOW_READER_PASSWORD"):
        mlflow_auth.ensure_accounts(
            "http://mlflow", admin, Account("clearsight", "right-1"), reader
        )
    assert not [c for c in calls if c[0] in ("PATCH", "DELETE")]
    monkeypatch.setattr(mlflow_auth, "_call", lambda *a, **k: (200, {}))  # no auth at all
    with pytest.raises(mlflow_auth.MlflowAuthError, match="without authentication"):
        mlflow_auth.ensure_accounts("http://mlflow", admin, admin, admin)
