"""Per-image numeric features, so that tabular tools (Evidently) can watch images.

Each image becomes one row: pixel statistics (per-channel mean and standard
deviation, brightness, contrast, sharpness as the variance of the Laplacian),
geometry (width, height, aspect ratio), file size, a few principal components
of the model's embedding (PCA fitted on the reference data), and the target,
the predicted label and the confidence. The promotion gate compares such
tables; the served model logs the same features for every answered image
(:class:`EmbeddingProjection` is the reference PCA it keeps), which the
monitor compares with the gate's reference table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy.ndimage import laplace
from sklearn.decomposition import PCA

from clearsight.decode import DEFAULT_OPTIONS, DecodeOptions, decode, read_header

PIXEL_COLUMNS = [
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "brightness",
    "contrast",
    "sharpness",
    "width",
    "height",
    "aspect_ratio",
    "file_size",
]
TARGET = "target"
PREDICTION = "prediction"
CONFIDENCE = "confidence"
DEFAULT_EMBEDDING_COMPONENTS = 5


#: Pictures with a side longer than this are measured decoded to ``FEATURE_SIZE`` x
#: ``FEATURE_SIZE`` pixels (JPEGs DCT-scaled first), so a 12-megapixel photo costs
#: about what a thumbnail does; smaller ones at their own size.
FEATURE_SIZE = 256


def pixel_features(data: bytes, options: DecodeOptions = DEFAULT_OPTIONS) -> dict[str, float]:
    """Pixel statistics of one encoded image, from the model's own decoder.

    Args:
        data: The file's bytes (any format :mod:`clearsight.decode` accepts).
        options: The model's decoding rules (background, bit depth), so a
            16-bit X-ray or a transparent PNG is measured as the model sees it.

    Returns:
        ``PIXEL_COLUMNS``: means, standard deviations, brightness (Rec. 601
        luma), contrast and sharpness (variance of the Laplacian) on a [0, 1]
        scale, measured on the picture as decoded, or decoded to
        ``FEATURE_SIZE`` x ``FEATURE_SIZE`` pixels when a side is longer
        (the gate's reference tables and the prediction log use this same
        function, so they agree); width and
        height in pixels of the full picture after the EXIF orientation;
        aspect ratio; file size in bytes.

    Raises:
        clearsight.decode.InvalidImageError: When the bytes are not a usable image.
    """
    header = read_header(data)
    large = max(header.width, header.height) > FEATURE_SIZE
    decoded = decode(data, size=FEATURE_SIZE if large else None, options=options)
    width, height = decoded.header.width, decoded.header.height
    rgb = decoded.pixels.astype(np.float64)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    means = rgb.mean(axis=(0, 1))
    stds = rgb.std(axis=(0, 1))
    return {
        "mean_r": means[0],
        "mean_g": means[1],
        "mean_b": means[2],
        "std_r": stds[0],
        "std_g": stds[1],
        "std_b": stds[2],
        "brightness": float(luminance.mean()),
        "contrast": float(luminance.std()),
        "sharpness": float(laplace(luminance).var()),
        "width": float(width),
        "height": float(height),
        "aspect_ratio": width / height,
        "file_size": float(len(data)),
    }


def embedding_columns(components: int) -> list[str]:
    """Names of the embedding principal-component columns."""
    return [f"embedding_{i}" for i in range(components)]


def fit_embedding_pca(embeddings: np.ndarray, components: int) -> PCA:
    """Fit the PCA that reduces embeddings, on the reference data only."""
    n = min(components, embeddings.shape[0], embeddings.shape[1])
    return PCA(n_components=n, random_state=0).fit(embeddings)


class EmbeddingProjection(BaseModel):
    """The reference PCA of a model's embeddings, kept with the model for monitoring.

    The promotion gate fits it on the train split's embeddings
    (:func:`fit_embedding_pca`); the served model projects each answered
    image's embedding with it, so the prediction log's ``embedding_i``
    columns are comparable with the gate's reference table. Stored as JSON
    (``monitoring.json`` beside a served model).

    Attributes:
        mean: The embedding mean, length ``d`` (the embedding's width).
        components: The principal axes, ``k`` rows of length ``d``
            (sklearn's ``PCA.components_``).
    """

    model_config = ConfigDict(frozen=True)

    mean: list[float]
    components: list[list[float]]

    @classmethod
    def from_pca(cls, pca: PCA) -> EmbeddingProjection:
        """Keep what :meth:`project` needs of a fitted (non-whitened) sklearn PCA."""
        if pca.whiten:
            raise ValueError("a whitened PCA is not supported: fit it with whiten=False")
        return cls(
            mean=[float(v) for v in pca.mean_],
            components=[[float(v) for v in row] for row in pca.components_],
        )

    @property
    def columns(self) -> list[str]:
        """The feature names of the projection: ``embedding_0`` ... ``embedding_{k-1}``."""
        return embedding_columns(len(self.components))

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Project embeddings as ``PCA.transform`` does: ``(x - mean) @ components.T``.

        Args:
            embeddings: ``(n, d)`` floats, the model's penultimate-layer output.

        Returns:
            ``(n, k)`` float64.

        Raises:
            ValueError: When the embedding width is not ``d``.
        """
        values = np.asarray(embeddings, dtype=np.float64)
        mean = np.asarray(self.mean)
        if values.ndim != 2 or values.shape[1] != mean.shape[0]:
            raise ValueError(
                f"embeddings of shape {values.shape} do not fit a projection of width "
                f"{mean.shape[0]}"
            )
        return (values - mean) @ np.asarray(self.components).T

    def project_rows(self, embeddings: np.ndarray) -> list[dict[str, float]]:
        """:meth:`project` as one ``{embedding_i: value}`` dict per image."""
        names = self.columns
        return [dict(zip(names, map(float, row), strict=True)) for row in self.project(embeddings)]


def feature_table(
    images: Sequence[bytes],
    targets: Sequence[int] | None,
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    pca: PCA,
    options: DecodeOptions = DEFAULT_OPTIONS,
) -> pd.DataFrame:
    """Assemble the feature rows of a set of images.

    Args:
        images: Encoded images.
        targets: True label indices, or ``None`` for unlabelled data.
        probabilities: The model's (calibrated) class probabilities, ``(n, k)``.
        embeddings: The model's penultimate-layer output, ``(n, d)``.
        pca: A PCA fitted on the reference embeddings.
        options: The model's decoding rules, for the pixel statistics.

    Returns:
        One row per image: pixel columns, ``embedding_i`` columns, and
        ``prediction`` and ``confidence`` (and ``target`` when labelled).
    """
    rows = [pixel_features(data, options) for data in images]
    table = pd.DataFrame(rows, columns=PIXEL_COLUMNS)
    reduced = pca.transform(embeddings) if len(images) else np.zeros((0, pca.n_components_))
    for i, column in enumerate(embedding_columns(pca.n_components_)):
        table[column] = reduced[:, i]
    if targets is not None:
        table[TARGET] = np.asarray(targets, dtype=np.int64)
    table[PREDICTION] = probabilities.argmax(axis=1).astype(np.int64)
    table[CONFIDENCE] = probabilities.max(axis=1)
    return table


def numeric_feature_columns(table: pd.DataFrame) -> list[str]:
    """The columns a drift check should compare (everything but labels)."""
    return [c for c in table.columns if c not in (TARGET, PREDICTION)]


def read_all(uris: Sequence[str], read_bytes: Callable[[str], bytes]) -> list[bytes]:
    """Read many images through one reader."""
    return [read_bytes(uri) for uri in uris]
