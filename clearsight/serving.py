"""Prediction service logic, independent of any serving framework.

Parses the request forms of Seldon's v1 protocol (REST JSON or the gRPC
``SeldonMessage``), validates them strictly, runs the model with the same
preprocessing as training, and shapes one answer per image.
``clearsight.seldon_model`` adapts it to seldon-core; any other server could
reuse it as is (``data.tensor`` and ``data.tftensor`` are read with
seldon-core's protobuf mapping, imported when such a request arrives).

Request forms (Seldon Core v1 *External Prediction API*; ``prediction.proto``):

* ``{"binData": "<base64 image>"}``: one encoded image (base64 as RFC 4648,
  leniently: see :func:`_decode_base64`; raw bytes over gRPC);
* ``{"jsonData": {"images": ["<base64>", ...]}}``: a batch of encoded images;
* ``{"data": {"ndarray": [[[[r, g, b], ...]]]}}``,
  ``{"data": {"tensor": {"shape": [n, size, size, 3], "values": [...]}}}`` or
  ``{"data": {"tftensor": <TensorProto JSON>}}``: already preprocessed
  tensors of shape ``(n, size, size, 3)`` (or ``(size, size, 3)``), numbers
  in [0, 1] (see :func:`check_tensor`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clearsight.decode import DEFAULT_MAX_PIXELS, DecodeOptions

SERVING_FILE = "serving.json"
MODEL_FILE = "model.keras"
#: The embedding projection (:class:`clearsight.features.EmbeddingProjection`) as JSON,
#: when the served version has one: the prediction log then records ``embedding_i``.
MONITORING_FILE = "monitoring.json"
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # a full batch of photos in base64 fits
#: Longest request id (``meta.puid``) accepted from a client (Seldon's are 36-character UUIDs).
MAX_PUID_LENGTH = 128
MAX_RECORDER_LENGTH = 255


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
    decoding: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # Record every answered image in the catalog's prediction_log (clearsight.prediction_log);
    # CLEARSIGHT_PREDICTION_LOG=on|off overrides it when the server starts.
    prediction_log: bool = True
    # Days of prediction_log rows kept (0: forever); CLEARSIGHT_PREDICTION_LOG_RETENTION_DAYS.
    prediction_log_retention_days: int = 90
    # Whose bytes the log keeps (content-addressed under images_uri): never, uncertain or all;
    # plus this share of the other answered images, drawn at random.
    keep_images: str = "uncertain"
    keep_images_sample_share: float = 0.0
    # Where kept images go (the deploy step sets <artifact store>/prediction-log); "": nowhere.
    images_uri: str = ""

    @property
    def decode_options(self) -> DecodeOptions:
        """The training data's decoding rules (background, bit depth)."""
        return DecodeOptions(**self.decoding)

    @classmethod
    def load(cls, folder: str | Path) -> ServingConfig:
        """Read ``serving.json`` from a model folder."""
        return cls(**json.loads((Path(folder) / SERVING_FILE).read_text()))

    def save(self, folder: str | Path) -> None:
        """Write ``serving.json`` into a model folder."""
        (Path(folder) / SERVING_FILE).write_text(json.dumps(self.__dict__, indent=2))


class DecodedBytes(bytes):
    """Image bytes that arrived as bytes (gRPC's ``binData``), not as base64 text."""


# RFC 4648 section 4 (standard) and section 5 (URL- and filename-safe) alphabets.
_BASE64_URLSAFE = str.maketrans("-_", "+/")
# Line breaks and blanks around or inside the text (RFC 2045 MIME wraps at 76
# characters; RFC 4648 section 3.3 lets a decoder ignore them when the
# specification referring to it says so, as Seldon's JSON mapping of `bytes` does).
_BASE64_BLANKS = {ord(c): None for c in " \t\r\n\f\v"}
_BASE64_NOT_ALPHABET = re.compile(r"[^A-Za-z0-9+/=\-_ \t\r\n\f\v]")
_DATA_URL = re.compile(r"data:(?P<params>[^,]*),", re.IGNORECASE)


