"""Fit a Keras classifier on the train split, tracked in MLflow."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Annotated

import mlflow
import tensorflow as tf
from mlflow.keras import MlflowCallback
from zenml import ArtifactConfig, log_metadata, step
from zenml.config.cache_policy import CachePolicy
from zenml.enums import ArtifactType
from zenml.integrations.tensorflow.materializers.keras_materializer import (
    KerasMaterializer,
)

from clearsight.config import RUN_CONF_ENV, TrainingParameters, with_run_overrides
from clearsight.dataset import DatasetManifest
from clearsight.imbalance import class_weights, imbalance_ratio
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
    output_materializers={ArtifactName.TRAINED_MODEL: KerasMaterializer},
    # A re-ingested dataset with the same content is a new artifact version with
    # the same content hash: compare content, not ids, so training is reused.
    cache_policy=CachePolicy(include_artifact_ids=False),
)
def train_model(
    dataset: DatasetManifest,
    hyperparameters: TrainingParameters,
) -> Annotated[
    tf.keras.Model,
    ArtifactConfig(name=ArtifactName.TRAINED_MODEL, artifact_type=ArtifactType.MODEL),
]:
    """Train on the train split with early stopping on the val split.

    Args:
        dataset: The versioned dataset manifest.
        hyperparameters: Epochs, batch size, learning rate, image size,
            architecture, pretrained weights, patience, augmentation, seed.
            One run may override them through ``CLEARSIGHT_RUN_CONF`` (a JSON
            object; Airflow's ``dags trigger --conf`` sets it).

    Returns:
        The trained, uncalibrated Keras model, outputting class probabilities.
    """
    hp, overrides = with_run_overrides(hyperparameters, os.environ.get(RUN_CONF_ENV))
    if overrides:
        logger.info("This run's overrides (%s): %s", RUN_CONF_ENV, overrides)
        mlflow.set_tag("run_overrides", json.dumps(overrides, sort_keys=True))
    sizes = dataset.split_sizes()
    if sizes["train"] == 0 or sizes["val"] == 0:
        raise ValueError(
            f"The dataset needs images in both train and val splits; got {sizes}. "
            "Add images or check the folder layout."
        )
    augment = augmentation_layers(**hp.augmentation.model_dump(), seed=hp.seed)
    train, _ = split_dataset(
        dataset,
        "train",
        image_size=hp.image_size,
        batch_size=hp.batch_size,
        training=True,
        augment=augment,
        seed=hp.seed,
    )
    val, _ = split_dataset(dataset, "val", image_size=hp.image_size, batch_size=hp.batch_size)

    model = build_model(
        len(dataset.classes),
        image_size=hp.image_size,
        architecture=hp.architecture,
        pretrained_weights=hp.pretrained_weights,
        seed=hp.seed,
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(hp.learning_rate),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    index = dataset.label_index()
    train_counts = Counter(index[r.label] for r in dataset.split("train"))
    weights = class_weights(
        {i: train_counts.get(i, 0) for i in range(len(dataset.classes))},
        hp.class_weighting,
        hp.class_weight_ratio,
    )
    if weights:
        logger.info(
            "Class weights (train imbalance %.1f): %s",
            imbalance_ratio(train_counts),
            {dataset.classes[i]: round(w, 3) for i, w in weights.items()},
        )
    params = {
        **hp.flat(),
        "class_weights": json.dumps(
            {dataset.classes[i]: round(w, 4) for i, w in weights.items()} if weights else None
        ),
        "num_classes": len(dataset.classes),
        "classes": ",".join(dataset.classes),
        "dataset_fingerprint": dataset.fingerprint,
        **{f"{split}_images": n for split, n in sizes.items()},
    }
    mlflow.log_params(params)
    mlflow.set_tag("dataset_fingerprint", dataset.fingerprint)
    logger.info(
        "Training %s on %d images, %d classes.",
        hp.architecture.value,
        sizes["train"],
        len(dataset.classes),
    )
    history = model.fit(
        train,
        validation_data=val,
        epochs=hp.epochs,
        verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles the train split
        class_weight=weights,
        callbacks=[
            tf.keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=hp.patience, restore_best_weights=True
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
    log_metadata(metadata=summary, artifact_name=ArtifactName.TRAINED_MODEL, infer_artifact=True)
    logger.info(
        "Best epoch %d of %d: val_accuracy=%.4f",
        best + 1,
        summary["epochs_run"],
        summary["best_val_accuracy"],
    )
    return model
