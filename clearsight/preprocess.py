"""Model inputs for training and serving, from the platform's single decoder.

:func:`preprocess_batch` (serving, the gate, the MLflow input example) and the
tf.data pipeline of :func:`make_dataset` (training) both call
:func:`clearsight.decode.decode`: EXIF orientation, transparency on the
configured background, bit depths, DCT-scaled JPEG decoding and antialiased
resizing to ``image_size x image_size``, scaled to [0, 1]. A model never sees
inputs prepared two different ways.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from clearsight.decode import CHANNELS, DEFAULT_OPTIONS, DecodeOptions, decode, decode_batch


def preprocess_image(
    image_bytes: tf.Tensor, image_size: int, options: DecodeOptions = DEFAULT_OPTIONS
) -> tf.Tensor:
    """Decode, resize and normalise one encoded image inside a TensorFlow graph.

    Args:
        image_bytes: A scalar string tensor holding the file's bytes (any
            format :mod:`clearsight.decode` accepts).
        image_size: Output height and width in pixels.
        options: Background colour and high-bit-depth rule.

    Returns:
        A ``float32`` tensor of shape ``(image_size, image_size, 3)`` in [0, 1].

    Raises:
        tf.errors.InvalidArgumentError: When the bytes are not a usable image
            (the decoder's message is inside).
    """

    def _decode(data: bytes | np.ndarray) -> np.ndarray:
        # Graph mode passes bytes, eager mode a 0-d object array holding them.
        raw = data.item() if isinstance(data, np.ndarray) else data
        return decode(raw, size=image_size, options=options).pixels

    image = tf.numpy_function(_decode, [image_bytes], tf.float32, stateful=False)
    image.set_shape((image_size, image_size, CHANNELS))
    return image


def preprocess_batch(
    images: Sequence[bytes], image_size: int, options: DecodeOptions = DEFAULT_OPTIONS
) -> np.ndarray:
    """Decode a list of encoded images into one model input batch.

    Returns:
        A ``float32`` array of shape ``(n, image_size, image_size, 3)`` in [0, 1].

    Raises:
        clearsight.decode.InvalidImageError: For the first unusable image.
    """
    return decode_batch(images, image_size, options=options)


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
    options: DecodeOptions = DEFAULT_OPTIONS,
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
        lambda data, label: (preprocess_image(data, image_size, options), label),
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