def _decode_base64(value: Any, where: str) -> bytes:
    """Decode one base64 image field (``binData``, ``jsonData.images[i]``).

    Accepted (RFC 4648 base64, as protobuf's JSON mapping of ``bytes`` and
    Seldon's v1 protocol carry binary data):

    * the standard alphabet (``+/``, section 4) or the URL-safe one (``-_``,
      section 5), padded with ``=`` or not (section 3.2);
    * line breaks, a trailing newline and surrounding blanks (MIME-wrapped
      text, RFC 2045; section 3.3 lets a decoder skip them);
    * a ``data:image/...;base64,`` prefix (an RFC 2397 data URL, what browsers'
      ``FileReader.readAsDataURL`` and ``canvas.toDataURL`` produce): stripped;
    * bytes (``binData`` over gRPC: already binary, returned as they are) and
      base64 as ASCII bytes (a multipart form upload, which seldon-core
      re-encodes to base64 bytes).

    Raises:
        BadRequestError: Reason ``bad_base64``, naming what is wrong: an empty
            or non-string value, the first character outside the alphabet and
            its position (counted from 0 in the value as sent), ``=`` padding
            before the end, a length no base64 text can have, or a data URL
            without ``;base64``.
    """
    if isinstance(value, DecodedBytes):
        if not value:
            raise BadRequestError(f"{where} is empty: send the image file's bytes", "bad_base64")
        return bytes(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise BadRequestError(f"{where} is not base64 text", "bad_base64") from None
    if not isinstance(value, str):
        raise BadRequestError(
            f"{where} must be a base64 string, not {_json_type(value)}", "bad_base64"
        )
    start = 0
    url = _DATA_URL.match(value.lstrip())
    if url:
        params = [p.strip().lower() for p in url["params"].split(";")]
        if "base64" not in params[1:]:
            raise BadRequestError(
                f"{where} is a data: URL without ;base64 (percent-encoded data is not "
                f"accepted): send data:image/png;base64,<base64> or the base64 text alone",
                "bad_base64",
            )
        start = len(value) - len(value.lstrip()) + url.end()
    elif value.lstrip()[:5].lower() == "data:":
        raise BadRequestError(
            f"{where} is a data: URL without the ',' before its data: send "
            f"data:image/png;base64,<base64> or the base64 text alone",
            "bad_base64",
        )
    bad = _BASE64_NOT_ALPHABET.search(value, start)
    if bad:
        char = bad.group()
        raise BadRequestError(
            f"{where} is not base64: character {char!r} (U+{ord(char):04X}) at position "
            f"{bad.start()} is not in the base64 alphabet (RFC 4648: A-Z a-z 0-9 + / or "
            f"URL-safe - _, '=' padding at the end)",
            "bad_base64",
        )
    text = value[start:].translate(_BASE64_BLANKS)
    if not text:
        raise BadRequestError(f"{where} is empty: send the image file as base64 text", "bad_base64")
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if "=" in body:
        position = value.index("=", start)
        raise BadRequestError(
            f"{where} is not base64: padding '=' at position {position} before the end "
            f"(two base64 texts glued together?)",
            "bad_base64",
        )
    if padding > 2 or len(body) % 4 == 1:
        raise BadRequestError(
            f"{where} is not base64: {len(body)} base64 character{'s' * (len(body) != 1)}"
            + (f" and {padding} '='" if padding else "")
            + " cannot encode whole bytes (truncated or with characters missing?)",
            "bad_base64",
        )
    body = body.translate(_BASE64_URLSAFE)
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as error:  # not expected after the checks above
        raise BadRequestError(f"{where} is not valid base64: {error}", "bad_base64") from None


def _json_type(value: Any) -> str:
    """How a JSON value's type is called in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


def parse_request(request: Any, config: ServingConfig) -> tuple[str, list[bytes] | np.ndarray]:
    """Return ``("images", [bytes, ...])`` or ``("tensor", array)`` for a request.

    Args:
        request: The Seldon v1 request: a JSON object (REST) or a
            ``SeldonMessage`` protobuf (gRPC), in one of the forms the module
            docstring lists.
        config: The served model's settings (``image_size``, ``max_batch``).

    Returns:
        ``("images", [bytes, ...])``: the encoded image files, or
        ``("tensor", array)``: ``float32`` of shape ``(n, size, size, 3)`` in
        [0, 1] (see :func:`check_tensor`).

    Raises:
        BadRequestError: For anything the protocol or the model cannot take.
    """
    if is_seldon_message(request):
        request = request_from_proto(request)
    if not isinstance(request, dict) or not request:
        raise BadRequestError(
            "Empty or non-object request: send {'binData': <base64 image>}, "
            "{'jsonData': {'images': [<base64>, ...]}} or {'data': {'ndarray': [...]}} "
            "(or data.tensor, data.tftensor)",
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
            f"Unknown payload keys {sorted(request)}: use binData, jsonData or data "
            f"(ndarray, tensor or tftensor)",
            "bad_payload",
        )
    if len(images) > config.max_batch:
        raise BadRequestError(
            f"Batch of {len(images)} images exceeds max_batch={config.max_batch}", "batch_too_large"
        )
    # Each image is validated where it is decoded (clearsight.decode, in the model's
    # preprocessing): an unusable one is a 400 "invalid_image" naming its index.
    return "images", images


# The model's documented input is preprocessed RGB in [0, 1]. Values this far
# outside still pass (and are clipped into [0, 1]): float32 rounding of a value
# computed as x / 255 or by a resize can land a few ulps past 0 or 1 (the ulp of
# float32 at 1.0 is 1.2e-7), and no real mistake is that small.
TENSOR_RANGE = (0.0, 1.0)
TENSOR_RANGE_TOLERANCE = 1e-6
TENSOR_FORMS = ("ndarray", "tensor", "tftensor")
_JSON_NUMBERS = {int, float}
_TYPE_NAMES = {bool: "booleans", str: "strings", type(None): "null", dict: "objects"}


def _parse_tensor(data: Any, config: ServingConfig) -> np.ndarray:
    """Read and check ``data`` of a REST request (dict) or a gRPC one (``DefaultData``).

    The three forms of Seldon's v1 ``DefaultData`` (Seldon Core docs,
    *External Prediction API*, and ``prediction.proto``):

    * ``{"ndarray": [[[[r, g, b], ...]]]}``: nested JSON arrays of numbers;
    * ``{"tensor": {"shape": [n, size, size, 3], "values": [...]}}``: the
      values flattened in row-major (C) order; ``SeldonClient``'s default;
    * ``{"tftensor": {...}}``: a TensorFlow ``TensorProto`` in protobuf's JSON
      mapping, as ``seldon_core.utils.array_to_rest_datadef`` writes it
      (``tf.make_tensor_proto``): ``dtype``, ``tensorShape``, and
      ``tensorContent`` or ``floatVal``/``doubleVal``/``intVal``...

    ``names`` is allowed and ignored. ``tensor`` and ``tftensor`` are read with
    seldon-core's own mapping (``seldon_core.utils.json_to_seldon_message`` and
    ``grpc_datadef_to_array``, which uses ``tf.make_ndarray``).

    Returns:
        ``float32`` array ``(n, size, size, 3)`` in [0, 1]: see :func:`check_tensor`.

    Raises:
        BadRequestError: ``bad_tensor`` for a missing, ambiguous or unreadable
            form, a non-numeric dtype (booleans, strings, null), the wrong
            shape or non-finite values; ``tensor_range`` for values outside
            [0, 1]; ``batch_too_large`` over ``max_batch``.
    """
    if _is_proto(data):
        return check_tensor(*_array_from_datadef(data), config)
    forms = [form for form in TENSOR_FORMS if isinstance(data, dict) and form in data]
    if len(forms) != 1:
        raise BadRequestError(
            "data must hold exactly one of ndarray, tensor or tftensor: "
            "{'ndarray': [[[[r, g, b], ...]]]}, {'tensor': {'shape': [n, size, size, 3], "
            "'values': [...]}} or {'tftensor': <TensorProto JSON>} (names optional)",
            "bad_tensor",
        )
    (form,) = forms
    if form == "ndarray":
        return check_tensor(
            _array_from_json(data["ndarray"], "data.ndarray"), "data.ndarray", config
        )
    if form == "tensor":
        _check_json_tensor(data["tensor"])
    from google.protobuf import json_format
    from seldon_core.proto import prediction_pb2

    datadef = prediction_pb2.DefaultData()
    try:
        json_format.ParseDict({form: data[form]}, datadef)
    except json_format.ParseError as error:
        raise BadRequestError(f"data.{form} is not valid: {error}", "bad_tensor") from None
    return check_tensor(*_array_from_datadef(datadef), config)


def _check_json_tensor(tensor: Any) -> None:
    """``data.tensor`` of a REST request: JSON numbers only (protobuf takes true as 1.0)."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("values"), list):
        raise BadRequestError(
            "data.tensor must be {'shape': [n, size, size, 3], 'values': [numbers, ...]}",
            "bad_tensor",
        )
    kinds = set(map(type, tensor["values"])) - _JSON_NUMBERS
    if kinds:
        names = sorted(_TYPE_NAMES.get(kind, kind.__name__) for kind in kinds)
        raise BadRequestError(
            f"data.tensor.values must hold numbers only; found {', '.join(names)}",
            "bad_tensor",
        )


