"""tf.data input pipelines for a dataset manifest, read from the artifact store."""

from __future__ import annotations

import tensorflow as tf
from zenml.io import fileio

from clearsight.dataset import DatasetManifest
from clearsight.preprocess import make_dataset


def read_bytes(uri: str) -> bytes:
    """Read one stored image through ZenML's file I/O (local disk or S3)."""
    with fileio.open(uri, "rb") as handle:
        return handle.read()


def split_dataset(
    dataset: DatasetManifest,
    split: str,
    *,
    image_size: int,
    batch_size: int,
    training: bool = False,
    augment: tf.keras.Sequential | None = None,
    seed: int = 42,
) -> tuple[tf.data.Dataset, list[int]]:
    """Return the batched tf.data pipeline of one split and its label indices."""
    index = dataset.label_index()
    records = dataset.split(split)
    items = [(r.uri, index[r.label]) for r in records]
    pipeline = make_dataset(
        items,
        read_bytes,
        image_size=image_size,
        batch_size=batch_size,
        training=training,
        augment=augment,
        seed=seed,
        options=dataset.decoding,
    )
    return pipeline, [label for _, label in items]
