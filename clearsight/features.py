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


#: Columns of :func:`picture_statistics` (the rest of ``PIXEL_COLUMNS`` is :func:`geometry`).
STATISTICS_COLUMNS = PIXEL_COLUMNS[:9]
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights


def picture_statistics(pixels: np.ndarray) -> dict[str, float]:
    """Statistics of one decoded picture, as the model sees it.

    Args:
        pixels: ``(h, w, 3)`` floats in [0, 1] (the model's input picture,
            :func:`clearsight.decode.decode` with ``size`` the model's side).

    Returns:
        ``STATISTICS_COLUMNS``: per-channel means and standard deviations,
        brightness and contrast (mean and standard deviation of the Rec. 601
        luma) and sharpness (variance of the luma's Laplacian), all on the
        [0, 1] scale.
    """
    rgb = np.asarray(pixels, dtype=np.float64)
    luminance = rgb @ _LUMA
    means = rgb.mean(axis=(0, 1))
    stds = rgb.std(axis=(0, 1))
    return {
        "mean_r": float(means[0]),
        "mean_g": float(means[1]),
        "mean_b": float(means[2]),
        "std_r": float(stds[0]),
        "std_g": float(stds[1]),
        "std_b": float(stds[2]),
        "brightness": float(luminance.mean()),
        "contrast": float(luminance.std()),
        "sharpness": float(laplace(luminance).var()),
    }


def geometry(data: bytes) -> dict[str, float]:
    """Width and height in pixels (after the EXIF orientation), aspect ratio and file size.

    Reads only the file's header (:func:`clearsight.decode.read_header`).

    Raises:
        clearsight.decode.InvalidImageError: When the header is not a usable image's.
    """
    header = read_header(data)
    return {
        "width": float(header.width),
        "height": float(header.height),
        "aspect_ratio": header.width / header.height,
        "file_size": float(len(data)),
    }


def pixel_features(
    data: bytes, options: DecodeOptions = DEFAULT_OPTIONS, size: int | None = None
) -> dict[str, float]:
    """``PIXEL_COLUMNS`` of one encoded image, from the model's own decoder.

    The statistics are those of the picture the model sees: decoded by the
    model's rules and, with ``size``, to its input side (the gate's reference
    tables and the served model's prediction log both pass the model's input
    side, so they agree; the server measures the very batch it answered).

    Args:
        data: The file's bytes (any format :mod:`clearsight.decode` accepts).
        options: The model's decoding rules (background, bit depth), so a
            16-bit X-ray or a transparent PNG is measured as the model sees it.
        size: The model's input side in pixels; None: the full picture.

    Returns:
        :func:`picture_statistics` and :func:`geometry`, as floats.

    Raises:
        clearsight.decode.InvalidImageError: When the bytes are not a usable image.
    """
    decoded = decode(data, size=size, options=options)
    return picture_statistics(decoded.pixels) | geometry(data)


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
    size: int | None = None,
) -> pd.DataFrame:
    """Assemble the feature rows of a set of images.

    Args:
        images: Encoded images.
        targets: True label indices, or ``None`` for unlabelled data.
        probabilities: The model's (calibrated) class probabilities, ``(n, k)``.
        embeddings: The model's penultimate-layer output, ``(n, d)``.
        pca: A PCA fitted on the reference embeddings.
        options: The model's decoding rules, for the pixel statistics.
        size: The model's input side: the statistics are those of the
            picture it sees (:func:`pixel_features`); None: full pictures.

    Returns:
        One row per image: pixel columns, ``embedding_i`` columns, and
        ``prediction`` and ``confidence`` (and ``target`` when labelled).
    """
    rows = [pixel_features(data, options, size) for data in images]
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
