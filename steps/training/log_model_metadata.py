"""Attach the headline figures to the run's ZenML model version."""

from __future__ import annotations

import logging
from typing import Any

from zenml import get_step_context, log_metadata, step

from clearsight.dataset import DatasetManifest

logger = logging.getLogger(__name__)


def model_version_metadata(
    test_metrics: dict[str, Any],
    calibration: dict[str, Any],
    registered_model: dict[str, Any],
    dataset_fingerprint: str,
) -> dict[str, Any]:
    """The model version's metadata: test metrics, calibration, MLflow coordinates.

    Args:
        test_metrics: Output of the evaluation step.
        calibration: Output of the calibration step (temperature, ECE, NLL).
        registered_model: Output of the registration step.
        dataset_fingerprint: Fingerprint of the dataset the model was trained on.

    Returns:
        Flat, JSON-serialisable metadata.
    """
    return {
        "test_accuracy": float(test_metrics["accuracy"]),
        "test_macro_f1": float(test_metrics["macro_f1"]),
        "test_images": int(test_metrics["test_images"]),
        "dataset_fingerprint": dataset_fingerprint,
        **{k: float(v) for k, v in calibration.items()},
        **{k: v for k, v in registered_model.items() if k != "classes"},
    }


@step(enable_cache=False)
def log_model_metadata(
    test_metrics: dict[str, Any],
    calibration: dict[str, Any],
    registered_model: dict[str, Any],
    dataset: DatasetManifest,
) -> None:
    """Log the headline metrics and MLflow coordinates onto the current model version.

    Never cached: every run creates a new model version, and a re-run whose
    evaluation and registration came from cache must still give its version
    the figures (ZenML copies only step-run metadata to cached steps, not
    metadata logged onto the model version).

    Args:
        test_metrics: Output of the evaluation step.
        calibration: Output of the calibration step.
        registered_model: Output of the registration step.
        dataset: The dataset the model was trained on.
    """
    metadata = model_version_metadata(
        test_metrics, calibration, registered_model, dataset.fingerprint
    )
    version = get_step_context().model_version
    log_metadata(metadata=metadata, model_version_id=version.id)
    logger.info(
        "Model version %s #%s: test accuracy %.4f, MLflow %s v%s.",
        version.model.name,
        version.number,
        metadata["test_accuracy"],
        metadata["registered_model_name"],
        metadata["registered_model_version"],
    )
