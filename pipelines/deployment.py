"""The deploy pipeline: serve the champion, then send it one real image."""

from __future__ import annotations

from typing import Any

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
    serve_champion(
        model_name,
        Client().get_artifact_version(ArtifactName.DATASET),
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


def serve_champion(model_name: str, dataset: Any, after: str | None = None, **settings: Any) -> Any:
    """Wire deploying the champion and its smoke test into the pipeline being defined.

    Used by :func:`deployment_pipeline` and by the retrain pipeline (after its
    gate: a rejected challenger leaves the champion as it is, so the step finds
    it already served and changes nothing).

    Args:
        model_name: The registered model whose ``champion`` alias is served.
        dataset: A ``dataset`` artifact whose first test image the smoke test sends.
        after: Invocation id of a step that must finish first.
        settings: ``deploy_champion``'s serving parameters.

    Returns:
        The ``deployment`` output.
    """
    deployment = deploy_champion(model_name=model_name, after=after, **settings)
    smoke_test(deployment=deployment, dataset=dataset)
    return deployment
