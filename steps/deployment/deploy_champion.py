"""Serve the current champion with the stack's model deployer."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import mlflow
from zenml import step
from zenml.client import Client

from clearsight.names import CHAMPION_ALIAS
from clearsight.serving import MODEL_FILE, ServingConfig
from stack.seldon.service import LocalSeldonDeploymentConfig

logger = logging.getLogger(__name__)


def _export_champion(model_name: str, target: Path, settings: dict[str, Any]) -> dict[str, str]:
    """Download the MLflow model the alias ``champion`` names into a servable folder."""
    registry = Client().active_stack.model_registry
    registry.configure_mlflow()  # point the mlflow module at the stack's tracking store
    client = registry.mlflow_client
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except Exception:  # noqa: BLE001 - MLflow raises a generic error for a missing alias
        raise RuntimeError(
            f"Model {model_name!r} has no champion yet: run python run.py (or python run.py "
            "promote) first."
        ) from None
    uri = f"models:/{model_name}/{version.version}"
    info = mlflow.models.get_model_info(uri)
    metadata = info.metadata or {}
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch))
        found = list(local.rglob(MODEL_FILE))
        if not found:
            raise RuntimeError(f"{uri} holds no {MODEL_FILE}; was it logged by the train pipeline?")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(found[0], target / MODEL_FILE)
    ServingConfig(
        model_name=model_name,
        model_version=version.tags.get("zenml_model_version", ""),
        registered_version=str(version.version),
        mlflow_run_id=version.run_id or "",
        classes=list(metadata["classes"]),
        image_size=int(metadata["image_size"]),
        temperature=float(metadata.get("temperature", 1.0)),
        **settings,
    ).save(target)
    return {
        "registered_version": str(version.version),
        "zenml_model_version": version.tags.get("zenml_model_version", ""),
    }


@step(enable_cache=False)
def deploy_champion(
    model_name: str,
    workers: int = 1,
    uncertain_threshold: float = 0.7,
    top_k: int = 3,
    max_batch: int = 64,
    timeout: int = 180,
) -> Annotated[dict[str, Any], "deployment"]:
    """Serve the champion; start the new server before stopping the old one.

    Args:
        model_name: Registered model whose ``champion`` alias is served.
        workers: gunicorn workers of the microservice.
        uncertain_threshold: Calibrated confidence below which an answer is
            flagged ``uncertain`` (send for expert review).
        top_k: Classes listed per answer.
        max_batch: Largest accepted batch.
        timeout: Seconds to wait for the new server to become healthy.

    Returns:
        The prediction URL, the versions served and whether anything changed.
    """
    deployer = Client().active_stack.model_deployer
    if deployer is None:
        raise RuntimeError("The active stack has no model deployer. Fix: python -m stack.register")
    settings = {"uncertain_threshold": uncertain_threshold, "top_k": top_k, "max_batch": max_batch}
    existing = []
    for service in deployer.servers_for(model_name):
        if service.is_running:
            existing.append(service)
        else:  # a stopped or crashed server serves nobody: clear it away
            deployer.delete_model_server(service.uuid, timeout=60, force=True)

    staging = Path(deployer.local_path) / "models" / f"{model_name}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    served = _export_champion(model_name, staging, settings)
    for service in existing:
        config = service.config
        if getattr(config, "registered_version", None) == served["registered_version"]:
            shutil.rmtree(staging, ignore_errors=True)
            logger.info("Champion v%s is already served.", served["registered_version"])
            return {
                "prediction_url": service.prediction_url,
                "changed": False,
                "service": str(service.uuid),
                **served,
            }
    folder = staging.with_name(f"{model_name}-v{served['registered_version']}")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)

    # Blue-green: the new server must be healthy before the old one goes away.
    new = deployer.deploy_new_server(
        config=LocalSeldonDeploymentConfig(
            model_dir=str(folder),
            model_name=model_name,
            model_version=served["zenml_model_version"],
            registered_version=served["registered_version"],
            workers=workers,
            service_name=f"{model_name}-seldon-v{served['registered_version']}",
        ),
        timeout=timeout,
    )
    if not new.is_running:
        raise RuntimeError(
            f"The new server for {model_name} v{served['registered_version']} did not become "
            f"healthy in {timeout} s; the previous one keeps serving. Logs: "
            f"{new.status.log_file}"
        )
    for old in existing:
        if old.uuid != new.uuid:
            deployer.delete_model_server(old.uuid, timeout=60, force=True)
    logger.info(
        "Serving %s v%s at %s", model_name, served["registered_version"], new.prediction_url
    )
    return {
        "prediction_url": new.prediction_url,
        "changed": True,
        "service": str(new.uuid),
        **served,
    }
