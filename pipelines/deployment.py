"""The deploy pipeline: serve the champion, then send it one real image."""

from __future__ import annotations

from zenml import pipeline
from zenml.client import Client

from clearsight.names import ArtifactName, PipelineName
from clearsight.serving import DEFAULT_MAX_REQUEST_BYTES
from steps.alert_hooks import alert_on_failure
from steps.deployment import deploy_champion, smoke_test


@pipeline(name=PipelineName.DEPLOY, on_failure=alert_on_failure)
def deployment_pipeline(
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
) -> None:
    """Deploy the model the MLflow alias ``champion`` names, and smoke-test it.

    Args:
        model_name: The registered model.
        workers: gunicorn workers of the microservice; None: the model
            deployer's ``workers`` setting.
        uncertain_threshold: Confidence below which answers are flagged uncertain.
        top_k: Classes listed per answer.
        max_batch: Largest accepted batch.
        max_request_bytes: Largest accepted request body (larger: 413).
        prediction_log: Record every answered image in the catalog's prediction log.
        prediction_log_retention_days: Days of prediction log kept (0: forever).
        keep_images: Whose bytes the log keeps: never, uncertain or all.
        keep_images_sample_share: Share of the other answered images kept too.
    """
    deployment = deploy_champion(
        model_name=model_name,
        workers=workers,
        uncertain_threshold=uncertain_threshold,
        top_k=top_k,
        max_batch=max_batch,
        max_request_bytes=max_request_bytes,
        prediction_log=prediction_log,
        prediction_log_retention_days=prediction_log_retention_days,
        keep_images=keep_images,
        keep_images_sample_share=keep_images_sample_share,
    )
    smoke_test(deployment=deployment, dataset=Client().get_artifact_version(ArtifactName.DATASET))
