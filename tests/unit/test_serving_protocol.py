"""Seldon v1 request parsing: base64 forms, tensor forms and their checks, ports.

Every case here failed on the code before issue 11: lenient base64 (RFC 4648)
was refused, out-of-range tensors were served, ``data.tensor``/``data.tftensor``
were refused, gRPC ``SeldonMessage`` requests were not understood, and ports
collided with the platform's documented ones.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import uuid

import numpy as np
import pytest

from clearsight.serving import BadRequestError, ServingConfig, parse_request

SIZE = 4
TOLERANCE = 1e-6  # clearsight.serving.TENSOR_RANGE_TOLERANCE
CONFIG = ServingConfig(
    model_name="m", model_version="1", classes=list("0123456789"), image_size=SIZE, max_batch=4
)
PAYLOAD = bytes(range(256)) * 2 + b"\xfb\xff\xfe"  # bytes whose base64 has + and / (- and _)
STANDARD = base64.b64encode(PAYLOAD).decode()
URLSAFE = base64.urlsafe_b64encode(PAYLOAD).decode()


def images_of(request: dict) -> list[bytes]:
    kind, images = parse_request(request, CONFIG)
    assert kind == "images"
    return images


def refused(request, reason: str) -> str:
    with pytest.raises(BadRequestError) as raised:
        parse_request(request, CONFIG)
    assert raised.value.reason == reason, str(raised.value)
    return str(raised.value)


# --- base64 (RFC 4648), binData and jsonData.images[i] ----------------------

ACCEPTED_BASE64 = {
    "MIME line breaks (76 columns, CRLF)": "\r\n".join(
        STANDARD[i : i + 76] for i in range(0, len(STANDARD), 76)
    ),
    "line breaks (LF)": "\n".join(STANDARD[i : i + 64] for i in range(0, len(STANDARD), 64)),
    "a trailing newline": STANDARD + "\n",
    "surrounding whitespace": "  \t" + STANDARD + " \n",
    "the URL-safe alphabet": URLSAFE,
    "the URL-safe alphabet without padding": URLSAFE.rstrip("="),
    "no padding": STANDARD.rstrip("="),
    "a data: URL prefix": "data:image/png;base64," + STANDARD,
    "a data: URL with parameters and a newline": " data:image/jpeg;name=x.jpg;base64,"
    + STANDARD
    + "\n",
}


@pytest.mark.parametrize("form", sorted(ACCEPTED_BASE64))
def test_every_valid_base64_form_is_accepted_in_bindata_and_jsondata(form):
    assert STANDARD.endswith("=") and ("+" in STANDARD or "/" in STANDARD)
    text = ACCEPTED_BASE64[form]
    assert images_of({"binData": text}) == [PAYLOAD]
    assert images_of({"jsonData": {"images": [STANDARD, text]}}) == [PAYLOAD, PAYLOAD]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("%%%", "character '%' (U+0025) at position 0"),
        ("QUJD*QUJD", "character '*' (U+002A) at position 4"),
        ("data:image/png;base64,QUJD!", "character '!' (U+0021) at position 26"),
        ("data:image/png,QUJD", "data: URL without ;base64"),
        ("data:image/png;base64", "data: URL without the ','"),
        ("QUJD=QUJD", "padding '=' at position 4 before the end"),
        ("QUJDR", "5 base64 characters cannot encode whole bytes"),
        ("QQ===", "3 '='"),
        ("", "is empty"),
        ("  \n", "is empty"),
    ],
)
def test_what_is_not_base64_is_refused_saying_what_is_wrong(text, needle):
    message = refused({"binData": text}, "bad_base64")
    assert needle in message and message.startswith("binData")
    message = refused({"jsonData": {"images": [STANDARD, text]}}, "bad_base64")
    assert message.startswith("jsonData.images[1]") and needle in message


@pytest.mark.parametrize(("value", "kind"), [(5, "a number"), (None, "null"), ([], "an array")])
def test_a_non_string_bindata_names_its_type(value, kind):
    assert f"not {kind}" in refused({"binData": value}, "bad_base64")


# --- data.ndarray: dtype, shape, finiteness, range ----------------------------


def image_tensor(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3))


def with_value(tensor: np.ndarray, value: float) -> np.ndarray:
    tensor = tensor.copy()
    tensor.flat[0] = value
    return tensor


def test_an_ndarray_in_range_is_served_as_float32():
    tensor = image_tensor()
    kind, parsed = parse_request({"data": {"ndarray": tensor.tolist(), "names": []}}, CONFIG)
    assert kind == "tensor" and parsed.dtype == np.float32 and parsed.shape == tensor.shape
    np.testing.assert_allclose(parsed, tensor, atol=1e-7)
    _, one = parse_request({"data": {"ndarray": tensor[0].tolist()}}, CONFIG)
    assert one.shape == (1, SIZE, SIZE, 3)


def test_float_rounding_just_outside_the_range_is_tolerated_and_clipped():
    tensor = image_tensor(1)
    tensor[0, 0, 0] = [1 + TOLERANCE / 2, -TOLERANCE / 2, 0.5]
    _, parsed = parse_request({"data": {"ndarray": tensor.tolist()}}, CONFIG)
    assert parsed.max() == 1.0 and parsed.min() == 0.0


@pytest.mark.parametrize(
    ("values", "needles"),
    [
        (
            lambda t: np.round(t * 255),
            ["must be in [0, 1]", "received min", "max 2", "divide by 255"],
        ),
        (lambda t: t * 2 - 1, ["must be in [0, 1]", "received min -", "(x + 1) / 2"]),
        (lambda t: with_value(t, 1.001), ["must be in [0, 1]", "max 1.001"]),
        (lambda t: with_value(t, -0.001), ["must be in [0, 1]", "min -0.001"]),
        (lambda t: t * 1000, ["must be in [0, 1]", "scale each channel to [0, 1]"]),
    ],
    ids=["0..255", "[-1, 1]", "just over 1", "just under 0", "beyond 255"],
)
def test_an_ndarray_out_of_range_is_refused_with_the_range_and_a_hint(values, needles):
    tensor = values(image_tensor())
    message = refused({"data": {"ndarray": tensor.tolist()}}, "tensor_range")
    assert message.startswith("data.ndarray")
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize(
    ("ndarray", "needle"),
    [
        (np.ones((1, SIZE, SIZE, 3), bool).tolist(), "found booleans"),
        ([[[["0.5"] * 3] * SIZE] * SIZE], "found strings"),
        ([[[[0.5, None, 0.5]] * SIZE] * SIZE], "found null"),
        ([[0.1, 0.2], [0.3]], "ragged"),
        ([0.5] * 3, "has shape [3]"),
        (np.zeros((1, SIZE, SIZE, 1)).tolist(), "expected [n, 4, 4, 3]"),
        ([], "has shape [0]"),
        (0.5, "must be an array of numbers, not a number"),
    ],
    ids=["booleans", "strings", "null", "ragged", "vector", "one channel", "empty", "scalar"],
)
def test_an_ndarray_of_the_wrong_dtype_or_shape_is_refused(ndarray, needle):
    assert needle in refused({"data": {"ndarray": ndarray}}, "bad_tensor")


def test_nan_and_an_oversized_batch_are_refused():
    tensor = image_tensor(1)
    tensor[0, 0, 0, 0] = np.nan
    refused(json.loads(json.dumps({"data": {"ndarray": tensor.tolist()}})), "bad_tensor")
    refused({"data": {"ndarray": image_tensor(5).tolist()}}, "batch_too_large")


# --- data.tensor and data.tftensor (REST JSON, as seldon-core writes them) ----


def rest_datadef(payload_type: str, array: np.ndarray) -> dict:
    """The request body seldon-core's own SeldonClient sends (JSON round trip)."""
    from seldon_core.utils import array_to_rest_datadef

    return json.loads(
        json.dumps({"data": array_to_rest_datadef(payload_type, array)}, default=list)
    )