def _array_from_json(value: Any, where: str) -> np.ndarray:
    """Nested JSON arrays of numbers to an array; booleans, strings, null refused."""
    if not isinstance(value, list):
        raise BadRequestError(
            f"{where} must be an array of numbers, not {_json_type(value)}", "bad_tensor"
        )
    try:
        cells = np.array(value, dtype=object)
    except ValueError:  # numpy could not even lay it out
        raise BadRequestError(
            f"{where} is ragged: its rows must all have the same length", "bad_tensor"
        ) from None
    kinds = set(map(type, cells.ravel())) - _JSON_NUMBERS
    if kinds:
        if kinds & {list, tuple}:
            raise BadRequestError(
                f"{where} is ragged: its rows must all have the same length "
                f"(read as shape {list(cells.shape)} of arrays)",
                "bad_tensor",
            )
        names = sorted(_TYPE_NAMES.get(kind, kind.__name__) for kind in kinds)
        raise BadRequestError(
            f"{where} must be a numeric array; found {', '.join(names)} "
            f"(pixel values are numbers in [0, 1])",
            "bad_tensor",
        )
    try:
        return cells.astype(np.float64)
    except OverflowError:
        raise BadRequestError(f"{where} holds a number too large", "bad_tensor") from None


def _is_proto(value: Any) -> bool:
    return hasattr(value, "WhichOneof") and hasattr(value, "DESCRIPTOR")


