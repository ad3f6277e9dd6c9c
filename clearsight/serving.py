"""Prediction service logic, independent of any serving framework.

Parses the three request forms of Seldon's v1 protocol, validates them
strictly, runs the model with the same preprocessing as training, and shapes
one answer per image. ``clearsight.seldon_model`` adapts it to seldon-core;
any other server could reuse it as is.

Request forms:

* ``{"binData": "<base64 JPEG/PNG>"}``: one encoded image;
* ``{"jsonData": {"images": ["<base64>", ...]}}``: a batch of encoded images;
* ``{"data": {"ndarray": [[[[r, g, b], ...]]]}}``: already preprocessed
  ``float`` tensors of shape ``(n, size, size, 3)`` in [0, 1].
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clearsight.images import DEFAULT_MAX_PIXELS, InvalidImageError, inspect_image

SERVING_FILE = "serving.json"
MODEL_FILE = "model.keras"
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # a full batch of photos in base64 fits


class BadRequestError(ValueError):
    """The request is malformed; the message says what was wrong.

    Attributes:
        reason: A short code for metrics (``clearsight_rejected_total{reason}``).
    """

    def __init__(self, message: str, reason: str = "bad_request") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ServingConfig:
    """What the server needs besides the weights; stored as ``serving.json``."""

    model_name: str
    model_version: str
    classes: list[str]
    image_size: int
    mlflow_run_id: str = ""
    registered_version: str = ""
    temperature: float = 1.0
    uncertain_threshold: float = 0.7
    top_k: int = 3
    max_batch: int = 64
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path) -> ServingConfig:
        """Read ``serving.json`` from a model folder."""
        return cls(**json.loads((Path(folder) / SERVING_FILE).read_text()))

    def save(self, folder: str | Path) -> None:
        """Write ``serving.json`` into a model folder."""
        (Path(folder) / SERVING_FILE).write_text(json.dumps(self.__dict__, indent=2))


def _decode_base64(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadRequestError(f"{where} must be a non-empty base64 string", "bad_base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"{where} is not valid base64", "bad_base64") from None


def parse_request(request: Any, config: ServingConfig) -> tuple[str, list[bytes] | np.ndarray]:
    """Return ``("images", [bytes, ...])`` or ``("tensor", array)`` for a request.

    Raises:
        BadRequestError: For anything the protocol or the model cannot take.
    """
    if not isinstance(request, dict) or not request:
        raise BadRequestError(
            "Empty or non-object request: send {'binData': <base64 image>}, "
            "{'jsonData': {'images': [<base64>, ...]}} or {'data': {'ndarray': [...]}}",
            "empty_request",
        )
    if "binData" in request:
        images = [_decode_base64(request["binData"], "binData")]
    elif "jsonData" in request:
        body = request["jsonData"]
        images_field = body.get("images") if isinstance(body, dict) else None
        if not isinstance(images_field, list) or not images_field:
            raise BadRequestError(
                "jsonData must be {'images': [<base64 image>, ...]}", "bad_payload"
            )
        images = [_decode_base64(v, f"jsonData.images[{i}]") for i, v in enumerate(images_field)]
    elif "data" in request:
        return "tensor", _parse_tensor(request["data"], config)
    else:
        raise BadRequestError(
            f"Unknown payload keys {sorted(request)}: use binData, jsonData or data.ndarray",
            "bad_payload",
        )
    if len(images) > config.max_batch:
        raise BadRequestError(
            f"Batch of {len(images)} images exceeds max_batch={config.max_batch}", "batch_too_large"
        )
    for i, data in enumerate(images):
        try:
            inspect_image(data, min_side=1, max_pixels=config.max_pixels)
        except InvalidImageError as error:
            raise BadRequestError(f"image {i}: {error}", "invalid_image") from None
    return "images", images


def _parse_tensor(data: Any, config: ServingConfig) -> np.ndarray:
    if not isinstance(data, dict) or "ndarray" not in data:
        raise BadRequestError(
            "data must be {'ndarray': [...]} (tensor, names optional)", "bad_tensor"
        )
    try:
        tensor = np.asarray(data["ndarray"], dtype=np.float32)
    except (TypeError, ValueError):
        raise BadRequestError("data.ndarray must be a numeric array", "bad_tensor") from None
    expected = (config.image_size, config.image_size, 3)
    if tensor.ndim == 3:
        tensor = tensor[np.newaxis]
    if tensor.ndim != 4 or tensor.shape[1:] != expected:
        raise BadRequestError(
            f"data.ndarray has shape {list(tensor.shape)}; expected [n, {expected[0]}, "
            f"{expected[1]}, 3] (preprocessed RGB in [0, 1])",
            "bad_tensor",
        )
    if len(tensor) > config.max_batch:
        raise BadRequestError(
            f"Batch of {len(tensor)} exceeds max_batch={config.max_batch}", "batch_too_large"
        )
    if not np.isfinite(tensor).all():
        raise BadRequestError("data.ndarray contains NaN or infinity", "bad_tensor")
    return tensor


def shape_answers(
    probabilities: np.ndarray, config: ServingConfig, threshold: float | None = None
) -> list[dict[str, Any]]:
    """One answer per image: probabilities, top label, top-k, confidence, uncertain."""
    threshold = config.uncertain_threshold if threshold is None else threshold
    answers = []
    for row in np.asarray(probabilities, dtype=np.float64):
        order = np.argsort(-row)
        top = int(order[0])
        answers.append(
            {
                "label": config.classes[top],
                "confidence": float(row[top]),
                "uncertain": bool(row[top] < threshold),
                "top_k": [
                    {"label": config.classes[int(i)], "probability": float(row[i])}
                    for i in order[: config.top_k]
                ],
                "probabilities": {c: float(p) for c, p in zip(config.classes, row, strict=True)},
            }
        )
    return answers


def response_meta(config: ServingConfig) -> dict[str, str]:
    """Tags that trace every prediction back to the model and its training run."""
    return {
        "model_name": config.model_name,
        "model_version": str(config.model_version),
        "registered_version": str(config.registered_version),
        "mlflow_run_id": config.mlflow_run_id,
    }


def export_model_dir(model: Any, config: ServingConfig, folder: str | Path) -> Path:
    """Write a servable folder: ``model.keras`` and ``serving.json``."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    model.save(target / MODEL_FILE)
    config.save(target)
    return target
