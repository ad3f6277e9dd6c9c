"""Turn images into feature tables that Evidently can compare."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import tensorflow as tf
from zenml import step

from clearsight.dataset import DatasetManifest, build_manifest
from clearsight.decode import DecodeOptions
from clearsight.features import (
    CONFIDENCE,
    DEFAULT_EMBEDDING_COMPONENTS,
    PREDICTION,
    EmbeddingProjection,
    feature_table,
    fit_embedding_pca,
    read_all,
)
from clearsight.models import embedding_model
from clearsight.names import ArtifactName
from clearsight.preprocess import preprocess_batch
from steps.training.data import read_bytes

logger = logging.getLogger(__name__)


def _predict(
    model: tf.keras.Model, images: list[bytes], options: DecodeOptions, batch_size: int = 128
):
    size = int(model.input_shape[1])
    probabilities, embeddings = [], []
    embed = embedding_model(model)
    for start in range(0, len(images), batch_size):
        batch = preprocess_batch(images[start : start + batch_size], size, options)
        probabilities.append(model.predict(batch, verbose=0))
        embeddings.append(embed.predict(batch, verbose=0))
    return np.concatenate(probabilities), np.concatenate(embeddings)


@step
def featurize(
    model: tf.keras.Model,
    dataset: DatasetManifest,
    current_data_dir: str | None = None,
    embedding_components: int = DEFAULT_EMBEDDING_COMPONENTS,
) -> tuple[
    Annotated[pd.DataFrame, ArtifactName.REFERENCE_FEATURES],
    Annotated[pd.DataFrame, ArtifactName.CURRENT_FEATURES],
    Annotated[pd.DataFrame, ArtifactName.DRIFT_FEATURES],
    Annotated[EmbeddingProjection, ArtifactName.EMBEDDING_PROJECTION],
]:
    """Feature tables of the train split, the test split and the data to check for drift.

    The reference table and the embedding projection are also what production
    monitoring compares live traffic with: the promote pipeline links them to
    the judged model version, the deployment serves the projection beside the
    model, and the monitor reads the reference table.

    Args:
        model: The calibrated challenger; predictions and embeddings come from it.
        dataset: The dataset the challenger was trained on.
        current_data_dir: A labelled folder of new images to check for drift
            against the training data; the dataset's test split when empty.
        embedding_components: PCA components of the embedding to keep.

    Returns:
        The reference (train), current (test) and drift tables: pixel
        statistics, embedding components, target, prediction, confidence;
        and the PCA of the train split's embeddings.
    """
    index = dataset.label_index()
    reference_records = dataset.split("train")
    reference_images = read_all([r.uri for r in reference_records], read_bytes)
    options = dataset.decoding
    size = int(model.input_shape[1])  # pixel statistics of the picture the model sees
    ref_probabilities, ref_embeddings = _predict(model, reference_images, options)
    pca = fit_embedding_pca(ref_embeddings, embedding_components)
    reference = feature_table(
        reference_images,
        [index[r.label] for r in reference_records],
        ref_probabilities,
        ref_embeddings,
        pca,
        options,
        size,
    )

    def table(records) -> pd.DataFrame:
        images = read_all([r.uri for r in records], read_bytes)
        probabilities, embeddings = _predict(model, images, options)
        return feature_table(
            images,
            [index[r.label] for r in records],
            probabilities,
            embeddings,
            pca,
            options,
            size,
        )

    current = table(dataset.split("test"))
    drift = current
    if current_data_dir:
        batch, report = build_manifest(Path(current_data_dir), decoding=options)
        unknown = sorted({r.label for r in batch.records} - set(index))
        if unknown:
            raise ValueError(
                f"{current_data_dir} has labels the model does not know: {unknown}. "
                f"Known classes: {dataset.classes}"
            )
        logger.info("Drift batch %s: %s", current_data_dir, report.summary())
        drift = table(batch.records)
    logger.info(
        "Feature rows: reference %d, test %d, drift check %d.",
        len(reference),
        len(current),
        len(drift),
    )
    return reference, current, drift, EmbeddingProjection.from_pca(pca)


@step
def score_champion(
    model: tf.keras.Model, dataset: DatasetManifest, current_features: pd.DataFrame
) -> Annotated[pd.DataFrame, ArtifactName.CHAMPION_FEATURES]:
    """The champion's predictions on the challenger's test split.

    Args:
        model: The current champion.
        dataset: The challenger's dataset; both models face the same test split.
        current_features: The challenger's test-split table.

    Returns:
        The same table with the champion's ``prediction`` and ``confidence``,
        so that one Evidently report can put the two models side by side.
    """
    records = dataset.split("test")
    images = read_all([r.uri for r in records], read_bytes)
    probabilities, _ = _predict(model, images, dataset.decoding)
    if probabilities.shape[1] != len(dataset.classes):
        raise ValueError(
            f"The champion predicts {probabilities.shape[1]} classes, the dataset has "
            f"{len(dataset.classes)}: they cannot be compared on the same test split."
        )
    table = current_features.copy()
    table[PREDICTION] = probabilities.argmax(axis=1).astype(np.int64)
    table[CONFIDENCE] = probabilities.max(axis=1)
    return table
