"""The app's settings: every one has a default and an environment variable.

Credentials never live here: the users file (hashed passwords) is outside git,
at ``.state/ui-users.yaml`` unless ``CLEARSIGHT_UI_USERS`` says otherwise.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clearsight.catalog import sqlite_url
from clearsight.names import DEFAULT_MODEL_NAME
from ui.users import MIN_PASSWORD_LENGTH

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".state"

USERS_ENV = "CLEARSIGHT_UI_USERS"
METRICS_PORT_ENV = "CLEARSIGHT_UI_METRICS_PORT"
METRICS_ADDRESS_ENV = "CLEARSIGHT_UI_METRICS_ADDRESS"
CATALOG_URL_ENV = "CLEARSIGHT_CATALOG_URL"
ENDPOINT_URL_ENV = "CLEARSIGHT_ENDPOINT_URL"
TRAIN_CONFIG_ENV = "CLEARSIGHT_TRAIN_CONFIG"
DEPLOY_CONFIG_ENV = "CLEARSIGHT_DEPLOY_CONFIG"
MLFLOW_UI_ENV = "CLEARSIGHT_MLFLOW_UI_URL"
DASHBOARD_ENV = "CLEARSIGHT_ZENML_DASHBOARD_URL"
PYTHON_ENV = "CLEARSIGHT_PYTHON"
SIGN_IN_ATTEMPTS_ENV = "CLEARSIGHT_UI_SIGN_IN_ATTEMPTS"
LOCKOUT_MINUTES_ENV = "CLEARSIGHT_UI_LOCKOUT_MINUTES"
IDLE_MINUTES_ENV = "CLEARSIGHT_UI_IDLE_MINUTES"
MIN_PASSWORD_LENGTH_ENV = "CLEARSIGHT_UI_MIN_PASSWORD_LENGTH"

DEFAULT_METRICS_PORT = 8502
# Loopback by default; a container sets 0.0.0.0 so Prometheus can scrape it.
DEFAULT_METRICS_ADDRESS = "127.0.0.1"
START_ENDPOINT = "python run.py deploy"
# `make mlflow-ui` serves the embedded stack's tracking store here (MLFLOW_PORT);
# port 5000 is the production stack's MLflow server, linked to by its own URI.
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5001"
START_MLFLOW_UI = "make mlflow-ui"
# Sign-in (OWASP's Authentication and Session Management Cheat Sheets): failed
# sign-ins per account within the lockout period before it is locked for that
# period; idle minutes before a session must sign in again; the shortest
# password `python -m ui.users add|reset` accepts (NIST SP 800-63B 5.1.1.2 asks
# at least 8; SP 800-63B-4 3.1.1.2 asks 15 for a password used alone).
DEFAULT_SIGN_IN_ATTEMPTS = 5
DEFAULT_LOCKOUT_MINUTES = 15.0
DEFAULT_IDLE_MINUTES = 30.0
DEFAULT_MIN_PASSWORD_LENGTH = MIN_PASSWORD_LENGTH


@dataclass(frozen=True)
class UIConfig:
    """Where the app finds everything it talks to."""

    root: Path
    model_name: str
    train_config: Path
    deploy_config: Path
    catalog_url: str
    users_file: Path
    metrics_port: int
    metrics_address: str
    endpoint_url: str | None
    mlflow_ui_url: str | None  # an explicit choice; else see ui.data.registry.mlflow_ui
    zenml_dashboard_url: str | None
    python: str
    uncertain_threshold: float
    top_k: int
    admin_timeout: int = 900
    sign_in_attempts: int = DEFAULT_SIGN_IN_ATTEMPTS
    lockout_minutes: float = DEFAULT_LOCKOUT_MINUTES
    idle_minutes: float = DEFAULT_IDLE_MINUTES
    min_password_length: int = DEFAULT_MIN_PASSWORD_LENGTH
    decoding: dict = field(default_factory=dict)  # configs/ingest.yaml: how thumbnails decode


def _yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except OSError:
        return {}


def _positive(name: str, default: float, kind: type = float) -> float:
    """A positive number from the environment variable ``name``, else ``default``.

    Raises:
        ValueError: When the variable is set to something else, naming it.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not (math.isfinite(value) and value > 0):
        kind_name = "a whole number" if kind is int else "a number"
        raise ValueError(f"{name} must be {kind_name} above 0, not {raw!r}.")
    return value


def load_config() -> UIConfig:
    """Read the settings from the environment and the pipelines' YAML configs.

    The model name comes from the train config (as ``run.py`` reads it), the
    default threshold and top-k from the deploy config, so the app and the
    endpoint agree unless the user moves the sliders.
    """
    env = os.environ
    train_config = Path(env.get(TRAIN_CONFIG_ENV) or ROOT / "configs" / "train.yaml")
    deploy_config = Path(env.get(DEPLOY_CONFIG_ENV) or ROOT / "configs" / "deploy.yaml")
    model_name = (_yaml(train_config).get("model") or {}).get("name") or DEFAULT_MODEL_NAME
    deploy = _yaml(deploy_config).get("parameters") or {}
    ingest = _yaml(ROOT / "configs" / "ingest.yaml").get("parameters") or {}
    return UIConfig(
        root=ROOT,
        model_name=model_name,
        train_config=train_config,
        deploy_config=deploy_config,
        catalog_url=env.get(CATALOG_URL_ENV) or sqlite_url(STATE_DIR / "catalog.db"),
        users_file=Path(env.get(USERS_ENV) or STATE_DIR / "ui-users.yaml").expanduser(),
        metrics_port=int(env.get(METRICS_PORT_ENV) or DEFAULT_METRICS_PORT),
        metrics_address=env.get(METRICS_ADDRESS_ENV) or DEFAULT_METRICS_ADDRESS,
        endpoint_url=env.get(ENDPOINT_URL_ENV) or None,
        mlflow_ui_url=(env.get(MLFLOW_UI_ENV) or "").rstrip("/") or None,
        zenml_dashboard_url=(env.get(DASHBOARD_ENV) or "").rstrip("/") or None,
        python=env.get(PYTHON_ENV) or sys.executable,
        uncertain_threshold=float(deploy.get("uncertain_threshold", 0.7)),
        top_k=int(deploy.get("top_k", 3)),
        decoding=dict(ingest.get("decoding") or {}),
        sign_in_attempts=int(_positive(SIGN_IN_ATTEMPTS_ENV, DEFAULT_SIGN_IN_ATTEMPTS, int)),
        lockout_minutes=_positive(LOCKOUT_MINUTES_ENV, DEFAULT_LOCKOUT_MINUTES),
        idle_minutes=_positive(IDLE_MINUTES_ENV, DEFAULT_IDLE_MINUTES),
        min_password_length=int(
            _positive(MIN_PASSWORD_LENGTH_ENV, DEFAULT_MIN_PASSWORD_LENGTH, int)
        ),
    )


def apply_environment() -> None:
    """Project-local ZenML state and quiet libraries, unless the caller chose otherwise.

    The same defaults as ``run.py`` and ``make``: call before ZenML is imported.
    """
    os.environ.setdefault("ZENML_CONFIG_PATH", str(STATE_DIR / "zenml"))
    os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
