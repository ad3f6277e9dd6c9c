"""Rank likely label errors of a labelled image set with confident learning.

Out-of-sample class probabilities come from a cross-validated logistic
regression on the trained model's embeddings (cheap: no network is re-trained);
``cleanlab`` then flags the images whose given label is unlikely under those
probabilities and ranks them by self-confidence, the out-of-sample probability
of the given label (lowest first).

Reference: C. G. Northcutt, L. Jiang, I. L. Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", Journal of Artificial Intelligence
Research 70 (2021), 1373-1411; implemented by ``cleanlab.filter.find_label_issues``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from clearsight.errors import ClearsightError

DEFAULT_FOLDS = 5


class LabelIssueError(ClearsightError, ValueError):
    """The labelled set cannot be checked for label errors (too small, one class...)."""


@dataclass(frozen=True)
class LabelSuspect:
    """One image whose given label is probably wrong.

    Attributes:
        index: Row of the image in the embeddings passed in.
        given_label: The label index the dataset gives, in ``[0, k)``.
        suggested_label: The argmax of the out-of-sample probabilities, in ``[0, k)``.
        self_confidence: Out-of-sample probability of the given label, in ``[0, 1]``
            (lower is more suspect).
        probabilities: The ``k`` out-of-sample class probabilities, summing to 1.
    """

    index: int
    given_label: int
    suggested_label: int
    self_confidence: float
    probabilities: tuple[float, ...]


def out_of_sample_probabilities(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> np.ndarray:
    """Cross-validated class probabilities: each image is scored by a model that never saw it.

    A standardised multinomial logistic regression is fitted on the other
    folds of a stratified K-fold split (sklearn's ``cross_val_predict`` with
    ``method="predict_proba"``).

    Args:
        embeddings: ``(n, d)`` float features, e.g. the model's penultimate layer.
        labels: ``(n,)`` integer label indices in ``[0, num_classes)``.
        num_classes: Number of classes ``k`` (default: ``labels.max() + 1``).
            Classes with no image get probability 0.
        folds: Number of folds ``K`` (at least 2). Every class present must
            have at least ``K`` images; a class with fewer raises (see below).
        seed: Seed of the fold shuffle.

    Returns:
        ``(n, k)`` float64 probabilities, rows summing to 1.

    Raises:
        LabelIssueError: Bad shapes, fewer than two classes, fewer than 2
            folds, or a class with fewer images than folds (the message names
            the classes; lower ``folds`` or leave them out).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise LabelIssueError(
            f"Expected embeddings (n, d) and labels (n,), got {x.shape} and {y.shape}."
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise LabelIssueError(f"Labels must be integer indices, got dtype {y.dtype}.")
    if folds < 2:
        raise LabelIssueError(f"Cross-validation needs at least 2 folds, got {folds}.")
    k = int(num_classes if num_classes is not None else (y.max() + 1 if y.size else 0))
    if y.size and (y.min() < 0 or y.max() >= k):
        raise LabelIssueError(f"Labels must lie in [0, {k}), got [{y.min()}, {y.max()}].")
    present, counts = np.unique(y, return_counts=True)
    if present.size < 2:
        raise LabelIssueError(
            f"Label errors need at least 2 classes with images, got {present.size}."
        )
    small = {int(c): int(n) for c, n in zip(present, counts, strict=True) if n < folds}
    if small:
        raise LabelIssueError(
            f"Classes {sorted(small)} have fewer images than the {folds} folds ({small}): "
            "lower the number of folds or leave those classes out of the check."
        )
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    seen = cross_val_predict(classifier, x, y, cv=splitter, method="predict_proba")
    probabilities = np.zeros((x.shape[0], k), dtype=np.float64)
    probabilities[:, present] = seen  # columns follow the sorted present classes
    return probabilities


def rank_label_issues(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int | None = None,
    folds: int = DEFAULT_FOLDS,
    max_suspects: int | None = None,
    share: float | None = None,
    seed: int = 0,
) -> list[LabelSuspect]:
    """The images most likely mislabelled, most suspect first.

    Confident learning (Northcutt et al., 2021) as implemented by
    ``cleanlab.filter.find_label_issues(..., return_indices_ranked_by="self_confidence")``
    on the out-of-sample probabilities of :func:`out_of_sample_probabilities`.

    Args:
        embeddings: ``(n, d)`` float features.
        labels: ``(n,)`` integer given labels in ``[0, num_classes)``.
        num_classes: Number of classes ``k``.
        folds: Cross-validation folds (see :func:`out_of_sample_probabilities`).
        max_suspects: Keep at most this many suspects (``None``: no cap).
        share: Keep at most ``ceil(share * n)`` suspects, ``share`` in ``[0, 1]``
            (``None``: no cap). With both caps the smaller applies.
        seed: Seed of the fold shuffle.

    Returns:
        Suspects ranked by increasing self-confidence; ``index`` refers to the
        rows of ``embeddings``.

    Raises:
        LabelIssueError: As :func:`out_of_sample_probabilities`, or a cap out of range.
    """
    if max_suspects is not None and max_suspects < 0:
        raise LabelIssueError(f"max_suspects must be >= 0, got {max_suspects}.")
    if share is not None and not 0.0 <= share <= 1.0:
        raise LabelIssueError(f"share must lie in [0, 1], got {share}.")
    y = np.asarray(labels)
    probabilities = out_of_sample_probabilities(
        embeddings, y, num_classes=num_classes, folds=folds, seed=seed
    )
    # n_jobs=1: cleanlab's default forks a multiprocessing pool, which deadlocks in a
    # process where TensorFlow's threads already run (the training step).
    ranked = find_label_issues(
        labels=y, pred_probs=probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    limit = len(ranked)
    if max_suspects is not None:
        limit = min(limit, max_suspects)
    if share is not None:
        limit = min(limit, math.ceil(share * y.shape[0]))
    return [
        LabelSuspect(
            index=int(i),
            given_label=int(y[i]),
            suggested_label=int(probabilities[i].argmax()),
            self_confidence=float(probabilities[i, y[i]]),
            probabilities=tuple(float(p) for p in probabilities[i]),
        )
        for i in ranked[:limit]
    ]