@pytest.mark.parametrize("payload_type", ["tensor", "tftensor", "ndarray"])
def test_every_seldon_data_form_is_served(payload_type):
    tensor = image_tensor(3)
    kind, parsed = parse_request(rest_datadef(payload_type, tensor), CONFIG)
    assert kind == "tensor" and parsed.dtype == np.float32
    np.testing.assert_allclose(parsed, tensor, atol=1e-7)
    message = refused(rest_datadef(payload_type, tensor * 255), "tensor_range")
    assert message.startswith(f"data.{payload_type}") and "divide by 255" in message


def test_tftensor_of_float32_and_one_image_is_served():
    tensor = image_tensor(1)[0].astype(np.float32)
    _, parsed = parse_request(rest_datadef("tftensor", tensor), CONFIG)
    assert parsed.shape == (1, SIZE, SIZE, 3)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"tensor": {"shape": [1, SIZE, SIZE, 3], "values": [0.5]}}, "but 1 values"),
        ({"tensor": {"shape": [1, SIZE, SIZE, 3], "values": [True] * 48}}, "found booleans"),
        ({"tensor": {"shape": [1, SIZE, SIZE, 3], "values": ["x"] * 48}}, "found strings"),
        ({"tensor": {"shape": [-48], "values": [0.5] * 48}}, "cannot be negative"),
        ({"tensor": {"shape": [48], "values": [0.5] * 48}}, "has shape [48]"),
        ({"tensor": [0.5]}, "data.tensor must be {'shape'"),
        ({"tftensor": {"dtype": "DT_BOOL", "boolVal": [True]}}, "dtype bool"),
        ({"tftensor": {"dtype": "DT_STRING", "stringVal": ["eA=="]}}, "dtype string"),
        ({"tftensor": {"bogus": 1}}, "data.tftensor is not valid"),
        (
            {
                "tftensor": {
                    "dtype": "DT_FLOAT",
                    "tensorShape": {"dim": [{"size": "1"}, {"size": "4"}]},
                    "tensorContent": "AAAA",
                }
            },
            "data.tftensor could not be read",
        ),
        ({"names": ["a"]}, "exactly one of ndarray, tensor or tftensor"),
        ({"ndarray": [], "tensor": {}}, "exactly one of ndarray, tensor or tftensor"),
    ],
)
def test_a_bad_tensor_or_tftensor_is_refused_saying_why(data, needle):
    assert needle in refused({"data": data}, "bad_tensor")


