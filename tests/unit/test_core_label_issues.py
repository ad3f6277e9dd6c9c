"""Label-error ranking (confident learning) on real data with deliberately flipped labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from clearsight.label_issues import (
    LabelIssueError,
    out_of_sample_probabilities,
    rank_label_issues,
)


@pytest.fixture(scope="module")
def flipped_digits():
    pixels, labels = load_digits(return_X_y=True)  # 1797 8x8 digits: 64 features
    rng = np.random.default_rng(0)
    flipped = rng.choice(labels.size, size=round(0.05 * labels.size), replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, 10, size=flipped.size)) % 10
    return pixels, labels, noisy, set(flipped.tolist())


def test_most_flipped_labels_are_among_the_top_suspects(flipped_digits):
    pixels, labels, noisy, flipped = flipped_digits
    suspects = rank_label_issues(pixels, noisy, num_classes=10, max_suspects=len(flipped))
    assert len(suspects) == len(flipped)
    found = [s for s in suspects if s.index in flipped]
    assert len(found) / len(flipped) >= 0.7  # recall in the top k
    assert len(found) / len(suspects) >= 0.7  # precision
    # Most suspects that were flipped get their true label as the suggestion.
    assert sum(s.suggested_label == labels[s.index] for s in found) >= 0.8 * len(found)
    confidences = [s.self_confidence for s in suspects]
    assert confidences == sorted(confidences) and 0.0 <= confidences[0] <= confidences[-1] <= 1
    assert all(s.given_label == noisy[s.index] for s in suspects)


def test_caps_and_probabilities(flipped_digits):
    pixels, _, noisy, _ = flipped_digits
    assert len(rank_label_issues(pixels, noisy, share=0.01)) == 18  # ceil(0.01 * 1797)
    assert len(rank_label_issues(pixels, noisy, share=0.01, max_suspects=5)) == 5
    probabilities = out_of_sample_probabilities(pixels[:300], noisy[:300], folds=3)
    assert probabilities.shape == (300, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_small_classes_and_bad_inputs_fail_clearly():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(13, 4))
    y = np.array([0] * 6 + [1] * 5 + [2] * 2)
    with pytest.raises(LabelIssueError, match=r"Classes \[2\] have fewer images than the 5 folds"):
        rank_label_issues(x, y)
    with pytest.raises(LabelIssueError, match="at least 2 classes"):
        rank_label_issues(x, np.zeros(13, dtype=int))
    with pytest.raises(LabelIssueError, match="share"):
        rank_label_issues(x, y, share=2.0)
    with pytest.raises(LabelIssueError, match=r"\(n, d\)"):
        rank_label_issues(x[:5], y)
