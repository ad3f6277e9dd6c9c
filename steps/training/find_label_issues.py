"""Rank likely label errors of the training data and queue them for an expert review."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import tensorflow as tf
from zenml import get_step_context, log_metadata, step

from clearsight.catalog import display_url, resolve_catalog_url
from clearsight.config import LabelReviewParameters
from clearsight.dataset import DatasetManifest
from clearsight.label_issues import LabelIssueError, rank_label_issues
from clearsight.models import embedding_model
from clearsight.preprocess import preprocess_batch
from clearsight.review import ReviewStore
from steps.training.data import read_bytes

logger = logging.getLogger(__name__)


def _embeddings(model: tf.keras.Model, uris: list[str], dataset: DatasetManifest) -> np.ndarray:
    embed = embedding_model(model)
    size = int(model.input_shape[1])
    batches = [
        embed.predict(
            preprocess_batch([read_bytes(u) for u in uris[i : i + 128]], size, dataset.decoding),
            verbose=0,
        )
        for i in range(0, len(uris), 128)
    ]
    return np.concatenate(batches).astype(np.float64)


@step(enable_cache=False)  # the queue lives in a database, outside the artifact store
def find_label_issues(
    model: tf.keras.Model,
    dataset: DatasetManifest,
    registered_model: dict[str, Any],
    label_review: LabelReviewParameters,
) -> None:
    """Queue the images whose labels are probably wrong, for the review app.

    Embeddings of the trained model feed a cross-validated logistic regression
    and ``cleanlab`` (``clearsight.label_issues``); the top suspects enter the
    review queue as ``possible label error``. A queue problem is logged as an
    error and never fails the training run; nor does a dataset too small to check.

    Args:
        model: The trained (calibrated) model; its embedding layer is used.
        dataset: The dataset it was trained on (images in the artifact store).
        registered_model: Output of the registration step (MLflow coordinates).
        label_review: Whether to check, how many suspects, folds, splits, database.
    """
    if not label_review.enabled:
        logger.info("Label-error review disabled (label_review.enabled: false).")
        return
    records = [r for split in label_review.splits for r in dataset.split(split)]
    index = dataset.label_index()
    labels = np.array([index[r.label] for r in records], dtype=np.int64)
    try:
        if not records:
            raise LabelIssueError(f"The splits {label_review.splits} have no image.")
        suspects = rank_label_issues(
            _embeddings(model, [r.uri for r in records], dataset),
            labels,
            num_classes=len(dataset.classes),
            folds=label_review.folds,
            max_suspects=label_review.max_suspects,
            share=label_review.share,
        )
    except LabelIssueError as error:
        logger.warning("Label-error review skipped: %s", error)
        log_metadata(metadata={"label_suspects": 0, "label_review_skipped": str(error)})
        return
    version = get_step_context().model_version
    model_info = {
        "model_name": registered_model.get("registered_model_name", ""),
        "model_version": str(version.number) if version else "",
        "registered_version": str(registered_model.get("registered_model_version", "")),
        "mlflow_run_id": registered_model.get("mlflow_run_id", ""),
    }
    queued, where = 0, "the review queue"
    try:
        url = resolve_catalog_url(label_review.catalog_url)
        where = display_url(url)
        store = ReviewStore(url)
        try:
            for suspect in suspects:
                _, added = store.keep_label_issue(
                    records[suspect.index],
                    given_label=dataset.classes[suspect.given_label],
                    probabilities=dict(zip(dataset.classes, suspect.probabilities, strict=True)),
                    model=model_info,
                )
                queued += added
        finally:
            store.close()
    except Exception as error:  # noqa: BLE001 - a queue problem never fails the training run
        logger.error(
            "Could not queue the label-error suspects at %s: %s: %s",
            where,
            error.__class__.__name__,
            error,
        )
    log_metadata(
        metadata={
            "label_checked_images": len(records),
            "label_suspects": len(suspects),
            "label_suspects_queued": queued,
        }
    )
    logger.info(
        "Label-error review: %d suspects among %d images (%s), %d newly queued at %s.",
        len(suspects),
        len(records),
        "+".join(label_review.splits),
        queued,
        where,
    )
