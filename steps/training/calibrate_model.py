"""Fit temperature scaling on the validation split and store it in the model."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import mlflow
import tensorflow as tf
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType
from zenml.integrations.tensorflow.materializers.keras_materializer import (
    KerasMaterializer,
)

from clearsight.calibration import (
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from clearsight.dataset import DatasetManifest
from clearsight.models import logits_model, with_temperature
from clearsight.names import ArtifactName
from steps.training.data import split_dataset

logger = logging.getLogger(__name__)


def _logits(model: tf.keras.Model, dataset: DatasetManifest, split: str, batch_size: int):
    image_size = int(model.input_shape[1])
    pipeline, labels = split_dataset(dataset, split, image_size=image_size, batch_size=batch_size)
    return logits_model(model).predict(pipeline, verbose=0), labels


@step(
    experiment_tracker=True,
    output_materializers={ArtifactName.MODEL: KerasMaterializer},
)
def calibrate_model(
    model: tf.keras.Model, dataset: DatasetManifest, batch_size: int = 64
) -> tuple[
    Annotated[
        tf.keras.Model,
        ArtifactConfig(name=ArtifactName.MODEL, artifact_type=ArtifactType.MODEL),
    ],
    Annotated[dict[str, Any], ArtifactName.CALIBRATION],
]:
    """Temperature-scale the model so its confidence means what it says.

    The temperature is fitted on the validation split and the expected
    calibration error is reported before and after on both the validation
    and the (untouched) test split, with the negative log-likelihood that
    the fit minimises.

    Args:
        model: The trained model.
        dataset: The dataset it was trained on.
        batch_size: Images per prediction batch.

    Returns:
        The calibrated model (temperature stored inside it) and the figures.
    """
    val_logits, val_labels = _logits(model, dataset, "val", batch_size)
    test_logits, test_labels = _logits(model, dataset, "test", batch_size)
    temperature = fit_temperature(val_logits, val_labels)
    figures: dict[str, Any] = {"temperature": temperature}
    for split, logits, labels in (
        ("val", val_logits, val_labels),
        ("test", test_logits, test_labels),
    ):
        for when, t in (("before", 1.0), ("after", temperature)):
            probabilities = calibrated_probabilities(logits, t)
            figures[f"{split}_ece_{when}"] = expected_calibration_error(probabilities, labels)
            figures[f"{split}_nll_{when}"] = negative_log_likelihood(probabilities, labels)
    mlflow.log_metrics(figures)
    log_metadata(metadata=figures, artifact_name=ArtifactName.CALIBRATION, infer_artifact=True)
    logger.info(
        "Temperature %.3f: test ECE %.4f -> %.4f (val %.4f -> %.4f).",
        temperature,
        figures["test_ece_before"],
        figures["test_ece_after"],
        figures["val_ece_before"],
        figures["val_ece_after"],
    )
    return with_temperature(model, temperature), figures
