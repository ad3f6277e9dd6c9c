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

Every answered image goes to the catalog's prediction log
(:mod:`clearsight.prediction_log`, a background writer per process; the
catalog URL is ``CLEARSIGHT_CATALOG_URL``, else the project's SQLite file), under
the request id that the answer carries in ``meta.puid``: the request's own
``meta.puid``, else Seldon's ``Seldon-Puid`` header (gRPC metadata
``seldon-puid``) that Seldon's executor sets, else a new UUID. Seldon's feedback
call (``/api/v1.0/feedback``, gRPC ``SendFeedback``) stores the true labels of
an answered request (:meth:`ImageClassifier.send_feedback_raw`).

API keys (:mod:`clearsight.api_keys`): when the server requires them
(``CLEARSIGHT_API_KEYS``; by default unless bound to loopback), every REST
request but ``/health/*`` needs ``Authorization: Bearer <key>`` and every gRPC
call the ``authorization`` metadata; a missing or wrong key gets 401 (gRPC
``UNAUTHENTICATED``) and is counted in ``clearsight_rejected_total{reason}``.
The metrics port is another server, without keys.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, g, has_request_context, jsonify, request
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.metrics import SeldonMetrics
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from clearsight import api_keys
from clearsight.decode import InvalidImageError, decode_batch
from clearsight.errors import CatalogError
from clearsight.features import EmbeddingProjection, geometry, picture_statistics
from clearsight.prediction_log import (
    DEFAULT_FLUSH_INTERVAL,
    QUEUE_FULL,
    LoggedRequest,
    PredictionLog,
    image_hashes,
    log_settings,
    new_puid,
)
from clearsight.serving import (
    MODEL_FILE,
    MONITORING_FILE,
    BadRequestError,
    ServingConfig,
    check_puid,
    is_seldon_message,
    parse_feedback,
    parse_request,
    request_meta,
    response_meta,
    shape_answers,
)

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "CLEARSIGHT_MODEL_DIR"
PREDICTION_PATHS = ("/api/v1.0/predictions", "/api/v0.1/predictions", "/predict")
FEEDBACK_PATHS = ("/api/v1.0/feedback", "/api/v0.1/feedback", "/send-feedback")
#: Seldon's request-id header (its executor sets it; gRPC metadata keys are lower case).
SELDON_PUID_HEADER = "Seldon-Puid"
#: Seconds a feedback call waits for another process's log writer before "unknown request".
FEEDBACK_WAIT = 2 * DEFAULT_FLUSH_INTERVAL
_LOAD_LOCK = threading.Lock()  # the gRPC process loads on its first calls, in threads
_GRPC_CALL = threading.local()  # the gRPC call's Seldon-Puid metadata, for predict_raw
#: Paths answered without a key: Seldon's liveness and readiness probes.
OPEN_PATH_PREFIX = "/health/"

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


def count_rejected(reason: str, method: str = "predict") -> None:
    """Add one to ``clearsight_rejected_total{reason=...}`` (``method``: predict or feedback)."""
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
            method,
        )


def count_log_drops(reason: str, rows: int) -> None:
    """Add ``rows`` to ``clearsight_prediction_log_dropped_total{reason=...}`` (writer thread)."""
    _record_metrics(
        [
            {
                "type": "COUNTER",
                "key": "clearsight_prediction_log_dropped_total",
                "value": rows,
                "tags": {"reason": reason},
            }
        ]
    )


def _status_body(code: int, reason: str, info: str) -> dict[str, Any]:
    return {"status": {"status": 1, "code": code, "reason": reason, "info": info}}


def _refusal(reason: str) -> tuple[Any, int, dict[str, str]]:
    """The answer to a request whose key is missing or wrong (401), or unreadable (503)."""
    code = 503 if reason == api_keys.UNAVAILABLE else 401
    challenge = 'Bearer realm="clearsight"'
    if reason == api_keys.INVALID:
        challenge += ', error="invalid_token"'  # RFC 6750, section 3.1
    body = _status_body(
        code,
        "UNAUTHORIZED" if code == 401 else "SERVICE_UNAVAILABLE",
        api_keys.refusal_message(reason),
    )
    return jsonify(body), code, {"WWW-Authenticate": challenge}


def _error_blueprint(
    max_request_bytes: int, verifier: api_keys.ApiKeyVerifier | None = None
) -> Blueprint:
    """API keys, clear 4xx answers where seldon-core would give a 500, and rejection counts.

    * with a ``verifier`` (keys required): a request without a valid
      ``Authorization: Bearer <key>`` gets 401 before anything else is read
      (``/health/*`` and CORS preflights excepted), counted whatever its path;
    * a non-JSON content type: 415 (seldon-core: 500);
    * a body over ``max_request_bytes``: 413 before it is read;
    * every 4xx of the prediction and feedback routes is counted in
      ``clearsight_rejected_total{reason}`` (``method="feedback"`` for feedback);
    * a feedback whose ``truth`` is a plain label (``"truth": "3"``, or the
      number ``3``) is read as ``{"strData": "3"}`` (Seldon's ``Feedback`` has
      no such form).
    """
    blueprint = Blueprint("clearsight_errors", __name__)

    if verifier is not None:

        @blueprint.before_app_request
        def require_api_key():  # first hook: nothing is read before the key is checked
            if request.method == "OPTIONS" or request.path.startswith(OPEN_PATH_PREFIX):
                return None
            verdict = verifier.verify(api_keys.bearer_token(request.headers.get(api_keys.HEADER)))
            if verdict.accepted:
                return None
            g.clearsight_reject_reason = verdict.reason
            g.clearsight_key_refused = True
            return _refusal(verdict.reason)

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

    @blueprint.before_app_request
    def plain_label_truth():
        if request.path in FEEDBACK_PATHS and request.is_json:
            # get_json caches the parsed body: seldon-core's handler reads this same dict.
            body = request.get_json(silent=True)
            truth = body.get("truth") if isinstance(body, dict) else None
            if isinstance(truth, str):
                body["truth"] = {"strData": truth}
            elif isinstance(truth, (int, float)) and not isinstance(truth, bool):
                number = float(truth)
                body["truth"] = {"strData": str(int(number)) if number.is_integer() else str(truth)}
        return None

    @blueprint.after_app_request
    def count_rejections(response):
        feedback = request.path in FEEDBACK_PATHS
        if getattr(g, "clearsight_key_refused", False) or (
            400 <= response.status_code < 500 and (feedback or request.path in PREDICTION_PATHS)
        ):
            reason = getattr(g, "clearsight_reject_reason", None)
            if reason is None:
                body = response.get_json(silent=True) or {}
                status = body.get("status") if isinstance(body, dict) else None
                code = status.get("reason") if isinstance(status, dict) else None
                reason = str(code).lower() if code else f"http_{response.status_code}"
            if feedback:
                count_rejected(reason, "feedback")
            else:
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
    Every answer carries its request id in ``meta.puid`` and is recorded in
    the prediction log unless it is switched off (``prediction_log`` in
    ``serving.json``, ``CLEARSIGHT_PREDICTION_LOG``).
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
        self.projection: EmbeddingProjection | None = None
        self.api_keys = _api_key_verifier()
        self.model_error_handler = _error_blueprint(self.config.max_request_bytes, self.api_keys)
        self.prediction_log = self._open_prediction_log()
        _grpc_errors_as_status_codes()
        _grpc_api_keys()

    def _open_prediction_log(self) -> PredictionLog | None:
        """The log this server writes to, or None when switched off (nothing opened yet).

        Raises:
            ValueError: ``CLEARSIGHT_PREDICTION_LOG`` or its retention variable
                holds an unusable value.
        """
        enabled, retention_days = log_settings(
            self.config.prediction_log, self.config.prediction_log_retention_days
        )
        if not enabled:
            logger.info("Prediction log: off.")
            return None
        config = self.config

        def hashes(data: bytes) -> tuple[str, str | None]:
            return image_hashes(data, max_pixels=config.max_pixels, options=config.decode_options)

        return PredictionLog(
            None,  # resolve_catalog_url() in the writer: a failure is logged there, once
            retention_days=retention_days,
            hashes=hashes,
            image_features=geometry,
            images_uri=config.images_uri,
            keep_images=config.keep_images,
            keep_images_sample_share=config.keep_images_sample_share,
            on_dropped=count_log_drops,
        )

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

        from clearsight.models import EMBEDDING_LAYER

        model = tf.keras.models.load_model(self.model_dir / MODEL_FILE, compile=False)
        size = self.config.image_size
        served = model
        self.projection = self._embedding_projection()
        if self.projection is not None:
            try:  # one forward pass gives the answer and the embedding the log projects
                served = tf.keras.Model(
                    model.inputs, [model.output, model.get_layer(EMBEDDING_LAYER).output]
                )
            except ValueError as error:  # no such layer: log pixel features only
                logger.error("The prediction log cannot project embeddings: %s", error)
                self.projection = None

        # A traced graph answers in ~1 ms where Keras 3's eager call takes ~6 ms.
        @tf.function(
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
            autograph=False,
            reduce_retracing=True,
        )
        def infer(batch: tf.Tensor) -> tf.Tensor:
            return served(batch, training=False)

        infer(tf.zeros((1, size, size, 3)))  # trace once, before the first request
        self.infer = infer
        self.model = model  # last: predict_raw loads while it is None

    def _embedding_projection(self) -> EmbeddingProjection | None:
        """The served version's embedding projection, when the log needs one and it is there."""
        path = self.model_dir / MONITORING_FILE
        if self.prediction_log is None or not path.exists():
            if self.prediction_log is not None:
                logger.info(
                    "No %s beside the model: the prediction log records pixel features "
                    "only (promote the version again to save its projection).",
                    MONITORING_FILE,
                )
            return None
        try:
            return EmbeddingProjection.model_validate_json(path.read_text())
        except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
            logger.error(
                "%s is unreadable (%s): the prediction log records pixel features only.",
                path,
                error,
            )
            return None

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
            puid, tags = request_meta(request)
            puid = puid or _header_puid(is_proto) or new_puid()
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
        outputs = self.infer(np.asarray(batch, dtype=np.float32))
        embeddings = None
        if self.projection is not None:
            outputs, embeddings = outputs
        probabilities = outputs.numpy()
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
        if self.prediction_log is not None and not self._log(
            puid, answers, kind, payload, tags, batch, embeddings
        ):
            metrics.append(
                {
                    "type": "COUNTER",
                    "key": "clearsight_prediction_log_dropped_total",
                    "value": len(answers),
                    "tags": {"reason": QUEUE_FULL},
                }
            )
        answer = {
            "jsonData": {"predictions": answers, "input": kind},
            "meta": {"puid": puid, "tags": response_meta(self.config), "metrics": metrics},
        }
        if not is_proto:
            return answer
        from seldon_core.utils import json_to_seldon_message

        _record_metrics(answer["meta"].pop("metrics"))
        return json_to_seldon_message(answer)

    def _log(
        self,
        puid: str,
        answers: list[dict[str, Any]],
        kind: str,
        payload: Any,
        tags: dict[str, Any] | None,
        batch: Any = None,
        embeddings: Any = None,
    ) -> bool:
        """Queue the answered request for the prediction log (never raises).

        For images, the monitoring features computed here are those of the
        batch the model answered (the gate's reference measures the same
        pictures: :func:`clearsight.features.pixel_features` at the model's
        side), about 0.1 ms per 32 px image and 1 ms per 224 px one; the
        writer adds the geometry from the file's header.
        """
        try:
            features = None
            if kind == "images":
                features = [picture_statistics(picture) for picture in batch]
                if embeddings is not None:
                    projected = self.projection.project_rows(embeddings.numpy())
                    features = [a | b for a, b in zip(features, projected, strict=True)]
            return self.prediction_log.log(
                LoggedRequest(
                    at=datetime.now(UTC),
                    puid=puid,
                    model_name=self.config.model_name,
                    model_version=str(self.config.model_version),
                    registered_version=str(self.config.registered_version),
                    answers=answers,
                    images=payload if kind == "images" else None,
                    tags=tags,
                    features=features,
                )
            )
        except Exception:  # noqa: BLE001 - the log must never fail an answer
            return False

    def send_feedback_raw(self, feedback: Any) -> Any:
        """Store the true labels of an answered request (Seldon's feedback call).

        seldon-core routes REST ``POST /api/v1.0/feedback`` (a JSON ``Feedback``,
        which it parses into the protobuf) and gRPC ``SendFeedback`` here alike.
        ``send_feedback_raw`` rather than ``send_feedback``: only the raw
        message carries ``response.meta.puid``, the request id. The forms of
        the truth are those of :func:`clearsight.serving.parse_feedback`; each
        label is one row of ``ground_truths`` with source ``feedback``.

        Args:
            feedback: A ``seldon_core.proto.prediction_pb2.Feedback``.

        Returns:
            A ``SeldonMessage`` whose ``jsonData`` lists what was recorded.

        Raises:
            SeldonMicroserviceException: 400 with what to send instead for a
                missing or unknown request id (not in the prediction log: the
                log is asynchronous, so the queue of this process is looked at
                and other processes' writers are waited for up to
                :data:`FEEDBACK_WAIT` seconds first), a label outside the
                model's classes, a number of labels that differs from the
                request's images, or a server whose log is off; 503 when the
                database cannot be reached. Over gRPC: ``INVALID_ARGUMENT``
                and ``UNAVAILABLE`` with the same message.
        """
        try:
            truth = parse_feedback(feedback, self.config.classes)
            if self.prediction_log is None:
                raise BadRequestError(
                    "This server keeps no prediction log (prediction_log is false in its "
                    "serving.json, or CLEARSIGHT_PREDICTION_LOG=off), so feedback cannot be "
                    "matched to an answer: switch the log on and redeploy",
                    "prediction_log_off",
                )
            images = self._wait_for_prediction(truth.puid)
            if not images:
                raise BadRequestError(
                    f"No answer with request id {truth.puid!r} is in the prediction log: send "
                    f"the meta.puid of an answer of this model server (answers older than "
                    f"{self.prediction_log.retention_days or 'unlimited'} days are deleted; "
                    f"answers the log dropped under overload cannot get feedback)",
                    "unknown_puid",
                )
            if len(truth.labels) != images:
                raise BadRequestError(
                    f"The truth has {len(truth.labels)} label(s) but request {truth.puid!r} "
                    f"had {images} image(s): send one label per image, in request order, "
                    f"e.g. [['3'], ['7']] for two",
                    "truth_count",
                )
            self.prediction_log.record_truths(
                truth.puid, truth.labels, recorded_by=truth.recorded_by
            )
        except BadRequestError as error:
            if has_request_context():
                _set_reject_reason(error.reason)
            else:
                count_rejected(error.reason, "feedback")
            raise SeldonMicroserviceException(
                str(error), status_code=400, reason="BAD_REQUEST"
            ) from None
        except (CatalogError, SQLAlchemyError) as error:
            logger.error("Feedback could not be stored: %s", error)
            raise SeldonMicroserviceException(
                f"The catalog database cannot be reached, so the feedback was not stored: "
                f"{error.__class__.__name__}. Send it again later.",
                status_code=503,
                reason="SERVICE_UNAVAILABLE",
            ) from None
        _record_metrics(
            [
                {
                    "type": "COUNTER",
                    "key": "clearsight_feedback_total",
                    "value": 1,
                    "tags": {"label": label},
                }
                for label in truth.labels
            ],
            "feedback",
        )
        from seldon_core.utils import json_to_seldon_message

        return json_to_seldon_message(
            {
                "jsonData": {"puid": truth.puid, "source": "feedback", "labels": truth.labels},
                "meta": {"puid": truth.puid},
            }
        )

    def _wait_for_prediction(self, puid: str) -> int:
        """Images of request ``puid`` in the log, waiting briefly for other processes' writers.

        Raises:
            CatalogError, SQLAlchemyError: The database cannot be read.
        """
        deadline = time.monotonic() + FEEDBACK_WAIT
        while True:
            images = self.prediction_log.logged_items(puid)
            if images or time.monotonic() >= deadline:
                return images
            time.sleep(0.1)

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


def _api_key_verifier() -> api_keys.ApiKeyVerifier | None:
    """This server's key verifier, or None when keys are off (see :mod:`clearsight.api_keys`).

    Raises:
        ValueError: ``CLEARSIGHT_API_KEYS`` or ``CLEARSIGHT_API_KEYS_TTL`` is unusable.
    """
    if not api_keys.server_requires_keys():
        logger.info("API keys: off (bound to loopback, or CLEARSIGHT_API_KEYS=off).")
        return None
    ttl = api_keys.ttl_from_env()
    logger.info("API keys: required (Authorization: Bearer <key>; cached %g s).", ttl)
    return api_keys.ApiKeyVerifier(ttl=ttl)


def _header_puid(is_proto: bool) -> str | None:
    """The ``Seldon-Puid`` header (REST) or metadata (gRPC) of the request being answered.

    Raises:
        BadRequestError: An unusable id (see :func:`clearsight.serving.request_meta`).
    """
    if is_proto:
        value = getattr(_GRPC_CALL, "puid", None)
    elif has_request_context():
        value = request.headers.get(SELDON_PUID_HEADER)
    else:
        value = None
    return check_puid(value, f"the {SELDON_PUID_HEADER} header") if value else None


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
    503: "UNAVAILABLE",
}


def _grpc_puid(context: Any) -> str | None:
    """The call's ``seldon-puid`` metadata (Seldon's executor sets it), if any."""
    with contextlib.suppress(Exception):  # a context without metadata (tests)
        for key, value in context.invocation_metadata() or ():
            if key.lower() == SELDON_PUID_HEADER.lower():
                return value
    return None


def _abort_with_status(error: SeldonMicroserviceException, context: Any) -> None:
    import grpc

    code = GRPC_STATUS_FOR_HTTP.get(error.status_code, "UNKNOWN")
    context.abort(getattr(grpc.StatusCode, code), str(error.message))


def _grpc_errors_as_status_codes() -> None:
    """Make seldon-core's gRPC ``Predict`` and ``SendFeedback`` answer errors with status codes.

    seldon-core 1.19 lets any exception out of the servicer, so gRPC reports
    ``UNKNOWN`` with "Exception calling application" for a client's mistake
    (it has no gRPC counterpart of the REST error handler). This wraps
    ``seldon_core.wrapper.SeldonModelGRPC.Predict`` and ``SendFeedback``: a
    ``SeldonMicroserviceException`` aborts the call with the status code for its
    HTTP status (``INVALID_ARGUMENT`` for 400, ``UNAVAILABLE`` for 503) and its
    message as the details; any other exception is left to seldon-core
    (``UNKNOWN``). ``Predict`` also hands the call's ``seldon-puid`` metadata
    to :meth:`ImageClassifier.predict_raw`. Idempotent.
    """
    from seldon_core import wrapper

    servicer = wrapper.SeldonModelGRPC
    if getattr(servicer, "_clearsight_status_codes", False):
        return
    predict = servicer.Predict
    send_feedback = servicer.SendFeedback

    def Predict(self: Any, request_grpc: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        _GRPC_CALL.puid = _grpc_puid(context)
        try:
            return predict(self, request_grpc, context)
        except SeldonMicroserviceException as error:
            _abort_with_status(error, context)
        finally:
            _GRPC_CALL.puid = None

    def SendFeedback(self: Any, feedback: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        try:
            return send_feedback(self, feedback, context)
        except SeldonMicroserviceException as error:
            _abort_with_status(error, context)

    servicer.Predict = Predict
    servicer.SendFeedback = SendFeedback
    servicer._clearsight_status_codes = True


#: Every rpc of seldon-core's servicer: each needs the key when keys are required.
GRPC_METHODS = (
    "Predict",
    "SendFeedback",
    "TransformInput",
    "TransformOutput",
    "Route",
    "Aggregate",
    "Metadata",
    "ModelMetadata",
    "GraphMetadata",
)


def _grpc_key(context: Any) -> str | None:
    """The token of the call's ``authorization`` metadata (``Bearer <key>``), if any."""
    with contextlib.suppress(Exception):  # a context without metadata (tests)
        for key, value in context.invocation_metadata() or ():
            if key.lower() == api_keys.HEADER.lower():
                return api_keys.bearer_token(value)
    return None


def _grpc_api_keys() -> None:
    """Check the ``authorization`` metadata of every gRPC call when keys are required.

    seldon-core 1.19 builds its ``grpc.server`` itself (no interceptor can be
    passed), so each rpc method of ``seldon_core.wrapper.SeldonModelGRPC`` is
    wrapped instead: a call whose key is missing or wrong is aborted with
    ``UNAUTHENTICATED`` (the key store unreadable: ``UNAVAILABLE``) and the
    message of the REST 401, and counted in ``clearsight_rejected_total``.
    The reflection service stays open (it lists service names only). The
    verifier is the served model's (``ImageClassifier.api_keys``); with keys
    off, or another model class, the wrappers pass every call on. Idempotent.
    """
    from seldon_core import wrapper

    servicer = wrapper.SeldonModelGRPC
    if getattr(servicer, "_clearsight_api_keys", False):
        return

    def guarded(name: str, method: Any) -> Any:
        def call(self: Any, message: Any, context: Any) -> Any:
            verifier = getattr(self.user_model, "api_keys", None)
            if verifier is not None:
                verdict = verifier.verify(_grpc_key(context))
                if not verdict.accepted:
                    import grpc

                    count_rejected(
                        verdict.reason, "feedback" if name == "SendFeedback" else "predict"
                    )
                    code = (
                        grpc.StatusCode.UNAVAILABLE
                        if verdict.reason == api_keys.UNAVAILABLE
                        else grpc.StatusCode.UNAUTHENTICATED
                    )
                    context.abort(code, api_keys.refusal_message(verdict.reason))
            return method(self, message, context)

        call.__name__ = name
        return call

    for name in GRPC_METHODS:
        if hasattr(servicer, name):
            setattr(servicer, name, guarded(name, getattr(servicer, name)))
    servicer._clearsight_api_keys = True


def _record_metrics(metrics: list[dict[str, Any]], method: str = "predict") -> None:
    """Record custom metrics in seldon-core's store (gRPC answers, feedback, the log writer)."""
    if not _SELDON_METRICS:
        return
    with contextlib.suppress(Exception):  # a metric must never break an answer
        _SELDON_METRICS[0].update(metrics, method)
