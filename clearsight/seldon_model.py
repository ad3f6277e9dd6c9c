r"""The seldon-core 1.19 model class that serves a Clearsight model.

Run by the real seldon-core microservice::

    CLEARSIGHT_MODEL_DIR=/path/to/model-folder \
    seldon-core-microservice clearsight.seldon_model.ImageClassifier \
        --service-type MODEL --http-port 9000 --grpc-port 9500 --metrics-port 6000

The folder holds ``model.keras`` (calibrated; the temperature is inside) and
``serving.json`` (see :class:`clearsight.serving.ServingConfig`). TensorFlow is
imported and the model loaded in :meth:`ImageClassifier.load`, which
seldon-core calls in each worker after gunicorn forks: a model built before
the fork hangs the first request.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, jsonify
from seldon_core.flask_utils import SeldonMicroserviceException
from werkzeug.exceptions import UnsupportedMediaType

from clearsight.serving import (
    MODEL_FILE,
    BadRequestError,
    ServingConfig,
    parse_request,
    response_meta,
    shape_answers,
)

MODEL_DIR_ENV = "CLEARSIGHT_MODEL_DIR"


def _error_blueprint() -> Blueprint:
    """Turn seldon-core's 500 for a non-JSON content type into a clear 415."""
    blueprint = Blueprint("clearsight_errors", __name__)

    @blueprint.app_errorhandler(UnsupportedMediaType)
    def unsupported_media_type(error: UnsupportedMediaType):
        body = {
            "status": {
                "status": 1,
                "code": 415,
                "reason": "UNSUPPORTED_MEDIA_TYPE",
                "info": "Send a JSON body with the header Content-Type: application/json, "
                "e.g. {'binData': '<base64 JPEG or PNG>'}",
            }
        }
        return jsonify(body), 415

    return blueprint


class ImageClassifier:
    """Seldon model: binData, jsonData and data.ndarray in; per-image answers out."""

    def __init__(self, model_dir: str | None = None) -> None:
        folder = model_dir or os.environ.get(MODEL_DIR_ENV)
        if not folder:
            raise RuntimeError(
                f"Set {MODEL_DIR_ENV} (or the model_dir parameter) to a folder with "
                f"{MODEL_FILE} and serving.json"
            )
        self.model_dir = Path(folder)
        self.config = ServingConfig.load(self.model_dir)
        self.model = None
        self.infer = None
        self.preprocess = None
        self.model_error_handler = _error_blueprint()

    def load(self) -> None:
        """Import TensorFlow and load the model (called in each worker)."""
        import tensorflow as tf

        from clearsight.preprocess import preprocess_batch

        model = tf.keras.models.load_model(self.model_dir / MODEL_FILE, compile=False)
        size = self.config.image_size

        # A traced graph answers in ~1 ms where Keras 3's eager call takes ~6 ms.
        @tf.function(
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
            autograph=False,
            reduce_retracing=True,
        )
        def infer(batch: tf.Tensor) -> tf.Tensor:
            return model(batch, training=False)

        infer(tf.zeros((1, size, size, 3)))  # trace once, before the first request
        self.model = model
        self.infer = infer
        self.preprocess = preprocess_batch

    def predict_raw(self, request: Any) -> dict[str, Any]:
        """Answer one Seldon v1 request; bad input raises a 400 with the reason."""
        if self.model is None:
            self.load()
        started = time.perf_counter()
        try:
            kind, payload = parse_request(request, self.config)
        except BadRequestError as error:
            raise SeldonMicroserviceException(
                str(error), status_code=400, reason="BAD_REQUEST"
            ) from None
        batch = self.preprocess(payload, self.config.image_size) if kind == "images" else payload
        probabilities = self.infer(np.asarray(batch, dtype=np.float32)).numpy()
        answers = shape_answers(probabilities, self.config)
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics: list[dict[str, Any]] = [
            {"type": "COUNTER", "key": "clearsight_requests_total", "value": 1},
            {"type": "TIMER", "key": "clearsight_request_latency", "value": elapsed_ms},
            {
                "type": "GAUGE",
                "key": "clearsight_model_version",
                "value": float(self.config.model_version or 0),
            },
        ]
        for answer in answers:
            metrics.append(
                {
                    "type": "COUNTER",
                    "key": "clearsight_predictions_total",
                    "value": 1,
                    "tags": {"label": answer["label"]},
                }
            )
            # TIMER is seldon-core's histogram; x1000 because it divides by 1000 (ms).
            metrics.append(
                {
                    "type": "TIMER",
                    "key": "clearsight_confidence",
                    "value": answer["confidence"] * 1000,
                }
            )
            if answer["uncertain"]:
                metrics.append({"type": "COUNTER", "key": "clearsight_uncertain_total", "value": 1})
        return {
            "jsonData": {"predictions": answers, "input": kind},
            "meta": {"tags": response_meta(self.config), "metrics": metrics},
        }

    def health_status_raw(self) -> dict[str, Any]:
        """Seldon's /health/status: ready once the model is loaded."""
        return {"ready": self.model is not None, **response_meta(self.config)}

    def init_metadata(self) -> dict[str, Any]:
        """Seldon's /metadata: the model and its input and output."""
        size = self.config.image_size
        return {
            "name": self.config.model_name,
            "versions": [str(self.config.model_version)],
            "platform": "tensorflow",
            "inputs": [
                {"messagetype": "binData"},  # one JPEG or PNG, base64
                {"messagetype": "jsonData", "schema": {"images": "list of base64 images"}},
                {"messagetype": "tensor", "schema": {"shape": [-1, size, size, 3]}},
            ],
            "outputs": [{"messagetype": "jsonData", "schema": {"classes": self.config.classes}}],
        }