def is_seldon_message(value: Any) -> bool:
    """Whether ``value`` is a Seldon ``SeldonMessage`` protobuf (a gRPC request)."""
    return _is_proto(value) and value.DESCRIPTOR.name == "SeldonMessage"


def request_from_proto(message: Any) -> dict[str, Any]:
    """A gRPC ``SeldonMessage`` as the request dict :func:`parse_request` reads.

    ``binData`` stays binary (:class:`DecodedBytes`, no base64 over gRPC),
    ``jsonData`` becomes plain JSON values, ``data`` stays the
    ``DefaultData`` message (read by :func:`_parse_tensor`). ``strData``,
    ``customData`` and an empty message give a dict that
    :func:`parse_request` refuses with the forms it takes.
    """
    kind = message.WhichOneof("data_oneof")
    if kind == "binData":
        return {"binData": DecodedBytes(message.binData)}
    if kind == "jsonData":
        from google.protobuf import json_format

        return {"jsonData": json_format.MessageToDict(message.jsonData)}
    if kind == "data":
        return {"data": message.data}
    return {kind: True} if kind else {}


def _array_from_datadef(datadef: Any) -> tuple[np.ndarray, str]:
    """A Seldon ``DefaultData`` protobuf to ``(array, "data.<form>")``, checked first.

    Uses seldon-core's ``grpc_datadef_to_array`` for ``tensor`` and
    ``tftensor`` once the message is known to be readable: it trusts the
    declared shape, which must therefore match the number of values.
    """
    form = datadef.WhichOneof("data_oneof")
    where = f"data.{form}"
    if form == "ndarray":
        from google.protobuf import json_format

        return _array_from_json(json_format.MessageToDict(datadef.ndarray), where), where
    if form == "tensor":
        shape = list(datadef.tensor.shape)
        if any(d < 0 for d in shape):
            raise BadRequestError(
                f"data.tensor has shape {shape}: dimensions cannot be negative; "
                f"expected [n, size, size, 3]",
                "bad_tensor",
            )
        if int(np.prod(shape)) != len(datadef.tensor.values):
            raise BadRequestError(
                f"data.tensor has shape {shape} ({int(np.prod(shape))} values) but "
                f"{len(datadef.tensor.values)} values: shape is [n, size, size, 3] and values "
                f"holds n*size*size*3 numbers in row-major order",
                "bad_tensor",
            )
    elif form == "tftensor":
        import tensorflow as tf

        try:
            dtype = tf.dtypes.as_dtype(datadef.tftensor.dtype)
        except TypeError:
            dtype = None
        if dtype is None or not (dtype.is_floating or dtype.is_integer) or dtype.is_quantized:
            raise BadRequestError(
                f"data.tftensor has dtype {dtype.name if dtype else datadef.tftensor.dtype}: "
                f"send a float tensor (DT_FLOAT) of preprocessed RGB in [0, 1]",
                "bad_tensor",
            )
    else:
        raise BadRequestError("data must hold one of ndarray, tensor or tftensor", "bad_tensor")
    from seldon_core.utils import grpc_datadef_to_array

    try:
        return np.asarray(grpc_datadef_to_array(datadef)), where
    except (ValueError, TypeError) as error:
        raise BadRequestError(f"{where} could not be read: {error}", "bad_tensor") from None


