"""The real seldon-core microservice serving a Clearsight model on loopback."""

from __future__ import annotations

import base64
import contextlib
import io
import ipaddress
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import tensorflow as tf
from PIL import Image

from clearsight.models import build_model, with_temperature
from clearsight.preprocess import preprocess_batch
from clearsight.serving import ServingConfig, export_model_dir
from stack.seldon.service import microservice_command
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
CLASSES = [str(d) for d in range(10)]
MAX_REQUEST_BYTES = 400_000


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
        max_request_bytes=MAX_REQUEST_BYTES,
    )
    folder = export_model_dir(model, config, tmp_path_factory.mktemp("served") / "model")
    return folder, model


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    """The module's microservice ports (HTTP, gRPC, metrics)."""
    return {"http": free_port(), "grpc": free_port(), "metrics": free_port()}


@pytest.fixture(scope="module")
def endpoint(model_dir, ports):
    folder, _ = model_dir
    with running_microservice(folder, ports) as urls:
        yield urls


@contextlib.contextmanager
def running_microservice(
    folder: Path,
    ports: dict[str, int],
    env: dict[str, str] | None = None,
    log: Path | None = None,
):
    """The seldon-core microservice serving ``folder`` on ``ports``, until the block ends.

    ``log``: a file that gets the server's output (stdout and stderr); none: discarded.

    Yields:
        ``(REST base URL, metrics base URL)``.
    """
    http, grpc, metrics = ports["http"], ports["grpc"], ports["metrics"]
    env = {
        **os.environ,
        "CLEARSIGHT_MODEL_DIR": str(folder),
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    with log.open("wb") if log is not None else contextlib.nullcontext() as output:
        process = subprocess.Popen(
            microservice_command(http, grpc, metrics, workers=1),
            env=env,
            stdout=output if output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/health/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, "the microservice exited during start-up" + (
                f":\n{log.read_text(errors='replace')[-3000:]}" if log is not None else ""
            )
            time.sleep(0.5)
        else:
            pytest.fail("the seldon-core microservice did not answer /health/ping in 180 s")
        yield base, f"http://127.0.0.1:{metrics}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


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


def _bad_idat_crc(png: bytes) -> bytes:
    data = bytearray(png)
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the IDAT chunk's CRC
    return bytes(data)


def test_every_bad_input_gets_a_4xx_with_a_reason(endpoint, digits_dir):
    base, _ = endpoint
    good = sample_images(digits_dir)[0]
    url = f"{base}/api/v1.0/predictions"
    cases = [
        ("not an image", post(base, {"binData": b64(b"hello, not an image")}), 400),
        ("truncated", post(base, {"binData": b64(good[: len(good) // 2])}), 400),
        ("character '%' (U+0025) at position 0", post(base, {"binData": "%%%"}), 400),
        ("data: URL without ;base64", post(base, {"binData": "data:image/png,x"}), 400),
        ("divide by 255", post(base, {"data": {"ndarray": [[[[255.0] * 3] * 32] * 32]}}), 400),
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
        # Pillow's decoder skips IDAT checksums; the decoder checks them (PNG spec, 5.3)
        ("corrupt", post(base, {"binData": b64(_bad_idat_crc(good))}), 400),
        (
            f"max_request_bytes={MAX_REQUEST_BYTES}",
            post(base, {"binData": "A" * (MAX_REQUEST_BYTES + 10)}),
            413,
        ),
    ]
    for needle, response, status in cases:
        assert response.status_code == status, (needle, response.status_code, response.text)
        assert needle in response.json()["status"]["info"], (needle, response.text)
    assert post(base, {"binData": b64(good)}).status_code == 200  # still serving

    # Every rejection is counted by reason on the metrics endpoint.
    text = requests.get(f"{endpoint[1]}/metrics", timeout=5).text
    rejected: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("clearsight_rejected_total{"):
            reason = line.split('reason="')[1].split('"')[0]
            rejected[reason] = rejected.get(reason, 0) + float(line.rsplit(" ", 1)[1])
    for reason in (
        "invalid_image",
        "bad_base64",
        "too_large",
        "unsupported_media_type",
        "batch_too_large",
        "bad_tensor",
        "tensor_range",
    ):
        assert rejected.get(reason, 0) >= 1, (reason, rejected)
    assert sum(rejected.values()) >= len(cases), rejected


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
GRAFANA_ENDPOINT_DASHBOARD = ROOT / "stack" / "grafana" / "dashboards" / "clearsight-endpoint.json"


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


# --- Through the ZenML model deployer (our local_seldon flavor) -------------

DEPLOYED_MODEL = "endpoint-test"


@pytest.fixture(scope="module")
def deployer(embedded_stack, tmp_path_factory):
    """The embedded stack's local Seldon deployer; its targets file in a temp folder."""
    from stack.seldon.prometheus_targets import TARGETS_ENV

    targets = tmp_path_factory.mktemp("prometheus") / "targets.json"
    previous = os.environ.get(TARGETS_ENV)
    os.environ[TARGETS_ENV] = str(targets)  # the zenml CLI subprocesses inherit it
    deployer = embedded_stack.active_stack.model_deployer
    try:
        yield deployer
    finally:
        for service in deployer.servers_for(DEPLOYED_MODEL):
            deployer.delete_model_server(service.uuid, timeout=60, force=True)
        if previous is None:
            os.environ.pop(TARGETS_ENV, None)
        else:
            os.environ[TARGETS_ENV] = previous


def deploy_server(deployer, folder, version: str, timeout: int = 180):
    from stack.seldon.service import LocalSeldonDeploymentConfig

    return deployer.deploy_new_server(
        LocalSeldonDeploymentConfig(
            model_dir=str(folder),
            model_name=DEPLOYED_MODEL,
            registered_version=version,
            service_name=f"{DEPLOYED_MODEL}-v{version}",
            pipeline_name="test",
            pipeline_step_name="deploy",
        ),
        timeout=timeout,
    )


def running_server(deployer, model_dir):
    running = [s for s in deployer.servers_for(DEPLOYED_MODEL) if s.is_running]
    return running[0] if running else deploy_server(deployer, model_dir[0], "1")


def server_processes(service) -> list[psutil.Process]:
    """The daemon, its descendants and every process of the microservice's group."""
    from stack.seldon.service import _read_pgid, group_members

    found: dict[int, psutil.Process] = {}
    if service.status.pid:
        root = psutil.Process(service.status.pid)
        for process in (root, *root.children(recursive=True)):
            found[process.pid] = process
    pgid = _read_pgid(service.status.pgid_file)
    if pgid:
        for process in group_members(pgid):
            found[process.pid] = process
    return list(found.values())


def processes_on_port(port: int) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "stack.seldon.launch" in (p.info["cmdline"] or [])
        and str(port) in (p.info["cmdline"] or [])
    ]


def gone(processes: list[psutil.Process], within: float = 60) -> bool:
    _, alive = psutil.wait_procs(processes, timeout=within)
    return not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def prometheus_query(port: int, query: str) -> list[dict]:
    try:
        answer = requests.get(
            f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=2
        ).json()
    except (requests.RequestException, ValueError):
        return []
    return answer.get("data", {}).get("result", [])


def wait_for(condition, timeout: float, message: str, step: float = 1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    pytest.fail(message)


def test_real_prometheus_follows_the_endpoint_across_a_redeploy(
    deployer, model_dir, digits_dir, tmp_path
):
    """Prometheus finds each new server through the deployer's file_sd targets file."""
    import yaml

    from stack.seldon.prometheus_targets import targets_path

    first = running_server(deployer, model_dir)
    info = deployer.get_model_server_info(first)
    assert info["METRICS_URL"] == f"http://127.0.0.1:{first.status.metrics_port}/metrics"
    assert requests.get(info["METRICS_URL"], timeout=5).status_code == 200
    assert info["PROMETHEUS_TARGETS"] == str(targets_path())
    assert first.config.workers == deployer.config.workers  # the flavor's setting applies

    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "clearsight-endpoint")
    assert "static_configs" not in job
    job["file_sd_configs"] = [{"files": [str(targets_path())], "refresh_interval": "1s"}]
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
    images = [b64(i) for i in sample_images(digits_dir)]
    try:
        assert post(first.endpoint.status.uri, {"jsonData": {"images": images}}).ok
        wait_for(
            lambda: prometheus_query(
                port, f'sum(clearsight_predictions_total{{service_uuid="{first.uuid}"}}) >= 6'
            ),
            90,
            "Prometheus never scraped the first server",
        )
        rules = requests.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).json()
        names = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert "ClearsightEndpointDown" in names

        # A redeploy, as the deploy step does it: new server up, old one stopped.
        second = deploy_server(deployer, model_dir[0], "2")
        assert second.status.metrics_port != first.status.metrics_port
        deployer.delete_model_server(first.uuid, timeout=60)
        groups = json.loads(targets_path().read_text())
        assert [g["labels"]["service_uuid"] for g in groups] == [str(second.uuid)]
        assert groups[0]["targets"] == [f"127.0.0.1:{second.status.metrics_port}"]

        assert post(second.endpoint.status.uri, {"jsonData": {"images": images[:2]}}).ok
        wait_for(
            lambda: prometheus_query(
                port,
                f'sum(clearsight_predictions_total{{service_uuid="{second.uuid}",'
                f'registered_version="2"}}) >= 2',
            ),
            90,
            "Prometheus never scraped the redeployed server",
        )

        # The endpoint dashboard's 4xx panel has data on the local deployer (no executor).
        panel = next(
            p
            for p in json.loads(GRAFANA_ENDPOINT_DASHBOARD.read_text())["panels"]
            if p["title"].startswith("HTTP 4xx / 5xx")
        )
        queries = {t["legendFormat"]: t["expr"] for t in panel["targets"]}
        refused = {"binData": b64(b"not an image")}
        assert post(second.endpoint.status.uri, refused).status_code == 400
        wait_for(  # rate() needs the counter scraped before and after an increase
            lambda: prometheus_query(
                port, f'clearsight_rejected_total{{service_uuid="{second.uuid}"}}'
            ),
            90,
            "Prometheus never scraped the rejection counter",
        )
        assert post(second.endpoint.status.uri, refused).status_code == 400
        for legend in ("4xx", "error share"):
            wait_for(
                lambda legend=legend: [
                    r for r in prometheus_query(port, queries[legend]) if float(r["value"][1]) > 0
                ],
                90,
                f"the dashboard's {legend} query has no data: {queries[legend]}",
            )

        def scraped() -> list[str]:
            targets = requests.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()
            return [
                t["labels"]["service_uuid"]
                for t in targets["data"]["activeTargets"]
                if t["labels"].get("job") == "clearsight-endpoint"
            ]

        wait_for(
            lambda: scraped() == [str(second.uuid)],
            30,
            "Prometheus still scrapes the deleted server",
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_failed_start_leaves_the_old_server_serving_and_no_processes(
    deployer, model_dir, digits_dir, tmp_path
):
    from stack.seldon.deployer import ServerStartError

    old = running_server(deployer, model_dir)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir[0], broken)
    (broken / "model.keras").write_bytes(b"these are not the weights you are looking for")
    before = {s.uuid for s in deployer.servers_for(DEPLOYED_MODEL)}
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}

    started = time.monotonic()
    with pytest.raises(ServerStartError, match="did not start") as raised:
        deploy_server(deployer, broken, "99", timeout=150)
    assert time.monotonic() - started < 150, "a dead server should not wait for the timeout"
    message = str(raised.value)
    log = message.split("Log: ", 1)[1].split()[0]
    assert os.path.isfile(log), message  # the log is kept for the post-mortem

    # The store has no record of it, nothing of it runs, its folder is gone.
    assert {s.uuid for s in deployer.servers_for(DEPLOYED_MODEL)} == before
    failed_uuid = os.path.basename(log).removesuffix(".log")
    assert not os.path.exists(os.path.join(deployer.local_path, failed_uuid))
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(failed_uuid in part or str(broken) in part for part in p.info["cmdline"] or [])
    ]
    assert not leftovers, leftovers
    new_children = [
        p for p in psutil.Process().children(recursive=True) if p.pid not in children_before
    ]
    assert gone(new_children, within=10), new_children

    # The old server never stopped answering.
    image = sample_images(digits_dir)[0]
    assert post(old.endpoint.status.uri, {"binData": b64(image)}).status_code == 200


def zenml_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "zenml"), "model-deployer", "models", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_zenml_cli_stop_start_and_delete_leave_no_orphan_processes(deployer, model_dir):
    service = running_server(deployer, model_dir)
    uuid = str(service.uuid)
    processes = server_processes(service)
    assert len(processes) >= 4, processes  # daemon, microservice, workers, gRPC, metrics
    http_port = service.endpoint.status.port

    described = zenml_cli("describe", uuid)
    described = described.stdout + described.stderr
    assert "METRICS_URL" in described

    zenml_cli("stop", uuid)  # graceful: SIGTERM, gunicorn drains
    assert gone(processes, within=10), [p for p in processes if p.is_running()]
    assert not processes_on_port(http_port)

    zenml_cli("start", uuid)
    (restarted,) = [s for s in deployer.servers_for(DEPLOYED_MODEL) if str(s.uuid) == uuid]
    base = restarted.endpoint.status.uri.rstrip("/")
    wait_for(
        lambda: requests.get(f"{base}/health/ping", timeout=2).status_code == 200,
        60,
        "the restarted server does not answer /health/ping",
    )
    processes = server_processes(restarted)
    assert len(processes) >= 4, processes

    zenml_cli("delete", uuid, "--yes")
    assert gone(processes, within=10), [p for p in processes if p.is_running()]
    assert not processes_on_port(restarted.endpoint.status.port)
    assert uuid not in {str(s.uuid) for s in deployer.servers_for(DEPLOYED_MODEL)}


def test_the_microservice_dies_with_its_daemon(deployer, model_dir):
    from stack.seldon.launch import WATCH_GRACE

    service = running_server(deployer, model_dir)
    processes = server_processes(service)
    psutil.Process(service.status.pid).kill()  # the daemon, not the microservice
    assert gone(processes, within=WATCH_GRACE + 15), [p for p in processes if p.is_running()]
    deployer.delete_model_server(service.uuid, timeout=30, force=True)


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


def test_every_real_world_file_variant_gets_the_answer_of_its_upright_picture(endpoint, model_dir):
    """EXIF-rotated, transparent, 16-bit, 12-bit-in-16, MPO, CMYK, WebP, TIFF, HEIC...: the
    endpoint answers each as the upright picture (issue 11), through the real microservice."""
    from tests.imagefiles import variants

    base, _ = endpoint
    _, model = model_dir
    for index in (6, 7):
        found = [v for v in variants(index) if v.background == (255, 255, 255)]
        reference = tf.image.resize(
            np.stack([v.reference for v in found]), [32, 32], antialias=True
        ).numpy()
        expected = model.predict(reference, verbose=0)
        for variant, probabilities in zip(found, expected, strict=True):
            response = post(base, {"binData": b64(variant.data)})
            assert response.status_code == 200, (variant.name, response.text)
            answer = response.json()["jsonData"]["predictions"][0]
            got = np.array([answer["probabilities"][c] for c in CLASSES])
            tolerance = 0.02 if variant.lossy else 2e-3
            assert np.abs(got - probabilities).max() <= tolerance, variant.name


def _maps_tensorflow(process: psutil.Process) -> bool:
    with open(f"/proc/{process.pid}/maps") as maps:
        return any("libtensorflow" in line for line in maps)


def _listens(process: psutil.Process, port: int) -> bool:
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port
        for c in process.net_connections("tcp")
    )


def test_only_the_processes_that_predict_map_tensorflow(endpoint):
    """Issue 11: no TensorFlow in the launcher (gunicorn's REST master), the metrics
    store's manager, the gRPC parent or the metrics server; the REST worker has it.
    (The gRPC worker loads it on its first gRPC call: not checked here.)"""
    base, _ = endpoint
    http = int(base.rsplit(":", 1)[1])
    launcher = next(
        p
        for p in psutil.Process().children()
        if "--http-port" in p.cmdline() and str(http) in p.cmdline()
    )
    argv = launcher.cmdline()
    grpc = int(argv[argv.index("--grpc-port") + 1])
    processes = [launcher, *launcher.children(recursive=True)]
    rest_workers = [p for p in processes[1:] if _listens(p, http)]
    grpc_workers = [p for p in processes if _listens(p, grpc)]
    idle = [p for p in processes if p not in rest_workers + grpc_workers]

    assert len(rest_workers) == 1 and _maps_tensorflow(rest_workers[0])
    assert launcher in idle and len(idle) >= 4  # + manager, gRPC parent, metrics server
    assert [p.pid for p in idle if _maps_tensorflow(p)] == [], (
        f"processes that never predict map TensorFlow (launcher {launcher.pid})"
    )


# seldon-core's own SeldonClient against the same server, over REST and gRPC: every
# payload it sends (bin_data, ndarray, its default tensor, tftensor) gets the same
# answers; a refused request is a 400 over REST and INVALID_ARGUMENT over gRPC.


@pytest.fixture(scope="module")
def seldon_endpoints(endpoint, ports) -> dict[str, str]:
    """``SeldonClient`` addresses of the module's server, per transport."""
    return {"rest": f"127.0.0.1:{ports['http']}", "grpc": f"127.0.0.1:{ports['grpc']}"}


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
    seldon_endpoints, model_dir, digits_dir, transport
):
    endpoints = seldon_endpoints
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
def test_seldon_client_gets_a_client_error_with_the_reason(seldon_endpoints, transport):
    endpoints = seldon_endpoints
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


def test_grpc_rejections_are_counted(seldon_endpoints, ports):
    endpoints, metrics = seldon_endpoints, ports["metrics"]
    predict(endpoints, "grpc", data=np.full((1, 32, 32, 3), 2.0), payload_type="ndarray")
    text = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
    counted = [
        line
        for line in text.splitlines()
        if line.startswith("clearsight_rejected_total{") and 'reason="tensor_range"' in line
    ]
    assert counted and float(counted[0].rsplit(" ", 1)[1]) >= 1, text[-2000:]
