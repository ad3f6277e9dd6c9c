"""The train pipeline: fit, evaluate and register a classifier."""

from __future__ import annotations

from typing import Any

from zenml import pipeline
from zenml.client import Client

from clearsight.names import ArtifactName, PipelineName
from steps.training import evaluate_model, register_model, train_model


@pipeline(name=PipelineName.TRAIN)
def training_pipeline(
    dataset_version: str | None = None,
    epochs: int = 40,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    image_size: int = 32,
    architecture: str = "small_cnn",
    pretrained_weights: str | None = None,
    patience: int = 8,
    augmentation: dict[str, Any] | None = None,
    seed: int = 42,
) -> None:
    """Train on a dataset version, evaluate on its test split, register the model.

    Args:
        dataset_version: Version of the ``dataset`` artifact; the latest if empty.
        epochs: Maximum number of epochs.
        batch_size: Images per batch.
        learning_rate: Adam learning rate.
        image_size: Input side in pixels.
        architecture: ``small_cnn``, ``efficientnet_b0`` or ``mobilenet_v2``.
        pretrained_weights: Local weights file for a known backbone.
        patience: Early-stopping patience in epochs.
        augmentation: Augmentation options for the training split.
        seed: Random seed.
    """
    dataset = Client().get_artifact_version(ArtifactName.DATASET, version=dataset_version)
    model = train_model(
        dataset=dataset,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        image_size=image_size,
        architecture=architecture,
        pretrained_weights=pretrained_weights,
        patience=patience,
        augmentation=augmentation,
        seed=seed,
    )
    test_metrics, _ = evaluate_model(model=model, dataset=dataset)
    register_model(model=model, dataset=dataset, test_metrics=test_metrics)
