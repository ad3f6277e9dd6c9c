"""The real seldon-core microservice serving a Clearsight model on loopback."""

from __future__ import annotations

import base64
import io
import ipaddress
import os
import signal
import socket
import subprocess
import time

import numpy as np
import psutil
import pytest
import requests
from PIL import Image

from clearsight.models import build_model, with_temperature
from clearsight.preprocess import preprocess_batch
from clearsight.serving import ServingConfig, export_model_dir
from stack.seldon.service import microservice_command
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
CLASSES = [str(d) for d in range(10)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = with_temperature(build_model(10, image_size=32, seed=3), 1.7)
    config = ServingConfig(
        model_name="image-classifier",
        model_version="7",
        classes=CLASSES,
        image_size=32,
        mlflow_run_id="run-abc",
        registered_version="4",
        max_batch=8,
        max_pixels=1_000_000,
    )
    folder = export_model_dir(model, config, tmp_path_factory.mktemp("served") / "model")
    return folder, model


@pytest.fixture(scope="module")
def endpoint(model_dir):
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
    base = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/health/ping", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None, "the microservice exited during start-up"
        time.sleep(0.5)
    else:
        pytest.fail("the seldon-core microservice did not answer /health/ping in 120 s")
    yield base, f"http://127.0.0.1:{metrics}"
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def sample_images(digits_dir) -> list[bytes]:
    return [p.read_bytes() for p in sorted((digits_dir / "test").rglob("*.png"))[:6]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(base: str, body, **kwargs):
    return requests.post(f"{base}/api/v1.0/predictions", json=body, timeout=30, **kwargs)


def test_bin_json_and_tensor_requests_match_the_in_process_model(endpoint, model_dir, digits_dir):
    base, _ = endpoint
    _, model = model_dir
    images = sample_images(digits_dir)
    expected = model.predict(preprocess_batch(images, 32), verbose=0)

    one = post(base, {"binData": b64(images[0])})
    assert one.status_code == 200, one.text
    answer = one.json()["jsonData"]["predictions"][0]
    assert answer["label"] == CLASSES[int(expected[0].argmax())]
    assert answer["confidence"] == pytest.approx(float(expected[0].max()), abs=1e-5)
    assert answer["uncertain"] == (answer["confidence"] < 0.7)
    assert [t["label"] for t in answer["top_k"]] == [
        CLASSES[i] for i in np.argsort(-expected[0])[:3]
    ]
    tags = one.json()["meta"]["tags"]
    assert tags["model_name"] == "image-classifier" and tags["model_version"] == "7"
    assert tags["mlflow_run_id"] == "run-abc"

    batch = post(base, {"jsonData": {"images": [b64(i) for i in images]}})
    assert batch.status_code == 200, batch.text
    served = np.array(
        [[p["probabilities"][c] for c in CLASSES] for p in batch.json()["jsonData"]["predictions"]]
    )
    np.testing.assert_allclose(served, expected, atol=1e-5)

    tensor = post(base, {"data": {"ndarray": preprocess_batch(images[:2], 32).tolist()}})
    assert tensor.status_code == 200, tensor.text
    served = [
        [p["probabilities"][c] for c in CLASSES] for p in tensor.json()["jsonData"]["predictions"]
    ]
    np.testing.assert_allclose(served, expected[:2], atol=1e-5)


def _png(width: int, height: int, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_bad_input_gets_a_4xx_with_a_reason(endpoint, digits_dir):
    base, _ = endpoint
    good = sample_images(digits_dir)[0]
    url = f"{base}/api/v1.0/predictions"
    cases = [
        ("not an image", post(base, {"binData": b64(b"hello, not an image")}), 400),
        ("truncated", post(base, {"binData": b64(good[: len(good) // 2])}), 400),
        ("not valid base64", post(base, {"binData": "%%%"}), 400),
        ("Empty or non-object", post(base, {}), 400),
        ("JSON", requests.post(url, data="", headers={"Content-Type": "application/json"}), 400),
        (
            "JSON",
            requests.post(url, data="{oops", headers={"Content-Type": "application/json"}),
            400,
        ),
        ("Content-Type: application/json", requests.post(url, data='{"binData": "x"}'), 415),
        ("decompression-bomb guard", post(base, {"binData": b64(_png(2000, 2000, "1"))}), 400),
        ("expected [n, 32, 32, 3]", post(base, {"data": {"ndarray": [[0.0, 1.0]]}}), 400),
        ("numeric array", post(base, {"data": {"ndarray": [["a", "b"]]}}), 400),
        ("max_batch=8", post(base, {"jsonData": {"images": [b64(good)] * 9}}), 400),
        ("Unknown payload keys", post(base, {"strData": "hi"}), 400),
    ]
    for needle, response, status in cases:
        assert response.status_code == status, (needle, response.status_code, response.text)
        assert needle in response.json()["status"]["info"], (needle, response.text)
    assert post(base, {"binData": b64(good)}).status_code == 200  # still serving


def test_health_metadata_and_custom_metrics(endpoint, digits_dir):
    base, metrics = endpoint
    assert requests.get(f"{base}/health/status", timeout=5).json()["ready"] is True
    assert requests.get(f"{base}/metadata", timeout=5).json()["name"] == "image-classifier"
    post(base, {"jsonData": {"images": [b64(i) for i in sample_images(digits_dir)[:3]]}})
    text = requests.get(f"{metrics}/metrics", timeout=5).text
    for name in (
        "clearsight_predictions_total",
        "clearsight_confidence_bucket",
        "clearsight_request_latency_bucket",
        "clearsight_model_version",
        "clearsight_requests_total",
    ):
        assert name in text, name


SHIPPED = ROOT / "stack" / "prometheus"


def test_shipped_prometheus_config_and_alert_rules_are_valid():
    for args in (
        ["check", "config", str(SHIPPED / "prometheus.yml")],
        ["check", "rules", str(SHIPPED / "alerts.yml")],
    ):
        result = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    rules = (SHIPPED / "alerts.yml").read_text()
    for alert in (
        "ClearsightEndpointDown",
        "ClearsightLatencyHigh",
        "ClearsightUncertainShareHigh",
    ):
        assert alert in rules


def test_real_prometheus_scrapes_our_metrics(endpoint, digits_dir, tmp_path):
    import yaml

    base, metrics = endpoint
    post(base, {"jsonData": {"images": [b64(i) for i in sample_images(digits_dir)]}})
    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [metrics.removeprefix("http://")]
    config["rule_files"] = [str(SHIPPED / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        query = f"http://127.0.0.1:{port}/api/v1/query"
        deadline = time.monotonic() + 60
        result = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                answer = requests.get(
                    query, params={"query": "sum(clearsight_predictions_total)"}, timeout=2
                ).json()
            except requests.RequestException:
                continue
            result = answer.get("data", {}).get("result", [])
        assert result, "Prometheus never returned clearsight_predictions_total"
        assert float(result[0]["value"][1]) >= 6  # the six images sent above
        rules = requests.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).json()
        names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert "ClearsightEndpointDown" in names
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_microservice_listens_on_loopback_only(endpoint):
    # seldon-core hard-codes 0.0.0.0; stack.seldon.launch binds it to 127.0.0.1.
    base, metrics = endpoint
    http_port, metrics_port = int(base.rsplit(":", 1)[1]), int(metrics.rsplit(":", 1)[1])
    root = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if "stack.seldon.launch" in (p.info["cmdline"] or [])
        and str(http_port) in p.info["cmdline"]
    )
    listening = {
        (connection.laddr.ip, connection.laddr.port)
        for process in (root, *root.children(recursive=True))
        for connection in process.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN
    }
    ports = {port for _, port in listening}
    assert {http_port, metrics_port} <= ports and len(ports) >= 3, listening  # + gRPC
    for ip, _ in listening:
        address = ipaddress.ip_address(ip)
        address = getattr(address, "ipv4_mapped", None) or address  # gRPC: ::ffff:127.0.0.1
        assert address.is_loopback, listening
