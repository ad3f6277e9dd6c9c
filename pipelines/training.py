"""The train pipeline: fit, calibrate, evaluate and register a classifier."""

from __future__ import annotations

from typing import Any

from zenml import pipeline
from zenml.client import Client

from clearsight.config import LabelReviewParameters, TrainingParameters
from clearsight.names import ArtifactName, PipelineName
from steps.alert_hooks import alert_on_failure
from steps.training import (
    calibrate_model,
    evaluate_model,
    find_label_issues,
    link_dataset,
    log_model_metadata,
    register_model,
    train_model,
)


@pipeline(name=PipelineName.TRAIN, on_failure=alert_on_failure)
def training_pipeline(
    hyperparameters: TrainingParameters | None = None,
    dataset_version: str | None = None,
    label_review: LabelReviewParameters | None = None,
) -> None:
    """Train on a dataset version, calibrate, evaluate on its test split, register.

    Then queue the likely label errors of the training data for an expert review.

    Args:
        hyperparameters: How to train; defaults from ``TrainingParameters``.
        dataset_version: Version of the ``dataset`` artifact; the latest if empty.
        label_review: The label-error check; defaults from ``LabelReviewParameters``.
    """
    train_on(
        Client().get_artifact_version(ArtifactName.DATASET, version=dataset_version),
        hyperparameters or TrainingParameters(),
        label_review or LabelReviewParameters(),
    )


def train_on(
    dataset: Any, hyperparameters: TrainingParameters, label_review: LabelReviewParameters
) -> tuple[Any, Any, Any]:
    """Wire the training steps into the pipeline being defined.

    Used by :func:`training_pipeline` and by the retrain pipeline.

    Args:
        dataset: The ``dataset`` artifact (an artifact version, or a step's output).
        hyperparameters: How to train.
        label_review: The label-error check.

    Returns:
        The ``model``, ``calibration`` and ``registered_model`` outputs.
    """
    link_dataset(dataset=dataset)
    # link_dataset is the only first step. ZenML creates a run's model version
    # just after the run itself: on a scheduled or triggered Airflow run (no
    # placeholder run made by a client), a second step starting at the same
    # time could see the run without its model version (and lose its links).
    trained = train_model(dataset=dataset, hyperparameters=hyperparameters, after="link_dataset")
    model, calibration = calibrate_model(model=trained, dataset=dataset)
    test_metrics, _ = evaluate_model(model=model, dataset=dataset)
    registered = register_model(model=model, dataset=dataset, test_metrics=test_metrics)
    # Never cached: the figures reach this run's model version even when the
    # steps above were all reused from cache.
    log_model_metadata(
        test_metrics=test_metrics,
        calibration=calibration,
        registered_model=registered,
        dataset=dataset,
    )
    # Likely label errors of the training data go to the review queue; never
    # fails the run for a queue problem.
    find_label_issues(
        model=model, dataset=dataset, registered_model=registered, label_review=label_review
    )
    return model, calibration, registered
