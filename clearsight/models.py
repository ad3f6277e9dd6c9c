"""Keras classifiers: a small CNN from scratch, or a known backbone.

Every model takes the output of :func:`clearsight.preprocess.preprocess_image`
(RGB in [0, 1]) and ends in a ``logits`` dense layer followed by a softmax
named ``probabilities``, so later stages (temperature scaling, embeddings) can
reach the logits and the penultimate layer by name.
"""

from __future__ import annotations

import re
import warnings
from enum import StrEnum
from pathlib import Path

import tensorflow as tf

from clearsight.errors import ClearsightError
from clearsight.preprocess import CHANNELS


class Architecture(StrEnum):
    """Model architectures the training step can build."""

    SMALL_CNN = "small_cnn"
    EFFICIENTNET_B0 = "efficientnet_b0"
    MOBILENET_V2 = "mobilenet_v2"


EMBEDDING_LAYER = "embedding"


class PretrainedWeightsError(ClearsightError, ValueError):
    """A pretrained weights file does not fit the chosen backbone."""


class PretrainedWeightsNotFoundError(ClearsightError, FileNotFoundError):
    """The pretrained weights file does not exist."""


# Keras 3 warns, and loads nothing into the layers concerned, when a file lacks
# the groups of nested layers: a partial load that must not pass silently.
_PARTIAL_LOAD_WARNING = "freshly-initialized weights"


def _small_cnn(inputs: tf.Tensor) -> tf.Tensor:
    x = inputs
    for filters in (32, 64):
        for _ in range(2):
            x = tf.keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            # A fast-moving average: small datasets give few steps per epoch.
            x = tf.keras.layers.BatchNormalization(momentum=0.9)(x)
            x = tf.keras.layers.ReLU()(x)
        x = tf.keras.layers.MaxPooling2D()(x)
        x = tf.keras.layers.Dropout(0.2)(x)
    x = tf.keras.layers.Conv2D(128, 3, padding="same", use_bias=False)(x)
    x = tf.keras.layers.BatchNormalization(momentum=0.9)(x)
    x = tf.keras.layers.ReLU()(x)
    return tf.keras.layers.GlobalAveragePooling2D()(x)


def _backbone(
    architecture: Architecture, inputs: tf.Tensor, image_size: int, weights: str | None
) -> tf.Tensor:
    if weights is not None and not Path(weights).expanduser().is_file():
        raise PretrainedWeightsNotFoundError(
            f"Pretrained weights file {weights} not found. Give a local .h5/.weights.h5 "
            "file (nothing is downloaded), or set pretrained_weights to null."
        )
    shape = (image_size, image_size, CHANNELS)
    if architecture is Architecture.EFFICIENTNET_B0:
        # EfficientNet rescales internally and expects pixels in [0, 255].
        x = tf.keras.layers.Rescaling(255.0)(inputs)
        base = tf.keras.applications.EfficientNetB0(
            include_top=False, weights=None, input_shape=shape
        )
    else:
        # MobileNetV2 expects pixels in [-1, 1].
        x = tf.keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
        base = tf.keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=shape)
    if weights is not None:
        _load_backbone_weights(base, Path(weights).expanduser().resolve(), architecture, shape)
    return tf.keras.layers.GlobalAveragePooling2D()(base(x))