# --- gRPC: the SeldonMessage protobuf as seldon-core hands it to predict_raw ---


def test_a_grpc_seldon_message_is_parsed_like_its_json():
    from seldon_core.proto import prediction_pb2
    from seldon_core.utils import array_to_grpc_datadef, json_to_seldon_message

    assert images_of(prediction_pb2.SeldonMessage(binData=PAYLOAD)) == [PAYLOAD]
    batch = json_to_seldon_message({"jsonData": {"images": [URLSAFE, STANDARD]}})
    assert images_of(batch) == [PAYLOAD, PAYLOAD]
    tensor = image_tensor(2)
    for payload_type in ("tensor", "ndarray", "tftensor"):
        message = prediction_pb2.SeldonMessage(data=array_to_grpc_datadef(payload_type, tensor))
        kind, parsed = parse_request(message, CONFIG)
        assert kind == "tensor"
        np.testing.assert_allclose(parsed, tensor, atol=1e-7)
        out = prediction_pb2.SeldonMessage(data=array_to_grpc_datadef(payload_type, tensor * 255))
        assert "divide by 255" in refused(out, "tensor_range")
    refused(prediction_pb2.SeldonMessage(binData=b""), "bad_base64")
    assert "Unknown payload keys ['strData']" in refused(
        prediction_pb2.SeldonMessage(strData="hi"), "bad_payload"
    )
    refused(prediction_pb2.SeldonMessage(), "empty_request")


def test_the_model_answers_a_grpc_message_with_a_message_and_refusals_as_invalid_argument(
    tmp_path, monkeypatch
):
    import grpc
    from seldon_core import wrapper
    from seldon_core.flask_utils import SeldonMicroserviceException
    from seldon_core.proto import prediction_pb2
    from seldon_core.utils import array_to_grpc_datadef, seldon_message_to_json

    from clearsight import seldon_model
    from clearsight.models import build_model

    config = ServingConfig(
        model_name="m", model_version="3", classes=list("0123456789"), image_size=8
    )
    from clearsight.serving import export_model_dir

    export_model_dir(build_model(10, image_size=8, seed=1), config, tmp_path)
    monkeypatch.setenv("CLEARSIGHT_SERVING_HOST", "127.0.0.1")  # as the launcher: keys off
    model = seldon_model.ImageClassifier(str(tmp_path))
    tensor = np.random.default_rng(1).random((2, 8, 8, 3))
    answer = model.predict_raw(
        prediction_pb2.SeldonMessage(data=array_to_grpc_datadef("tensor", tensor))
    )
    assert isinstance(answer, prediction_pb2.SeldonMessage)
    body = seldon_message_to_json(answer)
    assert len(body["jsonData"]["predictions"]) == 2 and "metrics" not in body["meta"]
    assert body["meta"]["tags"]["model_version"] == "3"

    rejected: list[str] = []
    original = seldon_model.count_rejected
    seldon_model.count_rejected = rejected.append
    try:
        with pytest.raises(SeldonMicroserviceException):
            model.predict_raw(prediction_pb2.SeldonMessage(binData=b""))
    finally:
        seldon_model.count_rejected = original
    assert rejected == ["bad_base64"]

    class Context:
        def abort(self, code, details):
            self.code, self.details = code, details
            raise RuntimeError("aborted")

    context = Context()
    servicer = wrapper.SeldonModelGRPC(model, seldon_metrics=_NoMetrics())
    with pytest.raises(RuntimeError, match="aborted"):
        servicer.Predict(
            prediction_pb2.SeldonMessage(data=array_to_grpc_datadef("ndarray", tensor * 255)),
            context,
        )
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "divide by 255" in context.details


