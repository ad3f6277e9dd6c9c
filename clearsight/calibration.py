"""Temperature scaling and the expected calibration error.

A classifier's softmax confidence is often too high (or too low). Temperature
scaling divides the logits by one scalar T, fitted on the validation split by
minimising the negative log-likelihood; it changes no prediction, only how
sure the model claims to be. The expected calibration error (ECE) measures the
gap between confidence and accuracy across confidence bins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

DEFAULT_BINS = 15


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> float:
    """Return the temperature T > 0 that minimises the NLL of ``softmax(logits / T)``."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(y) != len(logits) or len(y) == 0:
        raise ValueError("fit_temperature needs an (n, classes) logits array and n labels")

    def nll(log_t: float) -> float:
        scaled = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-scaled[np.arange(len(y)), y].mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def negative_log_likelihood(probabilities: np.ndarray, labels: Sequence[int]) -> float:
    """Mean -log p(true label): the quantity temperature scaling minimises."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    picked = np.clip(probabilities[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(picked).mean())


def expected_calibration_error(
    probabilities: np.ndarray, labels: Sequence[int], bins: int = DEFAULT_BINS
) -> float:
    """Weighted mean |accuracy - confidence| over equal-width confidence bins."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            error += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(error)


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of logits divided by the temperature."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