def check_tensor(tensor: np.ndarray, where: str, config: ServingConfig) -> np.ndarray:
    """Check a client's tensor against the model's input and return it as ``float32``.

    The model takes preprocessed RGB: shape ``(n, size, size, 3)`` (or one
    image ``(size, size, 3)``), ``1 <= n <= max_batch``, finite numbers in
    ``TENSOR_RANGE`` [0, 1]. Values up to ``TENSOR_RANGE_TOLERANCE`` (1e-6)
    outside are float rounding and are clipped into [0, 1]; anything further
    out is refused with the range received and, for the classic mistakes,
    the fix: 8-bit pixel values (max <= 255: divide by 255) or [-1, 1]
    ((x + 1) / 2).

    Raises:
        BadRequestError: ``bad_tensor`` (dtype, shape, NaN/infinity),
            ``batch_too_large``, ``tensor_range``.
    """
    if tensor.dtype.kind not in "iuf":
        raise BadRequestError(
            f"{where} has dtype {tensor.dtype}: send numbers (preprocessed RGB in [0, 1])",
            "bad_tensor",
        )
    size = config.image_size
    if tensor.ndim == 3:
        tensor = tensor[np.newaxis]
    if tensor.ndim != 4 or tensor.shape[1:] != (size, size, 3) or len(tensor) == 0:
        raise BadRequestError(
            f"{where} has shape {list(tensor.shape)}; expected [n, {size}, {size}, 3] "
            f"with n >= 1, or [{size}, {size}, 3] (preprocessed RGB in [0, 1])",
            "bad_tensor",
        )
    if len(tensor) > config.max_batch:
        raise BadRequestError(
            f"Batch of {len(tensor)} exceeds max_batch={config.max_batch}", "batch_too_large"
        )
    tensor = tensor.astype(np.float64, copy=False)
    if not np.isfinite(tensor).all():
        raise BadRequestError(f"{where} contains NaN or infinity", "bad_tensor")
    low, high = TENSOR_RANGE
    smallest, largest = float(tensor.min()), float(tensor.max())
    if smallest < low - TENSOR_RANGE_TOLERANCE or largest > high + TENSOR_RANGE_TOLERANCE:
        if smallest >= low and largest <= 255:
            hint = "8-bit pixel values? divide by 255"
        elif smallest >= -1 - TENSOR_RANGE_TOLERANCE and largest <= 1 + TENSOR_RANGE_TOLERANCE:
            hint = "values in [-1, 1]? map them with (x + 1) / 2"
        else:
            hint = "scale each channel to [0, 1] as the training preprocessing does"
        raise BadRequestError(
            f"{where} values must be in [0, 1] (preprocessed RGB, the model's input); "
            f"received min {smallest:g}, max {largest:g}: {hint}",
            "tensor_range",
        )
    return np.clip(tensor, low, high).astype(np.float32)


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


# --- request ids and client metadata ---------------------------------------


