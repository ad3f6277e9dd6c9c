"""Fit a Keras classifier on the train split, tracked in MLflow."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import mlflow
import tensorflow as tf
from mlflow.keras import MlflowCallback
from zenml import ArtifactConfig, log_metadata, step
from zenml.config.cache_policy import CachePolicy
from zenml.enums import ArtifactType
from zenml.integrations.tensorflow.materializers.keras_materializer import (
    KerasMaterializer,
)

from clearsight.dataset import DatasetManifest
from clearsight.models import build_model
from clearsight.names import ArtifactName
from clearsight.preprocess import augmentation_layers
from steps.training.data import split_dataset

logger = logging.getLogger(__name__)


class _EpochLogger(tf.keras.callbacks.Callback):
    """Log one line per epoch through the step logger (visible in the dashboard)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        values = ", ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
        logger.info("epoch %d: %s", epoch + 1, values)


@step(
    experiment_tracker=True,
    output_materializers={ArtifactName.MODEL: KerasMaterializer},
    # A re-ingested dataset with the same content is a new artifact version with
    # the same content hash: compare content, not ids, so training is reused.
    cache_policy=CachePolicy(include_artifact_ids=False),
)
def train_model(
    dataset: DatasetManifest,
    epochs: int = 40,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    image_size: int = 32,
    architecture: str = "small_cnn",
    pretrained_weights: str | None = None,
    patience: int = 8,
    augmentation: dict[str, Any] | None = None,
    seed: int = 42,
) -> Annotated[
    tf.keras.Model,
    ArtifactConfig(name=ArtifactName.MODEL, artifact_type=ArtifactType.MODEL),
]:
    """Train on the train split with early stopping on the val split.

    Args:
        dataset: The versioned dataset manifest.
        epochs: Maximum number of epochs.
        batch_size: Images per batch.
        learning_rate: Adam learning rate.
        image_size: Input side in pixels; images are resized to it.
        architecture: ``small_cnn``, ``efficientnet_b0`` or ``mobilenet_v2``.
        pretrained_weights: Local weights file for a known backbone.
        patience: Epochs without val-loss improvement before stopping; the best
            weights are restored.
        augmentation: Options of :func:`clearsight.preprocess.augmentation_layers`.
        seed: Seed for initialisation and shuffling.

    Returns:
        The trained Keras model, outputting class probabilities.
    """
    sizes = dataset.split_sizes()
    if sizes["train"] == 0 or sizes["val"] == 0:
        raise ValueError(
            f"The dataset needs images in both train and val splits; got {sizes}. "
            "Add images or check the folder layout."
        )
    augment = augmentation_layers(**(augmentation or {}), seed=seed)
    train, _ = split_dataset(
        dataset,
        "train",
        image_size=image_size,
        batch_size=batch_size,
        training=True,
        augment=augment,
        seed=seed,
    )
    val, _ = split_dataset(dataset, "val", image_size=image_size, batch_size=batch_size)

    model = build_model(
        len(dataset.classes),
        image_size=image_size,
        architecture=architecture,
        pretrained_weights=pretrained_weights,
        seed=seed,
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    params = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "image_size": image_size,
        "architecture": architecture,
        "pretrained_weights": pretrained_weights or "none",
        "patience": patience,
        "seed": seed,
        "num_classes": len(dataset.classes),
        "classes": ",".join(dataset.classes),
        "dataset_fingerprint": dataset.fingerprint,
        **{f"{split}_images": n for split, n in sizes.items()},
        **{f"augmentation_{k}": v for k, v in (augmentation or {}).items()},
    }
    mlflow.log_params(params)
    mlflow.set_tag("dataset_fingerprint", dataset.fingerprint)
    logger.info(
        "Training %s on %d images, %d classes.",
        architecture,
        sizes["train"],
        len(dataset.classes),
    )
    history = model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles the train split
        callbacks=[
            tf.keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            ),
            MlflowCallback(log_every_epoch=True),
            _EpochLogger(),
        ],
    )
    best = min(
        range(len(history.history["val_loss"])),
        key=history.history["val_loss"].__getitem__,
    )
    summary = {
        "epochs_run": len(history.history["val_loss"]),
        "best_epoch": best + 1,
        "best_val_loss": float(history.history["val_loss"][best]),
        "best_val_accuracy": float(history.history["val_accuracy"][best]),
    }
    mlflow.log_metrics(summary)
    log_metadata(metadata=summary, artifact_name=ArtifactName.MODEL, infer_artifact=True)
    logger.info(
        "Best epoch %d of %d: val_accuracy=%.4f",
        best + 1,
        summary["epochs_run"],
        summary["best_val_accuracy"],
    )
    return model