class _NoMetrics:
    def update(self, *_args, **_kwargs):
        pass


# --- ports ---------------------------------------------------------------


def test_endpoint_port_ranges_hold_no_documented_port():
    from stack.seldon.service import (
        GRPC_PORTS,
        HTTP_PORTS,
        METRICS_PORTS,
        RESERVED_PORTS,
    )

    documented = {8237, 5000, 5001, 9000, 9001, 8080, 5432, 9090, 3000, 8501, 8502}
    assert documented | {8793, 8794, 9093, 9091} <= RESERVED_PORTS
    assert not set(GRPC_PORTS) & RESERVED_PORTS and not set(METRICS_PORTS) & RESERVED_PORTS
    assert not set(GRPC_PORTS) & set(METRICS_PORTS)
    assert not (set(GRPC_PORTS) | set(METRICS_PORTS)) & set(HTTP_PORTS)
    assert 9000 not in GRPC_PORTS  # the production S3 port, taken by the first gRPC before


def test_pick_port_skips_reserved_ports_taken_ports_and_so_reuseport_listeners(monkeypatch):
    from stack.seldon import service

    monkeypatch.setattr(service, "RESERVED_PORTS", frozenset({7101}))
    monkeypatch.setenv("CLEARSIGHT_S3_ENDPOINT", "http://127.0.0.1:7102")
    assert service.pick_port(range(7100, 7110), taken={7100}) == 7103
    assert service.pick_port(range(7100, 7110), preferred=(7101, 7105)) == 7105

    # A gRPC server binds with SO_REUSEPORT: ZenML's port_available calls it free.
    with socket.socket() as grpc_like:
        grpc_like.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        grpc_like.bind(("127.0.0.1", 0))
        grpc_like.listen()
        port = grpc_like.getsockname()[1]
        assert not service.port_free(port)
        assert service.pick_port(range(port, port + 2)) == port + 1 or not service.port_free(
            port + 1
        )
    with pytest.raises(OSError, match="No free TCP port in 7101-7102"):
        service.pick_port(range(7101, 7103))


def test_the_deployer_picks_grpc_and_metrics_ports_from_their_ranges():
    from stack.seldon.service import (
        GRPC_PORTS,
        METRICS_PORTS,
        LocalSeldonDeploymentConfig,
        LocalSeldonDeploymentService,
    )

    service = LocalSeldonDeploymentService(
        LocalSeldonDeploymentConfig(model_dir="/nonexistent", model_name="m"), uuid=uuid.uuid4()
    )
    service._pick_ports()
    assert service.status.grpc_port in GRPC_PORTS
    assert service.status.metrics_port in METRICS_PORTS
    port = service.endpoint._lookup_free_port()
    assert 8000 <= port < 9000 and port not in {8080, 8237, 8501, 8502, 8793, 8794}


# --- make services: a port held by something that is not the service ---------


def test_services_start_names_the_port_when_a_grpc_server_holds_it(monkeypatch, tmp_path, capsys):
    """A gRPC (HTTP/2) answer on the S3 port: a message, not a BadStatusLine traceback."""
    from stack import services

    class Http2Only(http.server.BaseHTTPRequestHandler):
        def handle(self):  # a gRPC server's first bytes: an HTTP/2 SETTINGS frame
            self.request.recv(1024)
            self.request.sendall(b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Http2Only)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CLEARSIGHT_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CLEARSIGHT_SERVICES_DIR", str(tmp_path / "services"))
    try:
        assert services._answers(f"http://127.0.0.1:{port}/", lambda _b: True) is False
        code = services.main(["start", "s3"])
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1
    error = capsys.readouterr().err
    assert f"Port {port} for the S3 API (moto server) is taken by another program" in error
    assert "Traceback" not in error


def test_the_port_taken_message_names_the_port_holder_and_the_fix(monkeypatch):
    from stack import services

    monkeypatch.setattr(
        services, "port_holder", lambda port: "a Clearsight prediction endpoint (pid 42)"
    )
    message = services.port_taken_message(9000, "S3 API (moto server)")
    assert "Port 9000 for the S3 API (moto server) is taken by another program" in message
    assert "pid 42" in message and "make serve-stop" in message
    monkeypatch.setattr(services, "port_holder", lambda port: "")
    assert "python -m stack.services env" in services.port_taken_message(9000, "S3")