def check_puid(value: Any, where: str) -> str | None:
    """A request id as given (stripped), None when absent.

    Raises:
        BadRequestError: ``bad_meta`` for a non-string or one longer than
            :data:`MAX_PUID_LENGTH`.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequestError(
            f"{where} must be a string (a request id), not {_json_type(value)}", "bad_meta"
        )
    puid = str(value).strip()
    if len(puid) > MAX_PUID_LENGTH:
        raise BadRequestError(
            f"{where} has {len(puid)} characters; at most {MAX_PUID_LENGTH} are accepted "
            f"(leave it out and the server makes one)",
            "bad_meta",
        )
    return puid or None


def request_meta(request: Any) -> tuple[str | None, dict[str, Any] | None]:
    """``meta.puid`` and ``meta.tags`` of a Seldon v1 request (REST dict or ``SeldonMessage``).

    Seldon's ``Meta``: ``puid`` is the request id (Seldon's executor passes its
    own in the ``Seldon-Puid`` header instead; the server looks there next);
    ``tags`` is client metadata of any JSON values, e.g.
    ``{"site": "north", "device": "scanner-2"}``, which the prediction log keeps.

    Returns:
        ``(puid or None, tags or None)``.

    Raises:
        BadRequestError: ``bad_meta`` for a ``meta`` that is not an object,
            a ``puid`` that is not a string or longer than
            :data:`MAX_PUID_LENGTH`, ``tags`` that are not an object.
    """
    if is_seldon_message(request):
        if not request.HasField("meta"):
            return None, None
        tags = None
        if len(request.meta.tags):
            from google.protobuf import json_format

            tags = json_format.MessageToDict(request.meta).get("tags") or None
        return check_puid(request.meta.puid, "meta.puid"), tags
    if not isinstance(request, dict) or request.get("meta") is None:
        return None, None
    meta = request["meta"]
    if not isinstance(meta, dict):
        raise BadRequestError(
            f"meta must be an object such as {{'puid': '<request id>', 'tags': {{'site': "
            f"'north'}}}}, not {_json_type(meta)}",
            "bad_meta",
        )
    tags = meta.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise BadRequestError(
            f"meta.tags must be an object of name: value (e.g. {{'site': 'north'}}), not "
            f"{_json_type(tags)}",
            "bad_meta",
        )
    return check_puid(meta.get("puid"), "meta.puid"), tags or None


# --- feedback ------------------------------------------------------------

FEEDBACK_EXAMPLE = (  # JSON, to paste into a request body
    '{"response": {"meta": {"puid": "<meta.puid of the answer>"}}, '
    '"truth": {"data": {"ndarray": [["<label>"]]}}}'
)


@dataclass(frozen=True)
class FeedbackTruth:
    """What a Seldon feedback call says: which request, its true labels, who says so.

    Attributes:
        puid: The answered request's id (the answer's ``meta.puid``).
        labels: The true label of each image of the request, in request order.
        recorded_by: ``truth.meta.tags.recorded_by`` when given.
    """

    puid: str
    labels: list[str]
    recorded_by: str | None = None


def _label_text(value: Any, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value).is_integer():
            return str(int(value))  # [[3]] for the class "3"; JSON numbers arrive as floats
        return str(value)
    raise BadRequestError(
        f"{where} must be a label (a class name such as '3'), not {_json_type(value)}",
        "bad_truth",
    )


def _labels_from_rows(values: Any, where: str) -> list[str]:
    """``[["a"], ["b"]]`` (one row per image) or ``["a", "b"]`` to ``["a", "b"]``."""
    if not isinstance(values, list) or not values:
        raise BadRequestError(
            f"{where} must list one label per image of the request, e.g. [['3']] or "
            f"[['3'], ['7']] for two images",
            "bad_truth",
        )
    labels = []
    for i, row in enumerate(values):
        if isinstance(row, list):
            if len(row) != 1:
                raise BadRequestError(
                    f"{where}[{i}] has {len(row)} values: give exactly one label per image",
                    "bad_truth",
                )
            row = row[0]
        labels.append(_label_text(row, f"{where}[{i}]"))
    return labels


def _truth_labels(truth: Any) -> list[str]:
    """The labels of the feedback's ``truth`` (a ``SeldonMessage``), in any accepted form."""
    from google.protobuf import json_format

    kind = truth.WhichOneof("data_oneof")
    if kind == "strData":
        return [_label_text(truth.strData, "truth.strData")]
    if kind == "jsonData":
        body = json_format.MessageToDict(truth.jsonData)
        if isinstance(body, dict) and "label" in body:
            return [_label_text(body["label"], "truth.jsonData.label")]
        if isinstance(body, dict) and "labels" in body:
            return _labels_from_rows(body["labels"], "truth.jsonData.labels")
        raise BadRequestError(
            "truth.jsonData must be {'label': '<label>'} (one image) or "
            "{'labels': ['<label>', ...]} (one per image of the request)",
            "bad_truth",
        )
    if kind == "data":
        form = truth.data.WhichOneof("data_oneof")
        if form == "ndarray":
            values = json_format.MessageToDict(truth.data.ndarray)
            return _labels_from_rows(values, "truth.data.ndarray")
        if form == "tensor":
            return _labels_from_rows(list(truth.data.tensor.values), "truth.data.tensor.values")
        raise BadRequestError(
            f"truth.data.{form or '?'} cannot carry labels: use truth.data.ndarray, e.g. [['3']]",
            "bad_truth",
        )
    raise BadRequestError(
        "The feedback has no truth"
        + (f" (truth.{kind} cannot carry a label)" if kind else "")
        + f": send the true label of each image, e.g. {FEEDBACK_EXAMPLE}; "
        "also accepted: truth {'jsonData': {'label': '<label>'}}, {'strData': '<label>'} "
        "or the label alone",
        "missing_truth",
    )


