"""seldon-core's own SeldonClient against the real microservice, over REST and gRPC.

One server for the module (the model of ``test_seldon_endpoint``); every
payload SeldonClient sends: ``bin_data``, ``ndarray``, its default ``tensor``
and ``tftensor``, each over both transports, with the same answers; a refused
request is a 400 over REST and ``INVALID_ARGUMENT`` over gRPC.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import requests

from clearsight.preprocess import preprocess_batch
from stack.seldon.service import microservice_command
from tests.conftest import ROOT
from tests.integration.test_seldon_endpoint import (  # noqa: F401 - model_dir is a fixture
    CLASSES,
    free_port,
    model_dir,
    sample_images,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(model_dir):  # noqa: F811 - the imported fixture
    folder, _ = model_dir
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "CLEARSIGHT_MODEL_DIR": str(folder),
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    process = subprocess.Popen(
        microservice_command(http, grpc, metrics, workers=1),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{http}/health/ping", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, "the microservice exited during start-up"
            time.sleep(0.5)
        else:
            pytest.fail("the seldon-core microservice did not answer /health/ping in 180 s")
        yield {"rest": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}"}, metrics
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def predict(endpoints: dict, transport: str, **kwargs):
    from seldon_core.seldon_client import SeldonClient

    client = SeldonClient(microservice_endpoint=endpoints[transport], transport=transport)
    return client.microservice(method="predict", **kwargs)


def probabilities(result) -> np.ndarray:
    from seldon_core.utils import seldon_message_to_json

    assert result.success, result.msg
    predictions = seldon_message_to_json(result.response)["jsonData"]["predictions"]
    return np.array([[p["probabilities"][c] for c in CLASSES] for p in predictions])


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_seldon_client_gets_the_same_answers_for_every_payload(
    served,
    model_dir,  # noqa: F811 - the imported fixture
    digits_dir,
    transport,
):
    endpoints, _ = served
    _, model = model_dir
    images = sample_images(digits_dir)[:2]
    tensor = preprocess_batch(images, 32)
    expected = model.predict(tensor, verbose=0)

    one = predict(endpoints, transport, bin_data=images[0])
    np.testing.assert_allclose(probabilities(one), expected[:1], atol=1e-5)
    for payload_type in ("ndarray", "tensor", "tftensor"):
        result = predict(endpoints, transport, data=tensor, payload_type=payload_type)
        np.testing.assert_allclose(probabilities(result), expected, atol=1e-5)
    default = predict(endpoints, transport, data=tensor)  # SeldonClient's default: tensor
    np.testing.assert_allclose(probabilities(default), expected, atol=1e-5)


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_seldon_client_gets_a_client_error_with_the_reason(served, transport):
    endpoints, _ = served
    pixels = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3)).astype(np.float64)
    result = predict(endpoints, transport, data=pixels, payload_type="tensor")
    assert not result.success
    if transport == "grpc":
        assert "INVALID_ARGUMENT" in result.msg and "divide by 255" in result.msg, result.msg
    else:
        assert result.msg == "BAD REQUEST", result.msg
        assert "divide by 255" in result.response.status.info
    bad = predict(endpoints, transport, bin_data=b"not an image")
    assert not bad.success
    if transport == "grpc":
        assert "INVALID_ARGUMENT" in bad.msg, bad.msg


def test_grpc_rejections_are_counted(served):
    endpoints, metrics = served
    predict(endpoints, "grpc", data=np.full((1, 32, 32, 3), 2.0), payload_type="ndarray")
    text = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("clearsight_rejected_total{") and 'reason="tensor_range"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1, text[-2000:]
