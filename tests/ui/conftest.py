"""A real served model for the app's tests: ingest, train, gate and deploy on the embedded stack.

The app is pointed at it the way a user points it: environment variables for
the catalog, the users file and the train config (which names the model), and
the model deployer of the active ZenML stack to find the endpoint.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.conftest import digits_dir, embedded_stack  # noqa: F401 - shared fixtures

UI_MODEL = "ui-test-classifier"
ADMIN = ("ada", "admin-password-1")
REVIEWER = ("rita", "reviewer-password-1")
EPOCHS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServedApp:
    """What the app's tests need to know about the environment they built."""

    root: Path
    catalog_url: str
    users_file: Path
    train_config: Path
    metrics_port: int
    prediction_url: str
    champion: int
    env: dict[str, str]


def _train_config(target: Path) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "train.yaml").read_text())
    config["model"]["name"] = UI_MODEL
    config["parameters"]["hyperparameters"]["epochs"] = EPOCHS
    # The queue tests count and page the served model's entries: no label-error suspects.
    config["parameters"]["label_review"]["enabled"] = False
    target.write_text(yaml.safe_dump(config))
    return target


@pytest.fixture(scope="package")  # torn down (env restored) before tests/unit run
def served_app(embedded_stack, digits_dir, tmp_path_factory):  # noqa: F811
    """The bundled digits ingested, a model trained, judged, promoted and served."""
    from zenml.client import Client

    from clearsight.catalog import sqlite_url
    from clearsight.gate import PromotionRules
    from pipelines import (
        deployment_pipeline,
        ingest_pipeline,
        promotion_pipeline,
        training_pipeline,
    )
    from ui.users import add_user

    root = tmp_path_factory.mktemp("ui")
    catalog = sqlite_url(root / "catalog.db")
    users = root / "users.yaml"
    add_user(users, ADMIN[0], "admin", ADMIN[1])
    add_user(users, REVIEWER[0], "reviewer", REVIEWER[1])
    train_config = _train_config(root / "train.yaml")
    env = {
        "CLEARSIGHT_CATALOG_URL": catalog,
        "CLEARSIGHT_UI_USERS": str(users),
        "CLEARSIGHT_TRAIN_CONFIG": str(train_config),
        "CLEARSIGHT_UI_METRICS_PORT": str(free_port()),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)

    ingest_pipeline(data_dir=str(digits_dir), catalog_url=catalog)
    train = training_pipeline.with_options(config_path=str(train_config))()
    number = Client().get_pipeline_run(train.id).model_version.number
    rules = PromotionRules(min_accuracy=0.8, min_macro_f1=0.8, max_ece=0.2)
    promotion_pipeline.with_options(
        config_path=str(ROOT / "configs" / "promote.yaml"),
        parameters={
            "model_name": UI_MODEL,
            "challenger_version": number,
            "champion_version": None,
            "rules": rules.model_dump(mode="json"),
        },
    )()
    deployment_pipeline.with_options(
        config_path=str(ROOT / "configs" / "deploy.yaml"), parameters={"model_name": UI_MODEL}
    )()
    deployer = Client().active_stack.model_deployer
    (service,) = [s for s in deployer.servers_for(UI_MODEL) if s.is_running]
    yield ServedApp(
        root=root,
        catalog_url=catalog,
        users_file=users,
        train_config=train_config,
        metrics_port=int(env["CLEARSIGHT_UI_METRICS_PORT"]),
        prediction_url=service.prediction_url,
        champion=number,
        env=env,
    )
    for service in deployer.servers_for(UI_MODEL):
        deployer.delete_model_server(service.uuid, force=True)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