def parse_feedback(feedback: Any, classes: list[str]) -> FeedbackTruth:
    """Read a Seldon ``Feedback`` message (REST or gRPC: seldon-core gives both as protobuf).

    The request is named by ``response.meta.puid`` (the answer's
    ``meta.puid``; ``request.meta.puid`` is read when the response has none).
    The truth is one label per image of that request, in request order, as:

    * ``truth.data.ndarray``: ``[["3"]]``, or ``[["3"], ["7"]]`` for two
      images (a flat ``["3", "7"]`` too; numbers are read as their text, so
      ``[[3]]`` is the class ``"3"``);
    * ``truth.jsonData``: ``{"label": "3"}`` or ``{"labels": ["3", "7"]}``;
    * ``truth.strData``: ``"3"`` (over REST the truth may also be the plain
      string ``"3"``: the server's REST hook rewrites it to ``strData``).

    ``truth.meta.tags.recorded_by``, when given, names who knows it.
    ``reward`` is ignored here (seldon-core records it as its own metric).

    Args:
        feedback: A ``seldon_core.proto.prediction_pb2.Feedback``.
        classes: The model's classes: a label outside them is refused.

    Returns:
        The request id, its true labels and who recorded them.

    Raises:
        BadRequestError: ``missing_puid``, ``bad_meta``, ``missing_truth``,
            ``bad_truth`` or ``unknown_label``, with what to send instead.
    """
    puid = check_puid(feedback.response.meta.puid, "response.meta.puid") or check_puid(
        feedback.request.meta.puid, "request.meta.puid"
    )
    if not puid:
        raise BadRequestError(
            "The feedback names no request: put the answer's meta.puid (every answer of "
            f"this server carries one) in response.meta.puid, e.g. {FEEDBACK_EXAMPLE}",
            "missing_puid",
        )
    labels = _truth_labels(feedback.truth)
    known = set(classes)
    for label in labels:
        if label not in known:
            shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
            raise BadRequestError(
                f"Label {label!r} is not one of the model's {len(classes)} classes ({shown}): "
                "send the true label spelled as a class (GET /metadata lists them)",
                "unknown_label",
            )
    recorded_by = None
    if feedback.truth.HasField("meta") and "recorded_by" in feedback.truth.meta.tags:
        from google.protobuf import json_format

        value = json_format.MessageToDict(feedback.truth.meta)["tags"]["recorded_by"]
        if not isinstance(value, str) or len(value) > MAX_RECORDER_LENGTH:
            raise BadRequestError(
                f"truth.meta.tags.recorded_by must be a name of at most {MAX_RECORDER_LENGTH} "
                "characters",
                "bad_meta",
            )
        recorded_by = value or None
    return FeedbackTruth(puid=puid, labels=labels, recorded_by=recorded_by)