def _load_backbone_weights(
    base: tf.keras.Model, path: Path, architecture: Architecture, shape: tuple[int, int, int]
) -> None:
    """Load every weight of ``base`` from ``path``, or fail saying why.

    Keras raises on a missing or mis-shaped variable when ``skip_mismatch`` is
    off; a file that lacks whole nested groups only triggers a warning, which
    is turned into the same error here.

    Raises:
        PretrainedWeightsError: The file is not a Keras weights file, or its
            weights do not match the architecture.
    """
    expected = (
        f"the weights of Keras' {base.name} ({architecture.value}) without its "
        f"classification head (include_top=False), input {shape[0]}x{shape[1]}x{shape[2]}"
    )
    advice = (
        "Give a file saved from the same architecture, e.g. "
        f"tf.keras.applications.{_keras_class(architecture)}"
        "(include_top=False, weights=None).save_weights('backbone.weights.h5') after "
        "loading pretrained weights into it, or Keras' official *_no_top.h5 file for this "
        "architecture; or set pretrained_weights to null to train from scratch."
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            base.load_weights(str(path))
        except (ValueError, OSError, KeyError, TypeError) as error:
            # Keep Keras' summary and first example, not the tensor values it prints.
            reason = " ".join(str(error).split())
            reason = re.split(r" Target variable:| List of objects", reason)[0][:400]
            raise PretrainedWeightsError(
                f"The pretrained weights in {path} do not fit the {architecture.value} "
                f"backbone: expected {expected}. Keras says: {reason}. {advice}"
            ) from error
    partial = [w for w in caught if _PARTIAL_LOAD_WARNING in str(w.message)]
    for other in (w for w in caught if w not in partial):
        warnings.warn_explicit(other.message, other.category, other.filename, other.lineno)
    if partial:
        raise PretrainedWeightsError(
            f"The pretrained weights in {path} do not fit the {architecture.value} backbone: "
            f"expected {expected}, but {len(partial)} groups of layers are missing from the "
            f"file and would keep random weights (first: {str(partial[0].message)[:200]}). "
            f"{advice}"
        )


def _keras_class(architecture: Architecture) -> str:
    return {
        Architecture.EFFICIENTNET_B0: "EfficientNetB0",
        Architecture.MOBILENET_V2: "MobileNetV2",
    }[architecture]


def build_model(
    num_classes: int,
    *,
    image_size: int,
    architecture: str = Architecture.SMALL_CNN,
    pretrained_weights: str | None = None,
    dropout: float = 0.3,
    seed: int = 42,
) -> tf.keras.Model:
    """Build an uncompiled classifier.

    Args:
        num_classes: Number of output classes.
        image_size: Input height and width.
        architecture: One of :class:`Architecture`.
        pretrained_weights: Local weights file for a known backbone (no
            downloads happen); ignored by the small CNN.
        dropout: Dropout rate before the classification head.
        seed: Seed for weight initialisation.

    Returns:
        A Keras model mapping ``(n, size, size, 3)`` images to probabilities.

    Raises:
        PretrainedWeightsNotFoundError: ``pretrained_weights`` is not a file.
        PretrainedWeightsError: The file's weights do not fit the backbone (no
            partial or silent load).
    """
    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, got {num_classes}.")
    tf.keras.utils.set_random_seed(seed)
    arch = Architecture(architecture)
    inputs = tf.keras.Input(shape=(image_size, image_size, CHANNELS), name="image")
    if arch is Architecture.SMALL_CNN:
        features = _small_cnn(inputs)
    else:
        features = _backbone(arch, inputs, image_size, pretrained_weights)
    x = tf.keras.layers.Dense(128, activation="relu", name=EMBEDDING_LAYER)(features)
    x = tf.keras.layers.Dropout(dropout)(x)
    logits = tf.keras.layers.Dense(num_classes, name="logits")(x)
    outputs = tf.keras.layers.Softmax(name="probabilities")(logits)
    return tf.keras.Model(inputs, outputs, name=f"clearsight_{arch.value}")


TEMPERATURE_LAYER = "temperature"
LOGITS_LAYER = "logits"


def logits_model(model: tf.keras.Model) -> tf.keras.Model:
    """A view of ``model`` that outputs its logits (shares the weights)."""
    return tf.keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)


def embedding_model(model: tf.keras.Model) -> tf.keras.Model:
    """A view of ``model`` that outputs its penultimate (embedding) layer."""
    return tf.keras.Model(model.inputs, model.get_layer(EMBEDDING_LAYER).output)


def with_temperature(model: tf.keras.Model, temperature: float) -> tf.keras.Model:
    """Return the model with calibrated outputs: ``softmax(logits / temperature)``.

    The temperature is stored in the model itself, as the scale (1 / T) of a
    ``Rescaling`` layer named ``temperature``, so whoever loads the model gets
    calibrated probabilities with no extra file.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = model.get_layer(LOGITS_LAYER).output
    scaled = tf.keras.layers.Rescaling(1.0 / temperature, name=TEMPERATURE_LAYER)(logits)
    outputs = tf.keras.layers.Softmax(name="calibrated_probabilities")(scaled)
    return tf.keras.Model(model.inputs, outputs, name=model.name)


def model_temperature(model: tf.keras.Model) -> float:
    """The temperature a model was calibrated with (1.0 when it was not)."""
    try:
        layer = model.get_layer(TEMPERATURE_LAYER)
    except ValueError:
        return 1.0
    return float(1.0 / layer.scale)
