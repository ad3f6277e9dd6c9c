"""The one preprocessing function that training and serving share.

``preprocess_image`` turns encoded JPEG/PNG bytes into the model's input
tensor: decode to RGB, resize with antialiasing, scale to [0, 1]. The tf.data
training pipeline maps it over the dataset, and the serving wrapper calls it
on each request, so a model never sees inputs prepared two different ways.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

CHANNELS = 3


def preprocess_image(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decode, resize and normalise one encoded image.

    Args:
        image_bytes: A scalar string tensor holding JPEG or PNG bytes.
        image_size: Output height and width in pixels.

    Returns:
        A ``float32`` tensor of shape ``(image_size, image_size, 3)`` in [0, 1].
    """
    image = tf.io.decode_image(image_bytes, channels=CHANNELS, expand_animations=False)
    image = tf.image.resize(image, [image_size, image_size], antialias=True)
    image = tf.clip_by_value(image / 255.0, 0.0, 1.0)
    image.set_shape((image_size, image_size, CHANNELS))
    return image


def preprocess_batch(images: Sequence[bytes], image_size: int) -> np.ndarray:
    """Apply :func:`preprocess_image` to a list of encoded images.

    Returns:
        A ``float32`` array of shape ``(n, image_size, image_size, 3)``.
    """
    tensors = [preprocess_image(tf.constant(data), image_size) for data in images]
    if not tensors:
        return np.zeros((0, image_size, image_size, CHANNELS), dtype=np.float32)
    return tf.stack(tensors).numpy()


def augmentation_layers(
    rotation: float = 0.05,
    translation: float = 0.1,
    zoom: float = 0.1,
    flip: bool = False,
    contrast: float = 0.0,
    seed: int | None = None,
) -> tf.keras.Sequential:
    """Light, label-preserving augmentation for the training split.

    Flips are off by default: they change the meaning of digits and letters;
    turn them on for skin lesions or plant photos.
    """
    layers: list[tf.keras.layers.Layer] = []
    if flip:
        layers.append(tf.keras.layers.RandomFlip("horizontal_and_vertical", seed=seed))
    if rotation:
        layers.append(tf.keras.layers.RandomRotation(rotation, fill_mode="nearest", seed=seed))
    if translation:
        layers.append(
            tf.keras.layers.RandomTranslation(
                translation, translation, fill_mode="nearest", seed=seed
            )
        )
    if zoom:
        layers.append(tf.keras.layers.RandomZoom(zoom, fill_mode="nearest", seed=seed))
    if contrast:
        layers.append(tf.keras.layers.RandomContrast(contrast, seed=seed))
    return tf.keras.Sequential(layers, name="augmentation")


def make_dataset(
    items: Sequence[tuple[str, int]],
    read_bytes: Callable[[str], bytes],
    *,
    image_size: int,
    batch_size: int,
    training: bool,
    augment: tf.keras.Sequential | None = None,
    seed: int = 42,
) -> tf.data.Dataset:
    """Build a batched ``tf.data`` pipeline from (uri, label index) pairs.

    Bytes are read lazily through ``read_bytes`` (local disk or S3 alike),
    decoded with :func:`preprocess_image`, cached after decoding, shuffled and
    augmented for training only, and prefetched.
    """
    uris = [uri for uri, _ in items]
    labels = [label for _, label in items]

    def generate():
        for uri, label in zip(uris, labels, strict=True):
            yield read_bytes(uri), label

    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec(shape=(), dtype=tf.string),
            tf.TensorSpec(shape=(), dtype=tf.int32),
        ),
    )
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(items)))
    dataset = dataset.map(
        lambda data, label: (preprocess_image(data, image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    if training:
        dataset = dataset.shuffle(max(len(items), 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if training and augment is not None and augment.layers:
        dataset = dataset.map(
            lambda x, y: (augment(x, training=True), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
