"""Class weights for imbalanced training data.

Skin-lesion and chest X-ray sets are imbalanced (HAM10000: about 58 times more
naevi than dermatofibromas): trained without weights, a classifier can score
well on accuracy while missing the rare classes the gate's per-class recall
protects. Weighting each class by the inverse of its frequency ("balanced"
weights, ``n_samples / (n_classes * n_c)``, as scikit-learn's
``compute_class_weight("balanced")`` after King & Zeng, 2001) makes every class
contribute equally to the loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

DEFAULT_RATIO = 3.0


class ClassWeighting(StrEnum):
    """When training weights classes: ``auto`` above a ratio, ``always``, or ``never``."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def imbalance_ratio(counts: Mapping[int, int]) -> float:
    """Largest class count over the smallest non-zero one (1.0 for a balanced set).

    Raises:
        ValueError: When no class has an image.
    """
    present = [n for n in counts.values() if n > 0]
    if not present:
        raise ValueError("no class has an image: class weights cannot be computed")
    return max(present) / min(present)


def class_weights(
    counts: Mapping[int, int],
    mode: ClassWeighting | str = ClassWeighting.AUTO,
    ratio: float = DEFAULT_RATIO,
) -> dict[int, float] | None:
    """The loss weight of each class index, or ``None`` for unweighted training.

    Args:
        counts: Training images per class index (the model's output order).
        mode: ``auto``: weight when :func:`imbalance_ratio` exceeds ``ratio``;
            ``always``; ``never`` (not on/off: YAML 1.1 reads those as booleans).
        ratio: The ``auto`` threshold (largest / smallest class), > 1.

    Returns:
        ``{class index: n_samples / (n_classes * n_c)}`` for the classes with
        images (mean weight over the samples is 1, so the learning rate keeps
        its meaning), or ``None``.

    Raises:
        ValueError: An unknown mode, a ratio not above 1, or no images.
    """
    mode = ClassWeighting(mode)
    if ratio <= 1:
        raise ValueError(f"class_weight_ratio must be above 1; got {ratio}")
    measured = imbalance_ratio(counts)
    if mode is ClassWeighting.NEVER:
        return None
    if mode is ClassWeighting.AUTO and measured <= ratio:
        return None
    present = {index: n for index, n in counts.items() if n > 0}
    total = sum(present.values())
    return {index: total / (len(present) * n) for index, n in sorted(present.items())}
