"""Measure the trained model on the held-out test split."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import tensorflow as tf
from PIL import Image
from zenml import log_metadata, step
from zenml.integrations.pillow.materializers.pillow_image_materializer import (
    PillowImageMaterializer,
)

from clearsight.dataset import DatasetManifest
from clearsight.metrics import classification_metrics, confusion_matrix_figure
from clearsight.names import ArtifactName
from steps.training.data import split_dataset

logger = logging.getLogger(__name__)


@step(
    experiment_tracker=True,
    output_materializers={ArtifactName.CONFUSION_MATRIX: PillowImageMaterializer},
)
def evaluate_model(
    model: tf.keras.Model, dataset: DatasetManifest, batch_size: int = 64
) -> tuple[
    Annotated[dict[str, Any], ArtifactName.TEST_METRICS],
    Annotated[Image.Image, ArtifactName.CONFUSION_MATRIX],
]:
    """Compute test accuracy, macro-F1 and per-class precision and recall.

    Everything is logged to the MLflow run (metrics, the confusion-matrix
    image, the classification report) and the headline metrics are attached
    to the metrics artifact (``log_model_metadata`` copies them to the model
    version).

    Args:
        model: The trained classifier.
        dataset: The dataset whose test split is measured.
        batch_size: Images per prediction batch.

    Returns:
        The metrics and the confusion matrix as an image for the dashboard.
    """
    if not dataset.split("test"):
        raise ValueError("The dataset has no test images; the model cannot be evaluated.")
    image_size = int(model.input_shape[1])
    test, y_true = split_dataset(dataset, "test", image_size=image_size, batch_size=batch_size)
    probabilities = model.predict(test, verbose=0)
    y_pred = np.argmax(probabilities, axis=1).tolist()
    metrics = classification_metrics(y_true, y_pred, dataset.classes)

    flat = {"test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"]}
    for name, values in metrics["per_class"].items():
        flat[f"test_precision_{name}"] = values["precision"]
        flat[f"test_recall_{name}"] = values["recall"]
    mlflow.log_metrics(flat)
    mlflow.log_text(metrics["report"], "classification_report.txt")
    mlflow.log_dict(metrics, "test_metrics.json")
    figure = confusion_matrix_figure(metrics["confusion_matrix"], dataset.classes)
    mlflow.log_figure(figure, "confusion_matrix.png")
    figure.canvas.draw()
    image = Image.frombuffer(
        "RGBA", figure.canvas.get_width_height(), figure.canvas.buffer_rgba()
    ).convert("RGB")
    plt.close(figure)

    headline = {
        "test_accuracy": metrics["accuracy"],
        "test_macro_f1": metrics["macro_f1"],
        "test_images": len(y_true),
        "dataset_fingerprint": dataset.fingerprint,
    }
    # On the artifact, so a cached re-run keeps it; log_model_metadata puts the
    # figures on each run's model version.
    log_metadata(metadata=headline, artifact_name=ArtifactName.TEST_METRICS, infer_artifact=True)
    logger.info(
        "Test accuracy %.4f, macro-F1 %.4f on %d images.\n%s",
        metrics["accuracy"],
        metrics["macro_f1"],
        len(y_true),
        metrics["report"],
    )
    return {**metrics, "test_images": len(y_true)}, image
