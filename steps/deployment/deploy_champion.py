"""Serve the current champion with the stack's model deployer."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import mlflow
from zenml import get_step_context, step
from zenml.client import Client

from clearsight.names import CHAMPION_ALIAS, ArtifactName
from clearsight.prediction_log import PREDICTION_IMAGES_FOLDER, check_keep_images
from clearsight.serving import (
    DEFAULT_MAX_REQUEST_BYTES,
    MODEL_FILE,
    MONITORING_FILE,
    ServingConfig,
)
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
        decoding=dict(metadata.get("decoding") or {}),  # none: a model from before the rules
        **settings,
    ).save(target)
    _save_embedding_projection(model_name, version.tags.get("zenml_model_version", ""), target)
    return {
        "registered_version": str(version.version),
        "zenml_model_version": version.tags.get("zenml_model_version", ""),
    }


def _save_embedding_projection(model_name: str, zenml_version: str, target: Path) -> None:
    """Write the version's embedding projection beside the model, when it has one.

    The promote pipeline links it to the version it judged; the server then
    logs each answer's ``embedding_i`` features for monitoring.
    """
    from zenml import Model

    try:
        artifact = Model(name=model_name, version=zenml_version).get_artifact(
            ArtifactName.EMBEDDING_PROJECTION
        )
        projection = artifact.load() if artifact is not None else None
    except Exception as error:  # noqa: BLE001 - monitoring features are optional for serving
        logger.warning("Could not read the embedding projection of %s: %s", zenml_version, error)
        projection = None
    if projection is None:
        logger.warning(
            "Model version %s has no %s (judged before monitoring existed): the prediction "
            "log records pixel features only. To add it: python run.py promote "
            "--model-version %s, then deploy again.",
            zenml_version or "?",
            ArtifactName.EMBEDDING_PROJECTION.value,
            zenml_version or "N",
        )
        return
    (target / MONITORING_FILE).write_text(projection.model_dump_json())


@step(enable_cache=False)
def deploy_champion(
    model_name: str,
    workers: int | None = None,
    uncertain_threshold: float = 0.7,
    top_k: int = 3,
    max_batch: int = 64,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    prediction_log: bool = True,
    prediction_log_retention_days: int = 90,
    keep_images: str = "uncertain",
    keep_images_sample_share: float = 0.0,
    timeout: int = 180,
    stop_timeout: int = 60,
    serving_image: str | None = None,
    replicas: int = 2,
    kubernetes_secret_name: str | None = None,
    kubernetes_timeout: int = 600,
    kubernetes_api_keys: bool = True,
) -> Annotated[dict[str, Any], "deployment"]:
    """Serve the champion; start the new server before stopping the old one.

    With our ``local_seldon`` deployer the server is a local seldon-core
    microservice; with ZenML's ``seldon`` deployer it is a SeldonDeployment on
    the cluster running our wrapper (see :func:`stack.seldon.kubernetes.deploy_on_kubernetes`).
    With API keys on, the platform's client key is made first
    (:func:`stack.endpoint.ensure_platform_key`) for the smoke test.

    Args:
        model_name: Registered model whose ``champion`` alias is served.
        workers: gunicorn workers of the microservice (per pod on Kubernetes);
            None: the local deployer's ``workers`` setting (1 on Kubernetes).
        uncertain_threshold: Calibrated confidence below which an answer is
            flagged ``uncertain`` (send for expert review).
        top_k: Classes listed per answer.
        max_batch: Largest accepted batch.
        max_request_bytes: Largest accepted request body; larger ones get a 413.
        prediction_log: Record every answered image in the catalog's prediction
            log (written to ``serving.json``; ``CLEARSIGHT_PREDICTION_LOG``
            on the server overrides it).
        prediction_log_retention_days: Days of prediction log kept (0: forever).
        keep_images: Which answered images the log keeps the bytes of, for
            review and retraining: ``never``, ``uncertain`` or ``all``. They
            are patients' images: see the README's privacy note.
        keep_images_sample_share: Share (0..1) of the other answered images
            kept too, drawn at random.
        timeout: Seconds to wait for the new local server to become healthy.
        stop_timeout: Seconds the old local server gets to finish the requests
            in flight (graceful stop) before it is killed.
        serving_image: Kubernetes only: the image built from
            ``stack/kubernetes/Dockerfile.serving``; default
            ``$CLEARSIGHT_SERVING_IMAGE``.
        replicas: Kubernetes only: pods serving the model.
        kubernetes_secret_name: Kubernetes only: secret with the
            ``RCLONE_CONFIG_S3_*`` variables for the storage initializer;
            default: the deployer's (``CLEARSIGHT_SELDON_SECRET`` at
            registration, else one ZenML creates from the artifact store's
            credentials).
        kubernetes_timeout: Kubernetes only: seconds to wait for the new
            SeldonDeployment to become available.
        kubernetes_api_keys: Kubernetes only: the pods require API keys (false
            only behind the Istio JWT policy, ``stack/kubernetes/seldon-jwt.yaml``).

    Returns:
        The prediction URL, the versions served and whether anything changed.
    """
    stack = Client().active_stack
    deployer = stack.model_deployer
    if deployer is None:
        raise RuntimeError("The active stack has no model deployer. Fix: python -m stack.register")
    settings = {
        "uncertain_threshold": uncertain_threshold,
        "top_k": top_k,
        "max_batch": max_batch,
        "max_request_bytes": max_request_bytes,
        "prediction_log": prediction_log,
        "prediction_log_retention_days": prediction_log_retention_days,
        "keep_images": keep_images,
        "keep_images_sample_share": keep_images_sample_share,
        "images_uri": f"{stack.artifact_store.path.rstrip('/')}/{PREDICTION_IMAGES_FOLDER}",
    }
    check_keep_images(keep_images, keep_images_sample_share)
    context = get_step_context()
    pipeline_name, pipeline_step_name = context.pipeline.name, context.step_run.name
    if deployer.flavor == "seldon":  # ZenML's Seldon Core deployer, on a cluster
        from stack.endpoint import ensure_platform_key
        from stack.seldon.kubernetes import deploy_on_kubernetes, resolve_image

        if stack.artifact_store.config.is_local:
            raise RuntimeError(
                "ZenML's Seldon deployer needs a remote artifact store (S3/MinIO) that the "
                "cluster can read; the active one is local. Use the production stack."
            )
        if kubernetes_api_keys:
            ensure_platform_key()  # in the catalog the pods read (secret clearsight-catalog)
        return deploy_on_kubernetes(
            deployer,
            model_name=model_name,
            export=lambda folder: _export_champion(model_name, folder, settings),
            models_root=f"{stack.artifact_store.path.rstrip('/')}/served-models",
            serving={
                "image": resolve_image(serving_image),
                "secret_name": kubernetes_secret_name or deployer.kubernetes_secret_name,
                "replicas": replicas,
                "workers": workers or 1,
                "api_keys": kubernetes_api_keys,
            },
            explicit_secret=bool(kubernetes_secret_name),
            pipeline_name=pipeline_name,
            pipeline_step_name=pipeline_step_name,
            timeout=kubernetes_timeout,
        )
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
            deployer.write_prometheus_targets()
            return {
                "prediction_url": service.prediction_url,
                "metrics_url": service.metrics_url,
                "changed": False,
                "service": str(service.uuid),
                "api_keys": service.config.api_keys,
                **served,
            }
    folder = staging.with_name(f"{model_name}-v{served['registered_version']}")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)

    # Blue-green: the new server must be healthy before the old one goes away.
    # A failed start raises; the deployer has already removed the failed server.
    try:
        new = deployer.deploy_new_server(
            config=LocalSeldonDeploymentConfig(
                model_dir=str(folder),
                model_name=model_name,
                model_version=served["zenml_model_version"],
                registered_version=served["registered_version"],
                workers=workers,  # None: the deployer's `workers` setting
                service_name=f"{model_name}-seldon-v{served['registered_version']}",
                pipeline_name=pipeline_name,
                pipeline_step_name=pipeline_step_name,
            ),
            timeout=timeout,
        )
    except Exception as error:
        if not any(old.config.model_dir == str(folder) for old in existing):
            shutil.rmtree(folder, ignore_errors=True)
        serving = ", ".join(str(old.prediction_url) for old in existing) or "nothing"
        raise RuntimeError(f"{error}\nStill serving: {serving} (unchanged).") from error
    for old in existing:
        if old.uuid != new.uuid:
            # graceful: SIGTERM lets gunicorn finish the requests in flight,
            # whatever survives the grace period is killed.
            deployer.delete_model_server(old.uuid, timeout=stop_timeout, force=False)
    logger.info(
        "Serving %s v%s at %s (metrics %s)",
        model_name,
        served["registered_version"],
        new.prediction_url,
        new.metrics_url,
    )
    return {
        "prediction_url": new.prediction_url,
        "metrics_url": new.metrics_url,
        "changed": True,
        "service": str(new.uuid),
        "api_keys": new.config.api_keys,
        **served,
    }
