r"""The seldon-core 1.19 model class that serves a Clearsight model.

Run by the real seldon-core microservice::

    CLEARSIGHT_MODEL_DIR=/path/to/model-folder \
    seldon-core-microservice clearsight.seldon_model.ImageClassifier \
        --service-type MODEL --http-port 8000 --grpc-port 11000 --metrics-port 10000

The folder holds ``model.keras`` (calibrated; the temperature is inside) and
``serving.json`` (see :class:`clearsight.serving.ServingConfig`). TensorFlow is
imported and the model loaded in :meth:`ImageClassifier.load`, which
seldon-core calls in each worker after gunicorn forks: a model built before
the fork hangs the first request.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, g, jsonify, request
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.metrics import SeldonMetrics
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from clearsight.decode import InvalidImageError, decode_batch
from clearsight.serving import (
    MODEL_FILE,
    BadRequestError,
    ServingConfig,
    is_seldon_message,
    parse_request,
    response_meta,
    shape_answers,
)

MODEL_DIR_ENV = "CLEARSIGHT_MODEL_DIR"
PREDICTION_PATHS = ("/api/v1.0/predictions", "/api/v0.1/predictions", "/predict")
_LOAD_LOCK = threading.Lock()  # the gRPC process loads on its first calls, in threads

# seldon-core builds one SeldonMetrics (its custom-metrics store, shared by the
# workers) in main() after importing this module, and gives it only to its
# own request handlers. Keep a reference so that rejected requests, which never
# reach the point where seldon-core records a response's custom metrics, are
# counted too.
_SELDON_METRICS: list[SeldonMetrics] = []


def _remember_seldon_metrics() -> None:
    if getattr(SeldonMetrics, "_clearsight_remembered", False):
        return
    original = SeldonMetrics.__init__

    def init(self: SeldonMetrics, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _SELDON_METRICS[:] = [self]

    SeldonMetrics.__init__ = init  # type: ignore[method-assign]
    SeldonMetrics._clearsight_remembered = True  # type: ignore[attr-defined]


_remember_seldon_metrics()


def count_rejected(reason: str) -> None:
    """Add one to ``clearsight_rejected_total{reason=...}``."""
    if not _SELDON_METRICS:
        return
    with contextlib.suppress(Exception):  # a metric must never break an answer
        _SELDON_METRICS[0].update(
            [
                {
                    "type": "COUNTER",
                    "key": "clearsight_rejected_total",
                    "value": 1,
                    "tags": {"reason": reason},
                }
            ],
            "predict",
        )


def _status_body(code: int, reason: str, info: str) -> dict[str, Any]:
    return {"status": {"status": 1, "code": code, "reason": reason, "info": info}}


def _error_blueprint(max_request_bytes: int) -> Blueprint:
    """Clear 4xx answers where seldon-core would give a 500, and rejection counts.

    * a non-JSON content type: 415 (seldon-core: 500);
    * a body over ``max_request_bytes``: 413 before it is read;
    * every 4xx of the prediction routes is counted in
      ``clearsight_rejected_total{reason}``.
    """
    blueprint = Blueprint("clearsight_errors", __name__)

    @blueprint.record_once
    def limit_body(state: Any) -> None:
        # werkzeug refuses to read a larger body (also a chunked one) with a 413.
        state.app.config["MAX_CONTENT_LENGTH"] = max_request_bytes

    @blueprint.before_app_request
    def refuse_large_bodies():
        length = request.content_length
        if length is not None and length > max_request_bytes:
            raise RequestEntityTooLarge()
        return None

    @blueprint.app_errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge):
        g.clearsight_reject_reason = "too_large"
        info = (
            f"Request body of {request.content_length or 'more than'} bytes exceeds "
            f"max_request_bytes={max_request_bytes}: send fewer or smaller images per request"
        )
        return jsonify(_status_body(413, "REQUEST_TOO_LARGE", info)), 413

    @blueprint.after_app_request
    def count_rejections(response):
        if 400 <= response.status_code < 500 and request.path in PREDICTION_PATHS:
            reason = getattr(g, "clearsight_reject_reason", None)
            if reason is None:
                body = response.get_json(silent=True) or {}
                status = body.get("status") if isinstance(body, dict) else None
                code = status.get("reason") if isinstance(status, dict) else None
                reason = str(code).lower() if code else f"http_{response.status_code}"
            count_rejected(reason)
        return response

    @blueprint.app_errorhandler(UnsupportedMediaType)
    def unsupported_media_type(error: UnsupportedMediaType):
        g.clearsight_reject_reason = "unsupported_media_type"
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
    """Seldon model: binData, jsonData and data (ndarray, tensor, tftensor) in; answers out.

    Serves both of seldon-core's transports with the same answers: REST (a
    JSON request, a JSON answer) and gRPC (a ``SeldonMessage`` in, a
    ``SeldonMessage`` out). A request the model cannot take is a 400 over REST
    (``status.info`` says why) and ``INVALID_ARGUMENT`` with the same message
    over gRPC; both are counted in ``clearsight_rejected_total{reason}``.
    """

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
        self.model_error_handler = _error_blueprint(self.config.max_request_bytes)
        _grpc_errors_as_status_codes()

    def load(self) -> None:
        """Import TensorFlow and load the model, once (called in each worker).

        Thread-safe: the gRPC server process loads on its first request, which
        may come from several threads at once (see :mod:`stack.seldon.launch`).
        """
        with _LOAD_LOCK:
            if self.model is None:
                self._load()

    def _load(self) -> None:
        import tensorflow as tf

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
        self.infer = infer
        self.model = model  # last: predict_raw loads while it is None

    def predict_raw(self, request: Any) -> Any:
        """Answer one Seldon v1 request, REST or gRPC.

        Args:
            request: A JSON dict (REST) or a ``SeldonMessage`` protobuf (gRPC:
                seldon-core hands ``predict_raw`` the message as it arrived).

        Returns:
            The answer in the request's kind: a dict for a dict, a
            ``SeldonMessage`` for a ``SeldonMessage`` (built with
            ``seldon_core.utils.json_to_seldon_message``). Over gRPC the custom
            metrics are recorded here rather than carried in ``meta.metrics``:
            protobuf's JSON mapping drops zero values, which seldon-core's
            metrics update cannot read.

        Raises:
            SeldonMicroserviceException: status 400 with the reason for input
                the model cannot take (see :func:`clearsight.serving.parse_request`);
                over gRPC it becomes ``INVALID_ARGUMENT`` (see
                :func:`_grpc_errors_as_status_codes`).
        """
        if self.model is None:
            self.load()
        started = time.perf_counter()
        is_proto = is_seldon_message(request)
        try:
            kind, payload = parse_request(request, self.config)
            batch = self._preprocess(payload) if kind == "images" else payload
        except BadRequestError as error:
            if is_proto:
                count_rejected(error.reason)  # no Flask request to count it after
            else:
                _set_reject_reason(error.reason)
            raise SeldonMicroserviceException(
                str(error), status_code=400, reason="BAD_REQUEST"
            ) from None
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
        answer = {
            "jsonData": {"predictions": answers, "input": kind},
            "meta": {"tags": response_meta(self.config), "metrics": metrics},
        }
        if not is_proto:
            return answer
        from seldon_core.utils import json_to_seldon_message

        _record_metrics(answer["meta"].pop("metrics"))
        return json_to_seldon_message(answer)

    def _preprocess(self, images: list[bytes]) -> np.ndarray:
        """Decode and resize with the platform's decoder, by the training data's rules.

        Raises:
            BadRequestError: An image the decoder refuses (the reason names it).
        """
        try:
            return decode_batch(
                images,
                self.config.image_size,
                options=self.config.decode_options,
                max_pixels=self.config.max_pixels,
            )
        except InvalidImageError as error:
            raise BadRequestError(str(error), "invalid_image") from None

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
                {"messagetype": "ndarray", "schema": {"shape": [-1, size, size, 3]}},
                {"messagetype": "tftensor", "schema": {"shape": [-1, size, size, 3]}},
            ],
            "outputs": [{"messagetype": "jsonData", "schema": {"classes": self.config.classes}}],
        }


def _set_reject_reason(reason: str) -> None:
    """Tell the rejection counter why (outside a Flask request: nothing to do)."""
    with contextlib.suppress(RuntimeError):  # no application context (gRPC, tests)
        g.clearsight_reject_reason = reason


# gRPC status for a SeldonMicroserviceException's HTTP status (the mapping of
# https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.txt, read
# from HTTP to gRPC as Google's APIs do: 400 -> INVALID_ARGUMENT, 413 -> RESOURCE_EXHAUSTED).
GRPC_STATUS_FOR_HTTP = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
}


def _grpc_errors_as_status_codes() -> None:
    """Make seldon-core's gRPC ``Predict`` answer a refused request with its status code.

    seldon-core 1.19 lets any exception out of the servicer, so gRPC reports
    ``UNKNOWN`` with "Exception calling application" for a client's mistake
    (it has no gRPC counterpart of the REST error handler). This wraps
    ``seldon_core.wrapper.SeldonModelGRPC.Predict``: a
    ``SeldonMicroserviceException`` aborts the call with the status code for its
    HTTP status (``INVALID_ARGUMENT`` for 400) and its message as the details;
    any other exception is left to seldon-core (``UNKNOWN``). Idempotent.
    """
    from seldon_core import wrapper

    servicer = wrapper.SeldonModelGRPC
    if getattr(servicer, "_clearsight_status_codes", False):
        return
    predict = servicer.Predict

    def Predict(self: Any, request_grpc: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        try:
            return predict(self, request_grpc, context)
        except SeldonMicroserviceException as error:
            import grpc

            code = GRPC_STATUS_FOR_HTTP.get(error.status_code, "UNKNOWN")
            context.abort(getattr(grpc.StatusCode, code), str(error.message))

    servicer.Predict = Predict
    servicer._clearsight_status_codes = True


def _record_metrics(metrics: list[dict[str, Any]]) -> None:
    """Record custom metrics in seldon-core's store (for gRPC answers)."""
    if not _SELDON_METRICS:
        return
    with contextlib.suppress(Exception):  # a metric must never break an answer
        _SELDON_METRICS[0].update(metrics, "predict")
